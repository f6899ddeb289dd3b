//! Embedding booking-core on SQLite: the same engine as in memory, over a database
//! file that outlives the program. Two users race for one seat, the winner pays for
//! two seats at once, and a second engine opened on the same file (as a restarted
//! program would be) finds everything as it was left.
//!
//! ```text
//! cargo run --example embed_sqlite
//! ```
//!
//! The file goes in a temporary directory; give a path of your own to
//! `SqliteStore::open_path` to keep it. SQLite is the embedded default: one file,
//! no server, every write durable (WAL). For several server instances, use
//! `PgStore` on PostgreSQL instead: the engine code does not change.

use std::error::Error;
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertName, NewSchedule, SeatCount, SeatNo, SeatPrices, SeatState,
    UserId,
};
use booking_core::{Booking, Clock, Config, HoldError, SystemClock, TokenSigner};
use booking_store::SqliteStore;

/// Every engine on the same database must sign tokens with the same secret.
const SECRET: &[u8] = b"example secret: at least thirty-two bytes long";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("booking.db");
    let store = SqliteStore::open_path(&path, 2).await?;
    let booking = Booking::new(
        store.clone(),
        SystemClock,
        TokenSigner::new(SECRET)?,
        Config::default(),
    )?;
    println!("booking-core on SQLite: {}", path.display());

    // A concert with one date, 50 seats at 4000.
    let now = booking.clock().now();
    let concert = booking
        .create_concert(ConcertName::new("Harbour Lights")?)
        .await?;
    let date = booking
        .create_schedule(NewSchedule::new(
            concert.id,
            now.plus(Duration::from_secs(14 * 86_400)),
            SeatCount::new(50)?,
            SeatPrices::Uniform(Amount::new(4_000)?),
        )?)
        .await?;
    println!("concert #{} on {}", concert.id, date.date());

    // Two users take places and are admitted by one tick.
    let (ann, ben) = (UserId::random(), UserId::random());
    let ann_token = booking.issue_token(ann).await?.token;
    let ben_token = booking.issue_token(ben).await?.token;
    booking
        .set_policy(AdmissionPolicy::rate(10, Duration::from_millis(10))?)
        .await?;
    booking.tick().await?;
    let ann_in = booking.gate(&ann_token).await?;
    let ben_in = booking.gate(&ben_token).await?;

    // They race for seat 7: exactly one holds it.
    let seat7 = SeatNo::new(7)?;
    let (a, b) = tokio::join!(
        booking.hold(&ann_in, date.id, seat7),
        booking.hold(&ben_in, date.id, seat7)
    );
    let (winner, token, user, first) = match (a, b) {
        (Ok(h), Err(HoldError::SeatTaken(_))) => ("ann", &ann_token, ann, h),
        (Err(HoldError::SeatTaken(_)), Ok(h)) => ("ben", &ben_token, ben, h),
        other => return Err(format!("expected one winner, got {other:?}").into()),
    };
    println!("seat 7 went to {winner}; the other was told it was taken");

    // The winner holds seat 8 too, tops up and pays for both in one payment.
    let who = if winner == "ann" { &ann_in } else { &ben_in };
    let second = booking.hold(who, date.id, SeatNo::new(8)?).await?;
    booking.charge(user, Amount::new(8_000)?, None).await?;
    let paid = booking.pay_all(token, &[first.id, second.id], None).await?;
    println!(
        "paid {} for seats {:?}",
        paid.payment.amount,
        paid.payment
            .seats
            .iter()
            .map(|s| s.seat.get())
            .collect::<Vec<_>>()
    );
    store.close().await;

    // A restarted program: a new store and engine on the same file.
    let store = SqliteStore::open_path(&path, 2).await?;
    let again = Booking::new(
        store.clone(),
        SystemClock,
        TokenSigner::new(SECRET)?,
        Config::default(),
    )?;
    let (_, seats) = again.seats(concert.id, date.date()).await?;
    let sold = seats
        .iter()
        .filter(|s| matches!(s.state, SeatState::Sold))
        .count();
    println!(
        "after a restart: {sold} seats sold, the winner's balance is {}",
        again.balance(user).await?
    );
    if sold != 2 {
        return Err(format!("expected 2 seats sold after the restart, found {sold}").into());
    }
    store.close().await;
    Ok(())
}
