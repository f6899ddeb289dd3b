//! Concurrency on PostgreSQL with three independent pools on one database, standing
//! for three server instances: outcomes counted exactly.

use booking_store::PgStore;
use booking_testkit::pg::TestDatabase;
use booking_testkit::stress::{self, Cluster};

const INSTANCES: usize = 3;

async fn cluster() -> (Cluster<PgStore>, TestDatabase) {
    let db = booking_testkit::pg::fresh_database().await;
    let mut stores = Vec::new();
    for _ in 0..INSTANCES {
        stores.push(PgStore::open(&db.url, 16).await.expect("open"));
    }
    (Cluster::new(stores), db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i1_thousand_concurrent_holds_on_one_seat_have_one_winner() {
    let (c, _db) = cluster().await;
    stress::holds_on_one_seat(&c, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_holds_of_one_user_stop_at_the_cap() {
    let (c, _db) = cluster().await;
    stress::one_users_holds_stop_at_the_cap(&c, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_five_hundred_debits_on_a_balance_covering_a_hundred() {
    let (c, _db) = cluster().await;
    stress::debits_on_one_balance(&c, 500, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_thousand_concurrent_charges_are_all_counted() {
    let (c, _db) = cluster().await;
    stress::charges_none_lost(&c, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_thousand_concurrent_tokens_are_a_strict_sequence_admitted_in_order() {
    let (c, _db) = cluster().await;
    stress::tokens_in_strict_sequence(&c, 1_000, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r6_concurrent_tickers_advance_once_per_tick() {
    let (c, _db) = cluster().await;
    stress::tickers_advance_once_per_tick(&c, 20).await;
}
