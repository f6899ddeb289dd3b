//! R2 dates and seats.

use std::time::Duration;

use booking_core::domain::SeatState;
use booking_core::{CatalogError, ScheduleError, Store};

use crate::{Kit, amount, seat};

/// R2: bookable dates leave out past and sold-out dates.
pub async fn r2_bookable_dates_are_future_with_free_seats<S: Store>(store: S) {
    let kit = Kit::new(store);
    let soon = kit.concert_with_date(1).await;
    let later = kit.date_of(soon.concert, 60, 50).await;
    let dates = kit
        .booking
        .bookable_dates(soon.concert)
        .await
        .expect("dates");
    assert_eq!(
        dates.iter().map(|d| d.schedule.id).collect::<Vec<_>>(),
        vec![soon.id, later.id]
    );
    assert_eq!(dates[1].n_free, 50);
    // Sell the only seat of the first date: it is no longer bookable.
    let (user, token, who) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&who, soon.id, seat(1))
        .await
        .expect("hold");
    kit.booking
        .charge(user, amount(100), None)
        .await
        .expect("charge");
    let claims = token.clone();
    kit.booking.pay(&claims, hold.id, None).await.expect("pay");
    let dates = kit
        .booking
        .bookable_dates(soon.concert)
        .await
        .expect("dates");
    assert_eq!(
        dates.iter().map(|d| d.schedule.id).collect::<Vec<_>>(),
        vec![later.id]
    );
    // Once the show starts, the date is gone too.
    kit.advance(Duration::from_secs(61 * 86_400));
    assert!(
        kit.booking
            .bookable_dates(soon.concert)
            .await
            .expect("dates")
            .is_empty()
    );
    let unknown = booking_core::domain::ConcertId::new(999).expect("id");
    assert_eq!(
        kit.booking.bookable_dates(unknown).await.unwrap_err(),
        CatalogError::UnknownConcert
    );
}

/// R2: the seat map lists seats 1..=count with price and state: free, held, sold;
/// an expired hold shows free at once.
pub async fn r2_seat_map_shows_state_and_price<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let date = schedule.date();
    let (_, _, who) = kit.admitted_user().await;
    kit.booking
        .hold(&who, schedule.id, seat(7))
        .await
        .expect("hold");
    let (_, seats) = kit
        .booking
        .seats(schedule.concert, date)
        .await
        .expect("seats");
    assert_eq!(seats.len(), 50);
    assert_eq!(
        seats.iter().map(|s| s.no.get()).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(seats[6].price, amount(700));
    assert!(matches!(seats[6].state, SeatState::Held { .. }));
    assert!(
        seats
            .iter()
            .filter(|s| s.no.get() != 7)
            .all(|s| s.state == SeatState::Free)
    );
    kit.advance(kit.booking.config().hold_ttl);
    let (_, seats) = kit
        .booking
        .seats(schedule.concert, date)
        .await
        .expect("seats");
    assert_eq!(seats[6].state, SeatState::Free, "lazy expiry, no sweeper");
    let other_day = date.succ_opt().expect("date");
    assert_eq!(
        kit.booking
            .seats(schedule.concert, other_day)
            .await
            .unwrap_err(),
        CatalogError::UnknownDate(other_day)
    );
}

/// Creating dates: one per concert per day, not in the past, only for a concert.
pub async fn r2_schedule_creation_rules<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let again = booking_core::domain::NewSchedule::new(
        schedule.concert,
        schedule.starts_at.plus(Duration::from_secs(60)),
        booking_core::domain::SeatCount::DEFAULT,
        booking_core::domain::SeatPrices::Uniform(amount(5)),
    )
    .expect("new");
    assert_eq!(
        kit.booking.create_schedule(again).await.unwrap_err(),
        ScheduleError::DateTaken(schedule.date())
    );
    let past = booking_core::domain::NewSchedule::new(
        schedule.concert,
        kit.clock_now(),
        booking_core::domain::SeatCount::DEFAULT,
        booking_core::domain::SeatPrices::Uniform(amount(5)),
    )
    .expect("new");
    assert_eq!(
        kit.booking.create_schedule(past).await.unwrap_err(),
        ScheduleError::InThePast
    );
    let orphan = booking_core::domain::NewSchedule::new(
        booking_core::domain::ConcertId::new(12_345).expect("id"),
        schedule.starts_at.plus(Duration::from_secs(86_400)),
        booking_core::domain::SeatCount::DEFAULT,
        booking_core::domain::SeatPrices::Uniform(amount(5)),
    )
    .expect("new");
    assert_eq!(
        kit.booking.create_schedule(orphan).await.unwrap_err(),
        ScheduleError::UnknownConcert
    );
    assert_eq!(
        kit.booking
            .store()
            .schedule_summaries(schedule.concert, kit.clock_now())
            .await
            .expect("s")
            .len(),
        1
    );
}
