//! The contract suite on PostgreSQL: each test gets a fresh database on the test
//! server (`BOOKING_TEST_POSTGRES_URL`, or a throwaway server the harness starts).

use booking_store::PgStore;
use booking_testkit::pg::{TestDatabase, fresh_database};

async fn fresh() -> (PgStore, TestDatabase) {
    let db = fresh_database().await;
    let store = PgStore::open(&db.url, 8)
        .await
        .expect("open a fresh PostgreSQL database");
    (store, db)
}

booking_testkit::contract_suite!(fresh());
