//! Embedding booking-core in a Rust program: the in-memory store, the system clock,
//! and the whole flow of one booking, printed step by step.
//!
//! ```text
//! cargo run --example embed_memory
//! ```
//!
//! Nothing here is a server: the program calls the engine directly, as an
//! application that embeds it would. Every rule (the queue gate, the one-owner seat
//! hold, the conditional debit, the token ending at payment) is enforced by
//! booking-core itself.

use std::error::Error;
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertName, IdempotencyKey, LedgerKind, NewSchedule, Seat, SeatCount,
    SeatNo, SeatPrices, SeatState, UserId,
};
use booking_core::{
    Booking, Clock, Config, GateError, HoldError, MemoryStore, QueueStatus, SystemClock,
    TokenSigner,
};

/// A real deployment reads the secret from its configuration; every instance that
/// shares the store must share it.
const SECRET: &[u8] = b"example secret: at least thirty-two bytes long";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let signer = TokenSigner::new(SECRET)?;
    let booking = Booking::new(MemoryStore::new(), SystemClock, signer, Config::default())?;
    let now = booking.clock().now();
    println!("booking-core, in memory, system clock; now {now}");

    step("1. An operator creates a concert and a date with 50 seats");
    let concert = booking
        .create_concert(ConcertName::new("Blue Night")?)
        .await?;
    let new = NewSchedule::new(
        concert.id,
        now.plus(Duration::from_secs(30 * 86_400)),
        SeatCount::new(50)?,
        SeatPrices::Uniform(Amount::new(50_000)?),
    )?;
    let schedule = booking.create_schedule(new).await?;
    let date = schedule.date();
    println!(
        "   concert #{} {:?}, date #{} on {date} at {}, {} seats at 50000 each",
        concert.id,
        concert.name.as_str(),
        schedule.id,
        schedule.starts_at,
        schedule.seat_count.get(),
    );

    step("2. Alice and Bob take a queue token");
    let alice = UserId::random();
    let bob = UserId::random();
    let alice_token = booking.issue_token(alice).await?;
    let bob_token = booking.issue_token(bob).await?;
    for (name, issued) in [("alice", &alice_token), ("bob", &bob_token)] {
        println!(
            "   {name:<5} seq {}  token {}...  ({} chars, signed, opaque)",
            issued.claims.seq,
            &issued.token[..16],
            issued.token.len()
        );
    }

    step("3. Alice polls her place");
    let view = booking.queue_status(&alice_token.token).await?;
    println!("   alice: {}", describe(&view.status));
    match booking.gate(&alice_token.token).await {
        Err(e @ GateError::Waiting { .. }) => println!("   the gate turns her away: {e}"),
        other => println!("   the gate says: {other:?}"),
    }

    step("4. The admission ticker runs");
    // The first tick is always due; a 10 ms interval keeps later ticks close, as a
    // real deployment with a ticker loop would set a policy of its own.
    booking
        .set_policy(AdmissionPolicy::rate(50, Duration::from_millis(10))?)
        .await?;
    let outcome = booking.tick().await?;
    println!("   tick: {outcome:?}");
    let view = booking.queue_status(&alice_token.token).await?;
    println!("   alice: {}", describe(&view.status));

    step("5. Alice passes the gate: her session starts");
    let alice_in = booking.gate(&alice_token.token).await?;
    println!(
        "   admitted: user {}, session seq {}, until {}",
        alice_in.user(),
        alice_in.seq(),
        alice_in.until()
    );

    step("6. Bookable dates of the concert");
    for d in booking.bookable_dates(concert.id).await? {
        println!(
            "   {} (#{}): {} free, {} held, {} sold",
            d.schedule.date(),
            d.schedule.id,
            d.n_free,
            d.n_held,
            d.n_sold
        );
    }

    step("7. The seat map of that date");
    let (_, seats) = booking.seats(concert.id, date).await?;
    print_seat_map(&seats);

    step("8. Alice holds seat 17");
    let seat = SeatNo::new(17)?;
    let hold = booking.hold(&alice_in, schedule.id, seat).await?;
    println!(
        "   reservation {} on seat {}, price {}, held until {}",
        hold.id, hold.seat, hold.price, hold.expires_at
    );

    step("9. Bob wants the same seat");
    let bob_in = booking.gate(&bob_token.token).await?;
    match booking.hold(&bob_in, schedule.id, seat).await {
        Err(e @ HoldError::SeatTaken(_)) => println!("   conflict: {e}"),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    let (_, seats) = booking.seats(concert.id, date).await?;
    print_seat_map(&seats);

    step("10. Alice charges her wallet");
    let charge_key = IdempotencyKey::new("alice-top-up-1")?;
    let receipt = booking
        .charge(alice, Amount::new(80_000)?, Some(charge_key.clone()))
        .await?;
    println!(
        "   charged {}, balance now {} (ledger row #{})",
        receipt.entry.amount, receipt.entry.balance_after, receipt.entry.id
    );
    let again = booking
        .charge(alice, Amount::new(80_000)?, Some(charge_key))
        .await?;
    println!(
        "   the same request retried: replayed = {}, same row #{}, balance still {}",
        again.replayed,
        again.entry.id,
        booking.balance(alice).await?
    );

    step("11. Alice pays for her hold");
    let pay_key = IdempotencyKey::new("alice-pay-1")?;
    let paid = booking
        .pay(&alice_token.token, hold.id, Some(pay_key.clone()))
        .await?;
    println!(
        "   payment {}: {} for seat {} at {}",
        paid.payment.id, paid.payment.amount, paid.payment.seat, paid.payment.paid_at
    );
    let retry = booking
        .pay(&alice_token.token, hold.id, Some(pay_key))
        .await?;
    let same = if retry.payment.id == paid.payment.id {
        "the same payment"
    } else {
        "A DIFFERENT PAYMENT"
    };
    println!(
        "   the same payment retried: replayed = {}, {same}, balance still {}",
        retry.replayed,
        booking.balance(alice).await?
    );

    step("12. The seat is sold");
    let (_, seats) = booking.seats(concert.id, date).await?;
    print_seat_map(&seats);
    for d in booking.bookable_dates(concert.id).await? {
        println!(
            "   {}: {} free, {} held, {} sold",
            d.schedule.date(),
            d.n_free,
            d.n_held,
            d.n_sold
        );
    }

    step("13. Alice's balance, ledger and payments");
    println!("   balance {}", booking.balance(alice).await?);
    for row in booking.ledger(alice).await?.iter().rev() {
        let what = match row.kind {
            LedgerKind::Charge => "charge".to_owned(),
            LedgerKind::Payment(id) => format!("payment {id}"),
        };
        println!(
            "   #{:<2} {:>+7}  balance after {:>6}  {what}",
            row.id,
            row.delta(),
            row.balance_after
        );
    }
    for p in booking.payments(alice).await? {
        println!(
            "   paid: seat {} of date #{} for {}",
            p.seat, p.schedule, p.amount
        );
    }

    step("14. Alice's token has ended with the payment");
    let view = booking.queue_status(&alice_token.token).await?;
    println!("   alice: {}", describe(&view.status));
    match booking.gate(&alice_token.token).await {
        Err(e @ GateError::Ended) => println!("   the gate: {e}"),
        other => return Err(format!("expected an ended token, got {other:?}").into()),
    }

    println!("\ndone.");
    Ok(())
}

