//! Upgrading a database written by an earlier schema: reservations in every state,
//! written the way schema version 3 kept them (one row per reservation, the seat
//! naming its held one), read back the same after migration 4 moved held and sold
//! ones onto their seats, and the upgraded database keeps working (a lapsed hold is
//! reclaimed and recorded as expired, a live one is cancelled).

use std::path::Path;
use std::time::Duration;

use booking_core::Store;
use booking_core::domain::{
    HoldState, QueueSeq, ReservationId, ScheduleId, SeatNo, SeatState, Timestamp, UserId,
};
use booking_core::ports::NewHold;
use booking_store::{PgStore, SqliteStore};
use booking_testkit::T0;
use sqlx::AssertSqlSafe;
use sqlx::migrate::Migrator;
use uuid::Uuid;

/// What the version-3 database holds: user A holds seat 1 (live) and bought seat 2;
/// user B cancelled a hold of seat 3, and holds seat 4 with a hold that has lapsed.
struct Seeded {
    schedule: ScheduleId,
    a: UserId,
    b: UserId,
    held: ReservationId,
    paid: ReservationId,
    cancelled: ReservationId,
    lapsed: ReservationId,
}

const MINUTE: i64 = 60_000;

/// A value bound to a seed statement.
#[derive(Clone, Copy)]
enum V {
    I(i64),
    U(Uuid),
    S(&'static str),
}

/// The seed: SQL for both dialects with `$n` placeholders (rewritten to `?n` for
/// SQLite), and the values to bind. `u` holds users A and B, the four reservation
/// ids, a payment id and two token ids.
fn seed(schedule: i64, u: &[Uuid; 9]) -> Vec<(&'static str, Vec<V>)> {
    let t = |minutes: i64| V::I(T0.as_millis() + minutes * MINUTE);
    let (sch, a, b) = (V::I(schedule), V::U(u[0]), V::U(u[1]));
    let reservation = "INSERT INTO reservations
           (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
         VALUES ($1, $2, $3, $4, 100, $5, $6, $7)";
    let (held, paid, cancelled) = (V::S("held"), V::S("paid"), V::S("cancelled"));
    let claim = "UPDATE seats SET hold_id = $1, hold_until = $2
         WHERE schedule_id = $3 AND seat_no = $4";
    let entry = "INSERT INTO queue_entries
           (seq, user_id, token_id, issued_at, state, admitted_at, seen_at, expires_at)
         VALUES ($1, $2, $3, $4, 'live', $4, $4, $5)";
    vec![
        (
            "INSERT INTO seats (schedule_id, seat_no, price)
             SELECT $1, n, 100 FROM (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3
                                     UNION ALL SELECT 4) seat_numbers",
            vec![sch],
        ),
        (entry, vec![V::I(1), a, V::U(u[7]), t(0), t(60)]),
        (entry, vec![V::I(2), b, V::U(u[8]), t(0), t(60)]),
        (
            "UPDATE queue_counters SET last_seq = 2, serving = 2",
            vec![],
        ),
        // Seat 1: A's live hold.
        (
            reservation,
            vec![V::U(u[2]), a, sch, V::I(1), t(-1), t(4), held],
        ),
        (claim, vec![V::U(u[2]), t(4), sch, V::I(1)]),
        // Seat 2: A's paid reservation and its payment.
        (
            reservation,
            vec![V::U(u[3]), a, sch, V::I(2), t(-2), t(3), paid],
        ),
        (
            "UPDATE seats SET sold = TRUE WHERE schedule_id = $1 AND seat_no = 2",
            vec![sch],
        ),
        (
            "INSERT INTO payments
               (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at)
             VALUES ($1, $2, $3, $4, 2, 100, $5)",
            vec![V::U(u[6]), V::U(u[3]), a, sch, t(-1)],
        ),
        // Seat 3: B's cancelled hold; the seat is free.
        (
            reservation,
            vec![V::U(u[4]), b, sch, V::I(3), t(-10), t(-5), cancelled],
        ),
        // Seat 4: B's hold, lapsed and not swept.
        (
            reservation,
            vec![V::U(u[5]), b, sch, V::I(4), t(-7), t(-2), held],
        ),
        (claim, vec![V::U(u[5]), t(-2), sch, V::I(4)]),
    ]
}

fn ids() -> [Uuid; 9] {
    std::array::from_fn(|_| Uuid::new_v4())
}

/// A migrator of the migrations up to `version`, read from a copy of
/// `migrations/<backend>`.
async fn migrator_up_to(backend: &str, version: u32, dir: &Path) -> Migrator {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../migrations/{backend}"));
    for entry in std::fs::read_dir(src).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let n: u32 = name[..4].parse().expect("numbered migration");
        if n <= version {
            std::fs::copy(&path, dir.join(&name)).expect("copy");
        }
    }
    Migrator::new(dir).await.expect("migrator")
}

/// Migrates the database behind `$pool` to schema 3 (migrations copied to `$dir`),
/// creates a concert and a date of four seats, writes the seed; yields the date's id.
macro_rules! write_v3 {
    ($pool:expr, $backend:literal, $dir:expr, $u:expr) => {{
        let dialect = |sql: &str| {
            let sql = if $backend == "sqlite" {
                sql.replace('$', "?")
            } else {
                sql.to_owned()
            };
            AssertSqlSafe(sql)
        };
        migrator_up_to($backend, 3, $dir)
            .await
            .run($pool)
            .await
            .expect("migrate to 3");
        let concert: i64 =
            sqlx::query_scalar("INSERT INTO concerts (name) VALUES ('Old') RETURNING id")
                .fetch_one($pool)
                .await
                .expect("concert");
        let schedule: i64 = sqlx::query_scalar(dialect(
            "INSERT INTO schedules (concert_id, starts_at, date, seat_count)
             VALUES ($1, $2, '2026-03-01', 4) RETURNING id",
        ))
        .bind(concert)
        .bind(T0.as_millis() + 30 * 86_400_000)
        .fetch_one($pool)
        .await
        .expect("schedule");
        for (sql, vals) in seed(schedule, &$u) {
            let mut q = sqlx::query(dialect(sql));
            for v in vals {
                q = match v {
                    V::I(i) => q.bind(i),
                    V::U(u) => q.bind(u),
                    V::S(s) => q.bind(s),
                };
            }
            q.execute($pool).await.expect("seed statement");
        }
        schedule
    }};
}

fn seeded(schedule: i64, u: &[Uuid; 9]) -> Seeded {
    let r = |i: usize| ReservationId::from_uuid(u[i]).expect("id");
    Seeded {
        schedule: ScheduleId::new(schedule).expect("schedule"),
        a: UserId::from_uuid(u[0]).expect("user"),
        b: UserId::from_uuid(u[1]).expect("user"),
        held: r(2),
        paid: r(3),
        cancelled: r(4),
        lapsed: r(5),
    }
}

fn seat(n: i64) -> SeatNo {
    SeatNo::new(n).expect("seat")
}

/// Every reservation reads back as it was, and the upgraded store keeps working.
async fn check_upgraded<S: Store>(store: &S, s: &Seeded) {
    let now = T0;
    let get = |id| async move { store.reservation(id).await.expect("read").expect("found") };
    let held = get(s.held).await;
    assert_eq!(
        (held.user, held.seat, held.state, held.price.minor_units()),
        (s.a, seat(1), HoldState::Held, 100)
    );
    assert_eq!(
        (held.created_at, held.expires_at),
        (
            Timestamp::from_millis(now.as_millis() - MINUTE),
            now.plus(Duration::from_secs(4 * 60))
        )
    );
    let paid = get(s.paid).await;
    assert_eq!(
        (paid.user, paid.seat, paid.state),
        (s.a, seat(2), HoldState::Paid)
    );
    assert_eq!(paid.expires_at, now.plus(Duration::from_secs(3 * 60)));
    let cancelled = get(s.cancelled).await;
    assert_eq!(
        (cancelled.user, cancelled.seat, cancelled.state),
        (s.b, seat(3), HoldState::Cancelled)
    );
    let lapsed = get(s.lapsed).await;
    assert_eq!((lapsed.user, lapsed.seat), (s.b, seat(4)));
    assert_eq!(lapsed.state_at(now), HoldState::Expired);

    let of_a: Vec<_> = store
        .reservations_of(s.a, 10)
        .await
        .expect("list")
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(of_a, vec![s.held, s.paid], "A's reservations, newest first");
    let payments = store.payments_of(s.a, 10).await.expect("payments");
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].reservation, s.paid);

    let states: Vec<_> = store
        .seats(s.schedule, now)
        .await
        .expect("seats")
        .into_iter()
        .map(|x| x.state)
        .collect();
    assert_eq!(
        states,
        vec![
            SeatState::Held {
                until: now.plus(Duration::from_secs(4 * 60))
            },
            SeatState::Sold,
            SeatState::Free,
            SeatState::Free,
        ]
    );

    // The lapsed hold is reclaimed, and recorded as expired.
    let id = ReservationId::random();
    store
        .hold(NewHold {
            id,
            user: s.b,
            session: QueueSeq::new(2).expect("seq"),
            schedule: s.schedule,
            seat: seat(4),
            now,
            expires_at: now.plus(Duration::from_secs(300)),
            max_live_per_user: 4,
        })
        .await
        .expect("reclaim the lapsed seat");
    assert_eq!(get(s.lapsed).await.state, HoldState::Expired);
    assert_eq!(get(id).await.state, HoldState::Held);
    // The live hold is cancelled.
    store.cancel(s.held, s.a, now).await.expect("cancel");
    assert_eq!(get(s.held).await.state, HoldState::Cancelled);
    assert_eq!(store.live_holds(now, 10).await.expect("live").len(), 1);
}

#[tokio::test]
async fn a_version_3_sqlite_database_upgrades_with_every_reservation() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let migrations = tempfile::tempdir().expect("dir");
    let u = ids();
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&pool)
        .await
        .expect("pragma");
    let schedule = write_v3!(&pool, "sqlite", migrations.path(), u);
    pool.close().await;
    let store = SqliteStore::open(&url, 2).await.expect("upgrade");
    check_upgraded(&store, &seeded(schedule, &u)).await;
}

#[tokio::test]
async fn a_version_3_postgres_database_upgrades_with_every_reservation() {
    let db = booking_testkit::pg::fresh_database().await;
    let migrations = tempfile::tempdir().expect("dir");
    let u = ids();
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let schedule = write_v3!(&pool, "postgres", migrations.path(), u);
    pool.close().await;
    let store = PgStore::open(&db.url, 4).await.expect("upgrade");
    check_upgraded(&store, &seeded(schedule, &u)).await;
}
