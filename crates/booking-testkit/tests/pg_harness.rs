//! The PostgreSQL harness gives each test its own empty database on one server.

use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn fresh_databases_are_separate_and_dropped() {
    let a = booking_testkit::pg::fresh_database().await;
    let b = booking_testkit::pg::fresh_database().await;
    assert_ne!(a.url, b.url);
    let mut c = PgConnection::connect(&a.url).await.expect("connect to a");
    sqlx::query("CREATE TABLE t (x INT)")
        .execute(&mut c)
        .await
        .expect("create");
    let mut d = PgConnection::connect(&b.url).await.expect("connect to b");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
        .fetch_one(&mut d)
        .await
        .expect("count");
    assert_eq!(n, 0, "b does not see a's table");
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut c)
        .await
        .expect("name");
    drop(c);
    drop(a);
    let mut admin = PgConnection::connect(&booking_testkit::pg::server_url())
        .await
        .expect("admin");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(left, 0, "the guard dropped the database");
}