fn step(title: &str) {
    println!("\n{title}");
}

fn describe(status: &QueueStatus) -> String {
    match status {
        QueueStatus::Waiting {
            position,
            eta,
            poll_after,
        } => match eta {
            Some(eta) => format!(
                "waiting, position {position}, about {eta:?} to go; ask again in {poll_after:?}"
            ),
            None => format!("waiting, position {position}; ask again in {poll_after:?}"),
        },
        QueueStatus::Active { until } => format!("active until {until}"),
        QueueStatus::Expired => "expired".to_owned(),
        QueueStatus::Done => "done (ended by a payment)".to_owned(),
        QueueStatus::SoldOut => "sold out: nothing left to book".to_owned(),
    }
}

/// Ten seats a row: `.` free, `H` held, `S` sold.
fn print_seat_map(seats: &[Seat]) {
    println!("   seats (. free, H held, S sold)");
    for row in seats.chunks(10) {
        let first = row.first().map_or(0, |s| s.no.get());
        let last = row.last().map_or(0, |s| s.no.get());
        let cells: Vec<&str> = row
            .iter()
            .map(|s| match s.state {
                SeatState::Free => ".",
                SeatState::Held { .. } => "H",
                SeatState::Sold => "S",
            })
            .collect();
        println!("   {first:>2}-{last:<2} {}", cells.join(" "));
    }
}
