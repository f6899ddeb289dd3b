//! Demo data: a few concerts with future dates, 50 seats each, with prices.

use booking_core::domain::{
    Amount, Concert, ConcertName, NewSchedule, PriceList, Schedule, SeatCount, SeatPrices,
    Timestamp,
};
use booking_core::{Clock, SystemClock};
use chrono::{NaiveTime, TimeDelta};
use serde::Serialize;

use crate::db::Engine;
use crate::error::CliResult;

/// One demo concert: its name, its dates (days from today, UTC hour) and prices.
struct Demo {
    name: &'static str,
    dates: &'static [(i64, u32)],
    prices: fn() -> CliResult<SeatPrices>,
}

const DEMOS: &[Demo] = &[
    Demo {
        name: "Blue Night",
        dates: &[(7, 19), (14, 19), (21, 19)],
        prices: || Ok(SeatPrices::Uniform(Amount::new(5_000)?)),
    },
    Demo {
        name: "Morning Strings",
        dates: &[(10, 11), (17, 11)],
        // Front rows cost more: seats 1-10, 11-30, 31-50.
        prices: || {
            let price = |n: u16| match n {
                1..=10 => 12_000,
                11..=30 => 8_000,
                _ => 5_000,
            };
            let list = SeatCount::DEFAULT
                .seats()
                .map(|s| Amount::new(price(s.get())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SeatPrices::PerSeat(PriceList::new(list)?))
        },
    },
    Demo {
        name: "Late Jazz",
        dates: &[(3, 22)],
        prices: || Ok(SeatPrices::Uniform(Amount::new(3_500)?)),
    },
];

/// What the seed created.
#[derive(Debug, Serialize)]
pub struct Seeded {
    pub concerts: Vec<SeededConcert>,
}

#[derive(Debug, Serialize)]
pub struct SeededConcert {
    pub id: i64,
    pub name: String,
    pub dates: Vec<String>,
}

/// Creates the demo concerts, dated from today.
pub async fn seed(engine: &Engine) -> CliResult<Seeded> {
    let today = SystemClock.now().date();
    let mut concerts = Vec::new();
    for demo in DEMOS {
        let concert: Concert = engine.create_concert(ConcertName::new(demo.name)?).await?;
        let mut dates = Vec::new();
        for &(days, hour) in demo.dates {
            let day = today + TimeDelta::days(days);
            let at = NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or_default();
            let starts_at = Timestamp::from_datetime(day.and_time(at).and_utc());
            let new =
                NewSchedule::new(concert.id, starts_at, SeatCount::DEFAULT, (demo.prices)()?)?;
            let s: Schedule = engine.create_schedule(new).await?;
            dates.push(s.date().to_string());
        }
        concerts.push(SeededConcert {
            id: concert.id.get(),
            name: concert.name.to_string(),
            dates,
        });
    }
    Ok(Seeded { concerts })
}

/// The seed as lines for a human.
pub fn describe(s: &Seeded) -> String {
    s.concerts
        .iter()
        .map(|c| format!("concert {} {:?}: {}", c.id, c.name, c.dates.join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}
