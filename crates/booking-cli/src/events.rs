//! `booking events tail`: the event feed (decision record 0013), read from the
//! database like the other admin commands.

use std::time::Duration;

use booking_core::domain::{Event, EventData, EventId, EventType};

use crate::cli::{EventsCmd, TailArgs};
use crate::db::Engine;
use crate::error::{CliError, CliResult};
use crate::out::{self, print};

/// How long `--follow` waits before reading again when nothing is new.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Events read at once.
const PAGE: u32 = 1_000;

pub async fn events(engine: &Engine, cmd: &EventsCmd) -> CliResult<()> {
    match cmd {
        EventsCmd::Tail(a) => tail(engine, a).await,
    }
}

fn parse_types(list: &[String]) -> CliResult<Vec<EventType>> {
    list.iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<EventType>()
                .map_err(|e| CliError::bad_input(e.to_string()))
        })
        .collect()
}

/// One line for a human: id, time, type, then the payload's fields.
pub fn describe(e: &Event) -> String {
    let fields = match &e.data {
        EventData::TokenIssued { user, seq } => format!("user {user} place {seq}"),
        EventData::SessionAdmitted { first, last } => format!("places {first}..={last}"),
        EventData::HoldCreated {
            reservation,
            user,
            schedule,
            seat,
            price,
            until,
        } => format!(
            "reservation {reservation} user {user} schedule {schedule} seat {seat} price {} until {}",
            out::amount(price.minor_units()),
            until
        ),
        EventData::HoldCancelled {
            reservation,
            user,
            schedule,
            seat,
        }
        | EventData::HoldExpired {
            reservation,
            user,
            schedule,
            seat,
            ..
        } => format!("reservation {reservation} user {user} schedule {schedule} seat {seat}"),
        EventData::WalletCharged {
            user,
            amount,
            balance_after,
        } => format!(
            "user {user} amount {} balance {}",
            out::amount(amount.minor_units()),
            out::amount(balance_after.minor_units())
        ),
        EventData::PaymentCompleted {
            payment,
            user,
            seats,
            amount,
            balance_after,
        } => {
            let seats: Vec<String> = seats
                .iter()
                .map(|s| format!("{}/{}", s.schedule, s.seat))
                .collect();
            format!(
                "payment {payment} user {user} seats {} amount {} balance {}",
                seats.join(","),
                out::amount(amount.minor_units()),
                out::amount(balance_after.minor_units())
            )
        }
        EventData::SessionEnded { user, seq, reason } => {
            format!("user {user} place {seq} {}", reason.as_str())
        }
    };
    format!(
        "{:>6}  {}  {:<17}  {fields}",
        e.id,
        e.at,
        e.event_type().as_str()
    )
}

async fn tail(engine: &Engine, a: &TailArgs) -> CliResult<()> {
    let types = parse_types(&a.types)?;
    let mut after = EventId(a.after.unwrap_or(0));
    loop {
        let page = engine.events_after(after, PAGE, &types).await?;
        for e in &page {
            if a.json {
                let line = serde_json::to_string(&booking_http::event_json(e))
                    .map_err(|e| CliError::failure(format!("cannot write JSON: {e}")))?;
                print(&line)?;
            } else {
                print(&describe(e))?;
            }
            after = e.id;
        }
        if page.len() < PAGE as usize {
            if !a.follow {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}
