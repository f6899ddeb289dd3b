//! User commands: a queue token, then dates, seats, holds, the wallet and payment,
//! each through the same gate as the REST API.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use booking_core::domain::{
    Amount, IdempotencyKey, ReservationId, Schedule, ScheduleId, SeatNo, SeatState, UserId,
};
use booking_core::ports::CatalogRepo;
use booking_core::{Admitted, QueueStatus, TickOutcome, TokenClaims};
use booking_http::dto::{
    BalanceDto, DateDto, LedgerEntryDto, PaymentDto, QueueDto, ReservationDto, SeatDto, SeatMapDto,
};

use crate::admin::{concert_id, hold_state, ledger_table, parse_date, parse_user};
use crate::cli::{
    ChargeArgs, DatesArgs, HoldArgs, PayArgs, ReservationArgs, SeatsArgs, StatusArgs, TokenArg,
    TokenCmd, UserRead,
};
use crate::db::{Engine, save_private};
use crate::error::{CliError, CliResult};
use crate::out::{self, clock_time, note, print, table, when};

/// The token of a user command: `--token`, `BOOKING_TOKEN`, or `--token-file`.
pub fn token_of(arg: &TokenArg) -> CliResult<String> {
    let token = match (&arg.token, &arg.token_file) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| {
                CliError::bad_input(format!(
                    "cannot read the token file {}: {e}",
                    path.display()
                ))
            })?
            .trim()
            .to_owned(),
        (None, None) => String::new(),
    };
    if token.is_empty() {
        return Err(CliError::bad_input(
            "give your queue token with --token, BOOKING_TOKEN or --token-file \
             (take one with `booking token take --user <uuid>`)",
        ));
    }
    Ok(token)
}

async fn gate(engine: &Engine, arg: &TokenArg) -> CliResult<Admitted> {
    Ok(engine.gate(&token_of(arg)?).await?)
}

fn signed(engine: &Engine, arg: &TokenArg) -> CliResult<TokenClaims> {
    Ok(engine.verify_token(&token_of(arg)?)?)
}

/// Where a token stands, in words.
fn describe(status: QueueStatus) -> String {
    match status {
        QueueStatus::Waiting { position, eta, .. } => match eta {
            Some(eta) => format!("waiting: position {position}, about {}", out::rough(eta)),
            None => format!("waiting: position {position}"),
        },
        QueueStatus::Active { until } => {
            format!("admitted: active until {}", clock_time(until))
        }
        QueueStatus::SoldOut => {
            "sold out: every seat of every bookable date is sold or held".into()
        }
        QueueStatus::Expired => "expired: take a new token".into(),
        QueueStatus::Done => "done: the token ended with a payment".into(),
    }
}

pub async fn token(engine: &Engine, cmd: &TokenCmd) -> CliResult<()> {
    let TokenCmd::Take { user, save, json } = cmd;
    let user = match user {
        Some(u) => parse_user(u)?,
        None => {
            let u = UserId::random();
            note(&format!(
                "your user id is {u} (made for you; give it with --user next time)"
            ));
            u
        }
    };
    let issued = engine.issue_token(user).await?;
    if let Some(path) = save {
        save_private(path, &issued.token)?;
        note(&format!("saved the token in {}", path.display()));
    }
    if *json {
        return out::json(&QueueDto::new(
            &issued.claims,
            issued.status,
            Some(issued.token),
        ));
    }
    note(&format!(
        "place {} in the waiting room; {}",
        issued.claims.seq,
        describe(issued.status)
    ));
    print(&issued.token)
}

pub async fn status(engine: &Engine, a: &StatusArgs) -> CliResult<()> {
    let token = token_of(&a.token)?;
    let mut view = engine.queue_status(&token).await?;
    if a.wait {
        view = wait(engine, &token, a).await?;
    }
    if a.json {
        return out::json(&QueueDto::new(&view.claims, view.status, None));
    }
    print(&describe(view.status))
}

/// Polls until the token is admitted, ticking as it goes unless told not to. Each
/// poll waits as long as the last answer asked (`--poll` overrides it).
async fn wait(engine: &Engine, token: &str, a: &StatusArgs) -> CliResult<booking_core::QueueView> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_shown = None;
    let mut said_paused = false;
    loop {
        let view = engine.queue_status(token).await?;
        let pause = match view.status {
            QueueStatus::Active { .. } => {
                if tty && last_shown.is_some() {
                    note("");
                }
                return Ok(view);
            }
            QueueStatus::Expired | QueueStatus::Done => {
                return Err(CliError::refused(describe(view.status)));
            }
            QueueStatus::SoldOut => {
                if tty && last_shown.is_some() {
                    note("");
                }
                return Err(CliError::from(booking_core::GateError::SoldOut));
            }
            QueueStatus::Waiting {
                position,
                poll_after,
                ..
            } => {
                if last_shown != Some(position) {
                    let line = describe(view.status);
                    if tty {
                        // Rewrite the line in place.
                        let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
                    } else {
                        note(&line);
                    }
                    last_shown = Some(position);
                }
                if started.elapsed() >= a.timeout {
                    if tty {
                        note("");
                    }
                    return Err(CliError::refused(format!(
                        "not admitted within {}: still at position {position}",
                        out::rough(a.timeout)
                    )));
                }
                a.poll.unwrap_or(poll_after)
            }
        };
        if !a.no_tick && engine.tick().await? == TickOutcome::Paused && !said_paused {
            if tty {
                note("");
            }
            note("admission is paused; waiting for `booking queue resume`");
            said_paused = true;
            last_shown = None;
        }
        // Never past the timeout: the last poll comes at it.
        let left = a.timeout.saturating_sub(started.elapsed());
        tokio::time::sleep(pause.min(left)).await;
    }
}

