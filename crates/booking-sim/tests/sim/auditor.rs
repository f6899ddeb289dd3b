//! The auditor against deliberately corrupted databases. Each test runs a short
//! real flow into a real database (a SQLite file, or a fresh PostgreSQL database),
//! checks that the audit is clean, corrupts rows with raw SQL, audits again, and
//! asserts that the specific check reports the violation.

use crate::common;

use booking_sim::audit::{self, AuditOptions, ID_BALANCES, ID_LEDGER, ID_ORDER, ID_SEATS, Verdict};
use booking_sim::db;
use booking_sim::run::{Outcome, SimConfig, TargetSpec, Ui, run};
use sqlx::Connection;

/// The corruptions, as SQL that runs on both backends.
#[derive(Debug, Clone, Copy)]
enum Corruption {
    /// A seat marked sold without a payment.
    SeatSoldUnpaid,
    /// A payment's ledger row deleted.
    MissingLedgerRow,
    /// One wallet's balance changed without a ledger row.
    BalanceOff,
    /// The last admitted place stamped as admitted before the first one.
    AdmittedOutOfOrder,
}

impl Corruption {
    fn statements(self, postgres: bool) -> Vec<&'static str> {
        match self {
            // A free seat marked sold, naming a reservation nobody paid for (a seat
            // cannot be sold twice: it names one reservation, and the payments table
            // has one row per seat).
            Corruption::SeatSoldUnpaid => vec![if postgres {
                "UPDATE seats SET sold = TRUE, hold_id = gen_random_uuid(), \
                     hold_user = gen_random_uuid(), held_at = 0, hold_until = 0 \
                     WHERE (schedule_id, seat_no) IN (SELECT schedule_id, seat_no FROM seats \
                     WHERE NOT sold AND hold_id IS NULL LIMIT 1)"
            } else {
                "UPDATE seats SET sold = 1, hold_id = randomblob(16), \
                     hold_user = randomblob(16), held_at = 0, hold_until = 0 \
                     WHERE (schedule_id, seat_no) IN (SELECT schedule_id, seat_no FROM seats \
                     WHERE sold = 0 AND hold_id IS NULL LIMIT 1)"
            }],
            Corruption::MissingLedgerRow => vec![
                "DELETE FROM ledger WHERE id = \
                 (SELECT MIN(id) FROM ledger WHERE kind = 'payment')",
            ],
            Corruption::BalanceOff => vec![
                "UPDATE wallets SET balance = balance + 100 WHERE user_id = \
                 (SELECT user_id FROM wallets ORDER BY user_id LIMIT 1)",
            ],
            Corruption::AdmittedOutOfOrder => vec![
                "UPDATE queue_entries SET admitted_at = \
                 (SELECT MIN(admitted_at) FROM queue_entries) - 1000 WHERE seq = \
                 (SELECT MAX(seq) FROM queue_entries WHERE admitted_at IS NOT NULL)",
            ],
        }
    }

    fn check(self) -> &'static str {
        match self {
            Corruption::SeatSoldUnpaid => ID_SEATS,
            Corruption::MissingLedgerRow => ID_LEDGER,
            Corruption::BalanceOff => ID_BALANCES,
            Corruption::AdmittedOutOfOrder => ID_ORDER,
        }
    }
}

fn options(cfg: &SimConfig) -> AuditOptions {
    AuditOptions {
        cap: cfg.policy.max_active(),
        ..AuditOptions::default()
    }
}

async fn clean_run(url: &str, seed: u64) -> (Outcome, SimConfig) {
    let cfg = common::small(30, 2, seed);
    let o = run(&cfg, &TargetSpec::Database(url.to_owned()), Ui::Quiet)
        .await
        .expect("run");
    assert!(
        o.audit().clean,
        "before corruption: {:?}",
        o.audit().failed()
    );
    assert!(o.report.payments.count >= 2, "enough payments to corrupt");
    // Re-reading the untouched database gives the same clean verdict.
    let state = db::read(url).await.expect("read");
    assert!(audit::audit(Some(&state), &o.record, &options(&cfg)).clean);
    (o, cfg)
}

async fn corrupt_and_audit(url: &str, postgres: bool, c: Corruption, o: &Outcome, cfg: &SimConfig) {
    if postgres {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        for sql in c.statements(true) {
            sqlx::query(sql).execute(&mut conn).await.expect(sql);
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        for sql in c.statements(false) {
            let r = sqlx::query(sql).execute(&mut conn).await.expect(sql);
            assert!(r.rows_affected() > 0, "{sql}");
        }
    }
    let state = db::read(url).await.expect("read");
    let a = audit::audit(Some(&state), &o.record, &options(cfg));
    let check = a.check(c.check()).expect("the check exists");
    assert_eq!(check.verdict, Verdict::Failed, "{c:?} not caught: {a:#?}");
    assert!(check.n_violations >= 1 && !check.details.is_empty());
    assert!(!a.clean);
}

async fn sqlite_case(c: Corruption, seed: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let (o, cfg) = clean_run(&url, seed).await;
    corrupt_and_audit(&url, false, c, &o, &cfg).await;
}

async fn postgres_case(c: Corruption, seed: u64) {
    let db = booking_testkit::pg::fresh_database().await;
    let (o, cfg) = clean_run(&db.url, seed).await;
    corrupt_and_audit(&db.url, true, c, &o, &cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_seat_sold_without_payment_is_caught() {
    sqlite_case(Corruption::SeatSoldUnpaid, 21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_missing_ledger_row_is_caught() {
    sqlite_case(Corruption::MissingLedgerRow, 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_balance_that_does_not_add_up_is_caught() {
    sqlite_case(Corruption::BalanceOff, 23).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_admission_out_of_order_is_caught() {
    sqlite_case(Corruption::AdmittedOutOfOrder, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_seat_sold_without_payment_is_caught() {
    postgres_case(Corruption::SeatSoldUnpaid, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_missing_ledger_row_is_caught() {
    postgres_case(Corruption::MissingLedgerRow, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_balance_that_does_not_add_up_is_caught() {
    postgres_case(Corruption::BalanceOff, 33).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_admission_out_of_order_is_caught() {
    postgres_case(Corruption::AdmittedOutOfOrder, 34).await;
}
