//! The contract suite on PostgreSQL with every hot write (issue, hold, payment) sent
//! through the batch functions `booking_issue_batch`, `booking_hold_batch` and
//! `booking_pay_batch` (`PgStore::set_always_batch`), so that the batch SQL is
//! checked by every rule, not only when writes happen to overlap.

use booking_store::PgStore;
use booking_testkit::Kit;
use booking_testkit::pg::{TestDatabase, fresh_database};

async fn fresh() -> (PgStore, TestDatabase) {
    let db = fresh_database().await;
    let store = PgStore::open(&db.url, 8)
        .await
        .expect("open a fresh PostgreSQL database");
    store.set_always_batch(true);
    (store, db)
}

booking_testkit::contract_suite!(fresh());

/// The switch really routes a lone write through a batch function: nothing runs
/// alone, and each write is a batch of its own; off again, the next one runs alone.
#[tokio::test]
async fn always_batch_sends_every_hot_write_through_a_batch() {
    let (store, _db) = fresh().await;
    let kit = Kit::new(store.clone());
    let date = kit.concert_with_date(10).await;
    let (user, token, who) = kit.admitted_user().await;
    let before = store.group_commit_stats();
    assert!(
        before.batched > 0,
        "the token issue was batched: {before:?}"
    );
    assert_eq!(before.direct, 0, "{before:?}");
    kit.booking
        .charge(user, booking_testkit::amount(1_000), None)
        .await
        .expect("charge");
    let hold = kit
        .booking
        .hold(&who, date.id, booking_testkit::seat(1))
        .await
        .expect("hold");
    kit.booking
        .pay(&token, hold.id, None)
        .await
        .expect("payment");
    let after = store.group_commit_stats();
    assert_eq!(after.direct, 0, "nothing ran alone: {after:?}");
    assert_eq!(after.batched - before.batched, 2, "{after:?}");
    assert_eq!(after.batches - before.batches, 2, "{after:?}");
    assert_eq!((after.deferred, after.retried), (0, 0), "{after:?}");

    store.set_always_batch(false);
    let (_, _, who) = kit.admitted_user().await;
    kit.booking
        .hold(&who, date.id, booking_testkit::seat(2))
        .await
        .expect("hold");
    let last = store.group_commit_stats();
    assert_eq!(last.direct, 2, "the issue and the hold ran alone: {last:?}");
    assert_eq!(last.batched, after.batched, "{last:?}");
}