pub async fn dates(engine: &Engine, a: &DatesArgs) -> CliResult<()> {
    gate(engine, &a.token).await?;
    let id = concert_id(a.concert)?;
    let dates = engine.bookable_dates(id).await?;
    if a.json {
        let dtos: Vec<DateDto> = dates.iter().map(Into::into).collect();
        return out::json(&dtos);
    }
    if dates.is_empty() {
        note(&format!("concert {id} has no bookable dates"));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = dates
        .iter()
        .map(|s| {
            vec![
                s.schedule.date().to_string(),
                when(s.schedule.starts_at),
                s.n_free.to_string(),
            ]
        })
        .collect();
    print(&table(&["DATE", "STARTS", "FREE SEATS"], &rows))
}

pub async fn seats(engine: &Engine, a: &SeatsArgs) -> CliResult<()> {
    gate(engine, &a.token).await?;
    let id = concert_id(a.concert)?;
    let date = parse_date(&a.date)?;
    let (schedule, seats) = engine.seats(id, date).await?;
    if a.json {
        return out::json(&SeatMapDto {
            concert_id: id.get(),
            date: date.to_string(),
            schedule_id: schedule.id.get(),
            seats: seats.iter().map(SeatDto::from).collect(),
        });
    }
    let count = |f: fn(&SeatState) -> bool| seats.iter().filter(|s| f(&s.state)).count();
    print(&format!(
        "concert {id}, {}: {} free, {} held, {} sold",
        when(schedule.starts_at),
        count(|s| matches!(s, SeatState::Free)),
        count(|s| matches!(s, SeatState::Held { .. })),
        count(|s| matches!(s, SeatState::Sold)),
    ))?;
    print("")?;
    print(&out::seat_map(&seats))
}

pub async fn hold(engine: &Engine, a: &HoldArgs) -> CliResult<()> {
    let id = concert_id(a.concert)?;
    let date = parse_date(&a.date)?;
    let who = gate(engine, &a.token).await?;
    let schedule = engine.schedule_on(id, date).await?;
    // Checked against this date's seats, so the message says its range.
    let count = schedule.seat_count.get();
    let seat = SeatNo::within(a.seat, schedule.seat_count).map_err(|_| {
        CliError::bad_input(format!(
            "seat must be between 1 and {count} on this date, got {}",
            a.seat
        ))
    })?;
    let h = engine.hold(&who, schedule.id, seat).await?;
    if a.json {
        return out::json(&ReservationDto::from(&h));
    }
    note(&format!(
        "held seat {} of concert {id} on {date} for {} until {}; pay with `booking pay {}`",
        h.seat,
        out::amount(h.price.minor_units()),
        clock_time(h.expires_at),
        h.id
    ));
    print(&h.id.to_string())
}

fn reservation_id(s: &str) -> CliResult<ReservationId> {
    s.parse()
        .map_err(|e| CliError::bad_input(format!("reservation {s:?}: {e}")))
}

pub async fn cancel(engine: &Engine, a: &ReservationArgs) -> CliResult<()> {
    let id = reservation_id(&a.reservation)?;
    let who = gate(engine, &a.token).await?;
    let h = engine.cancel_hold(&who, id).await?;
    if a.json {
        return out::json(&ReservationDto::from(&h));
    }
    print(&format!("cancelled: seat {} is free again", h.seat))
}

pub async fn reservations(engine: &Engine, a: &UserRead) -> CliResult<()> {
    // Any valid token of the user, ended or not: what was bought stays readable.
    let claims = signed(engine, &a.token)?;
    let list = engine.reservations(claims.user).await?;
    if a.json {
        let dtos: Vec<ReservationDto> = list.iter().map(Into::into).collect();
        return out::json(&dtos);
    }
    if list.is_empty() {
        note("no reservations");
        return Ok(());
    }
    let shows = shows(engine, list.iter().map(|h| h.schedule)).await?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            let (concert, date) = show_of(&shows, h.schedule);
            vec![
                h.id.to_string(),
                concert,
                date,
                h.seat.to_string(),
                out::amount(h.price.minor_units()),
                hold_state(h.state).to_owned(),
                clock_time(h.expires_at),
            ]
        })
        .collect();
    print(&table(
        &[
            "RESERVATION",
            "CONCERT",
            "DATE",
            "SEAT",
            "PRICE",
            "STATE",
            "HELD UNTIL",
        ],
        &rows,
    ))
}

