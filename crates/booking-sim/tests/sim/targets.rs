//! A short headless run against each target: memory, SQLite and PostgreSQL in
//! process, and two booking-http instances on PostgreSQL over HTTP. Each asserts the
//! report's figures: every operation happened, conflicts happened, audit clean.

use crate::common;

use booking_sim::audit::Verdict;
use booking_sim::run::{TargetSpec, Ui, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_in_process() {
    let cfg = common::small(40, 3, 11);
    let o = run(&cfg, &TargetSpec::Memory, Ui::Quiet)
        .await
        .expect("run");
    common::assert_healthy(&o, &cfg);
    assert_eq!(o.report.target.database, "memory");
    assert!(
        o.report
            .audit
            .checks
            .iter()
            .all(|c| c.verdict == Verdict::Passed),
        "nothing skipped with a database to read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_process() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("sim.db").display());
    let cfg = common::small(40, 3, 12);
    let o = run(&cfg, &TargetSpec::Database(url), Ui::Quiet)
        .await
        .expect("run");
    common::assert_healthy(&o, &cfg);
    assert_eq!(o.report.target.kind, "sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_in_process() {
    let db = booking_testkit::pg::fresh_database().await;
    let cfg = common::small(40, 3, 13);
    let o = run(&cfg, &TargetSpec::Database(db.url.clone()), Ui::Quiet)
        .await
        .expect("run");
    common::assert_healthy(&o, &cfg);
    assert_eq!(o.report.target.kind, "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_two_spawned_instances_on_postgres() {
    let db = booking_testkit::pg::fresh_database().await;
    let cfg = common::small(40, 3, 14);
    let spec = TargetSpec::Spawn {
        n: 2,
        database: db.url.clone(),
    };
    let o = run(&cfg, &spec, Ui::Quiet).await.expect("run");
    common::assert_healthy(&o, &cfg);
    assert_eq!(
        (o.report.target.kind.as_str(), o.report.target.instances),
        ("http", 2)
    );
    assert!(o.report.target.spawned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_need_postgres() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let cfg = common::small(2, 1, 1);
    let err = run(
        &cfg,
        &TargetSpec::Spawn {
            n: 2,
            database: url,
        },
        Ui::Quiet,
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
}
