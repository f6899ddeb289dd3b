//! The contract suite on SQLite with every hot write (issue, hold, charge, payment)
//! sent through the group commit's batcher and its shared transaction
//! (`SqliteStore::set_always_batch`), so that the batch path is checked by every
//! rule, not only when writes happen to overlap.

use booking_core::domain::{Amount, Money, UserId};
use booking_core::ports::{ChargeRequest, WalletRepo};
use booking_store::SqliteStore;
use booking_testkit::Kit;

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("booking.db"), 4)
        .await
        .expect("open a fresh SQLite database");
    store.set_always_batch(true);
    (store, dir)
}

booking_testkit::contract_suite!(fresh());

/// The switch really routes a lone write through a batch: nothing runs alone, and
/// each write is a batch of its own; off again, the next one runs alone.
#[tokio::test]
async fn always_batch_sends_every_hot_write_through_a_batch() {
    let (store, _dir) = fresh().await;
    let kit = Kit::new(store.clone());
    let date = kit.concert_with_date(10).await;
    let (user, token, who) = kit.admitted_user().await;
    let before = store.group_commit_stats();
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
    assert_eq!(after.direct, before.direct, "nothing ran alone: {after:?}");
    assert_eq!(after.batched - before.batched, 3, "{after:?}");
    assert_eq!(after.batches - before.batches, 3, "{after:?}");
    assert_eq!(after.queued - before.queued, 3, "{after:?}");
    assert!(
        before.batched > 0,
        "the token issue was batched too: {before:?}"
    );

    store.set_always_batch(false);
    store
        .charge(ChargeRequest {
            user: UserId::random(),
            amount: Amount::new(1).expect("amount"),
            max_balance: Money::new(1_000).expect("max"),
            key: None,
            now: booking_testkit::T0,
        })
        .await
        .expect("charge");
    assert_eq!(store.group_commit_stats().direct, after.direct + 1);
}