/// The concert and date of each schedule in `ids`, read once each.
async fn shows(
    engine: &Engine,
    ids: impl Iterator<Item = ScheduleId>,
) -> CliResult<HashMap<ScheduleId, Schedule>> {
    let mut found = HashMap::new();
    for id in ids {
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(id)
            && let Some(s) = engine.store().schedule(id).await?
        {
            slot.insert(s);
        }
    }
    Ok(found)
}

/// A schedule as a person knows it: the concert's id and the date.
fn show_of(shows: &HashMap<ScheduleId, Schedule>, id: ScheduleId) -> (String, String) {
    match shows.get(&id) {
        Some(s) => (s.concert.to_string(), s.date().to_string()),
        None => (String::new(), format!("schedule {id}")),
    }
}

fn key_of(key: &Option<String>) -> CliResult<Option<IdempotencyKey>> {
    key.as_ref()
        .map(|k| IdempotencyKey::new(k.as_str()))
        .transpose()
        .map_err(|e| CliError::bad_input(format!("--key: {e}")))
}

pub async fn charge(engine: &Engine, a: &ChargeArgs) -> CliResult<()> {
    let amount = Amount::new(a.amount)?;
    let key = key_of(&a.key)?;
    let claims = signed(engine, &a.token)?;
    let receipt = engine.charge_with_token(&claims, amount, key).await?;
    if a.json {
        return out::json(&LedgerEntryDto::from(&receipt.entry));
    }
    let balance = out::amount(receipt.entry.balance_after.minor_units());
    print(&if receipt.replayed {
        format!(
            "this key already charged {}; nothing added; balance {balance}",
            out::amount(amount.minor_units())
        )
    } else {
        format!(
            "charged {}; balance {balance}",
            out::amount(amount.minor_units())
        )
    })
}

pub async fn balance(engine: &Engine, a: &UserRead) -> CliResult<()> {
    let claims = signed(engine, &a.token)?;
    let balance = engine.balance(claims.user).await?;
    if a.json {
        return out::json(&BalanceDto {
            user_id: claims.user.to_string(),
            balance: balance.minor_units(),
        });
    }
    print(&format!("balance: {}", out::amount(balance.minor_units())))?;
    let ledger = engine.ledger(claims.user).await?;
    if !ledger.is_empty() {
        print(&ledger_table(&ledger))?;
    }
    Ok(())
}

pub async fn pay(engine: &Engine, a: &PayArgs) -> CliResult<()> {
    let ids = a
        .reservations
        .iter()
        .map(|r| reservation_id(r))
        .collect::<CliResult<Vec<_>>>()?;
    let key = key_of(&a.key)?;
    let token = token_of(&a.token)?;
    let receipt = engine.pay_all(&token, &ids, key).await?;
    let p = &receipt.payment;
    if a.json {
        return out::json(&PaymentDto::from(p));
    }
    let seats: Vec<String> = p.seats.iter().map(|s| s.seat.to_string()).collect();
    note(&format!(
        "{} seat{} {} for {}; your queue token has ended",
        if receipt.replayed {
            "already paid"
        } else {
            "paid"
        },
        if seats.len() == 1 { "" } else { "s" },
        seats.join(", "),
        out::amount(p.amount.minor_units())
    ));
    print(&p.id.to_string())
}

pub async fn payments(engine: &Engine, a: &UserRead) -> CliResult<()> {
    let claims = signed(engine, &a.token)?;
    let list = engine.payments_of_token(&claims).await?;
    if a.json {
        let dtos: Vec<PaymentDto> = list.iter().map(Into::into).collect();
        return out::json(&dtos);
    }
    if list.is_empty() {
        note("no payments");
        return Ok(());
    }
    let shows = shows(
        engine,
        list.iter().flat_map(|p| p.seats.iter().map(|s| s.schedule)),
    )
    .await?;
    let shows = &shows;
    let rows: Vec<Vec<String>> = list
        .iter()
        .flat_map(|p| {
            p.seats.iter().enumerate().map(move |(i, s)| {
                let first = i == 0;
                let (concert, date) = show_of(shows, s.schedule);
                vec![
                    if first {
                        p.id.to_string()
                    } else {
                        String::new()
                    },
                    if first {
                        when(p.paid_at)
                    } else {
                        String::new()
                    },
                    s.reservation.to_string(),
                    concert,
                    date,
                    s.seat.to_string(),
                    out::amount(s.price.minor_units()),
                    if first {
                        out::amount(p.amount.minor_units())
                    } else {
                        String::new()
                    },
                ]
            })
        })
        .collect();
    print(&table(
        &[
            "PAYMENT",
            "PAID AT",
            "RESERVATION",
            "CONCERT",
            "DATE",
            "SEAT",
            "PRICE",
            "TOTAL",
        ],
        &rows,
    ))
}
