//! Admin commands: concerts, dates, the waiting room, holds, sales, wallets. They
//! work directly on the database and never touch queue tokens.

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, ConcertName, Hold, HoldState, NewSchedule, PriceList,
    ScheduleSummary, SeatCount, SeatPrices, Timestamp, UserId,
};
use booking_core::{Clock, SystemClock};
use booking_http::dto::{BalanceDto, ConcertDto, DateDto, LedgerEntryDto};
use chrono::{NaiveDate, NaiveTime};
use serde::Serialize;

use crate::cli::{
    ConcertCmd, HoldsCmd, PolicyArgs, QueueCmd, SalesArgs, ScheduleAddArgs, ScheduleCmd, WalletArgs,
};
use crate::db::Engine;
use crate::error::{CliError, CliResult};
use crate::out::{self, note, print, table, when};

/// A concert id from the command line; no id below 1 exists.
pub fn concert_id(n: i64) -> CliResult<ConcertId> {
    ConcertId::new(n).map_err(|_| CliError::not_found(format!("no such concert {n}")))
}

/// A date from the command line.
pub fn parse_date(s: &str) -> CliResult<NaiveDate> {
    booking_core::domain::parse_date(s.trim())
        .map_err(|_| CliError::bad_input(format!("date {s:?} is not YYYY-MM-DD")))
}

/// A user id from the command line.
pub fn parse_user(s: &str) -> CliResult<UserId> {
    s.parse()
        .map_err(|e| CliError::bad_input(format!("user {s:?}: {e}")))
}

pub async fn concert(engine: &Engine, cmd: &ConcertCmd) -> CliResult<()> {
    match cmd {
        ConcertCmd::Add { name, json } => {
            let name = ConcertName::new(name)?;
            let c = engine.create_concert(name).await?;
            if *json {
                return out::json(&ConcertDto::from(&c));
            }
            note(&format!("created concert {} {:?}", c.id, c.name.as_str()));
            print(&c.id.to_string())
        }
        ConcertCmd::List(f) => {
            let list = engine.concerts().await?;
            if f.json {
                let dtos: Vec<ConcertDto> = list.iter().map(Into::into).collect();
                return out::json(&dtos);
            }
            if list.is_empty() {
                note("no concerts yet: add one with `booking concert add NAME` or `booking seed`");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| vec![c.id.to_string(), c.name.to_string()])
                .collect();
            print(&table(&["ID", "NAME"], &rows))
        }
        ConcertCmd::Show { concert, json } => {
            let id = concert_id(*concert)?;
            let c = engine.concert(id).await?;
            let dates = engine.sales(id).await?;
            if *json {
                return out::json(&ConcertView {
                    id: c.id.get(),
                    name: c.name.to_string(),
                    dates: dates.iter().map(ScheduleView::from).collect(),
                });
            }
            print(&format!("concert {} {:?}", c.id, c.name.as_str()))?;
            if dates.is_empty() {
                return print("no dates yet: add one with `booking schedule add`");
            }
            print(&schedule_table(&dates))
        }
    }
}

/// A concert with its dates.
#[derive(Debug, Serialize)]
struct ConcertView {
    id: i64,
    name: String,
    dates: Vec<ScheduleView>,
}

/// A date of a concert, past or future, with its seat counts.
#[derive(Debug, Serialize)]
struct ScheduleView {
    #[serde(flatten)]
    date: DateDto,
    /// How many seats.
    seats: u16,
    /// Whether seats can still be held (the show has not started).
    open: bool,
}

impl From<&ScheduleSummary> for ScheduleView {
    fn from(s: &ScheduleSummary) -> Self {
        ScheduleView {
            date: DateDto::from(s),
            seats: s.schedule.seat_count.get(),
            open: s.schedule.is_open_at(SystemClock.now()),
        }
    }
}

fn schedule_table(dates: &[ScheduleSummary]) -> String {
    let now = SystemClock.now();
    let rows: Vec<Vec<String>> = dates
        .iter()
        .map(|s| {
            vec![
                s.schedule.date().to_string(),
                s.schedule.id.to_string(),
                when(s.schedule.starts_at),
                s.schedule.seat_count.get().to_string(),
                s.n_free.to_string(),
                s.n_held.to_string(),
                s.n_sold.to_string(),
                if s.schedule.is_open_at(now) {
                    "open"
                } else {
                    "past"
                }
                .to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "DATE", "SCHEDULE", "STARTS", "SEATS", "FREE", "HELD", "SOLD", "STATE",
        ],
        &rows,
    )
}

pub async fn schedule(engine: &Engine, cmd: &ScheduleCmd) -> CliResult<()> {
    match cmd {
        ScheduleCmd::Add(a) => add_schedule(engine, a).await,
        ScheduleCmd::List { concert, json } => {
            let id = concert_id(*concert)?;
            let dates = engine.sales(id).await?;
            if *json {
                let views: Vec<ScheduleView> = dates.iter().map(Into::into).collect();
                return out::json(&views);
            }
            if dates.is_empty() {
                note(&format!("concert {id} has no dates yet"));
                return Ok(());
            }
            print(&schedule_table(&dates))
        }
    }
}

async fn add_schedule(engine: &Engine, a: &ScheduleAddArgs) -> CliResult<()> {
    let concert = concert_id(a.concert)?;
    let date = parse_date(&a.date)?;
    let time = NaiveTime::parse_from_str(a.time.trim(), "%H:%M")
        .map_err(|_| CliError::bad_input(format!("time {:?} is not HH:MM", a.time)))?;
    let starts_at = Timestamp::from_datetime(date.and_time(time).and_utc());
    let seats = SeatCount::new(a.seats)?;
    let prices = match (&a.price, &a.prices) {
        (Some(p), None) => SeatPrices::Uniform(Amount::new(*p)?),
        (None, Some(list)) => {
            let list = list
                .iter()
                .map(|&p| Amount::new(p))
                .collect::<Result<Vec<_>, _>>()?;
            SeatPrices::PerSeat(PriceList::new(list)?)
        }
        _ => return Err(CliError::bad_input("give --price or --prices")),
    };
    let new = NewSchedule::new(concert, starts_at, seats, prices)?;
    let s = engine.create_schedule(new).await?;
    if a.json {
        let dto = DateDto {
            date: s.date().to_string(),
            schedule_id: s.id.get(),
            starts_at: s.starts_at.to_string(),
            seats_free: u32::from(s.seat_count.get()),
            seats_held: 0,
            seats_sold: 0,
        };
        return out::json(&dto);
    }
    note(&format!(
        "added {} to concert {concert}: {} seats, schedule {}",
        when(s.starts_at),
        s.seat_count.get(),
        s.id
    ));
    print(&s.id.to_string())
}

/// The admission policy, as the admin API shows it.
#[derive(Debug, Serialize)]
struct PolicyView {
    interval_ms: u64,
    batch: Option<u32>,
    max_active: Option<u32>,
}

impl From<AdmissionPolicy> for PolicyView {
    fn from(p: AdmissionPolicy) -> Self {
        PolicyView {
            interval_ms: p.interval().as_millis() as u64,
            batch: p.batch(),
            max_active: p.max_active(),
        }
    }
}

fn describe_policy(p: AdmissionPolicy) -> String {
    let every = out::rough(p.interval());
    match (p.batch(), p.max_active()) {
        (Some(b), Some(m)) => format!("admit {b} every {every}, at most {m} active"),
        (Some(b), None) => format!("admit {b} every {every}"),
        (None, Some(m)) => format!("keep at most {m} active, checked every {every}"),
        (None, None) => format!("every {every}"),
    }
}

/// The waiting room, as the admin API shows it.
#[derive(Debug, Serialize)]
struct QueueView {
    issued: u64,
    serving: u64,
    waiting: u64,
    active: u64,
    paused: bool,
    policy: PolicyView,
    admit_rate_per_sec: f64,
}

pub async fn queue(engine: &Engine, cmd: &QueueCmd) -> CliResult<()> {
    match cmd {
        QueueCmd::Show(f) => {
            let s = engine.queue_stats().await?;
            let c = s.counters;
            let view = QueueView {
                issued: c.last_seq,
                serving: c.serving,
                waiting: c.n_waiting(),
                active: s.n_active,
                paused: c.paused,
                policy: c.policy.into(),
                admit_rate_per_sec: c.admit_rate_milli as f64 / 1000.0,
            };
            if f.json {
                return out::json(&view);
            }
            let text = [
                format!("waiting:   {} (queue length)", view.waiting),
                format!(
                    "serving:   {} (every place up to it is admitted)",
                    view.serving
                ),
                format!("issued:    {}", view.issued),
                format!("active:    {} users", view.active),
                format!(
                    "admission: {}{}",
                    if view.paused { "PAUSED; " } else { "" },
                    describe_policy(c.policy)
                ),
                format!(
                    "rate:      {:.1} admitted per second (observed)",
                    view.admit_rate_per_sec
                ),
            ];
            print(&text.join("\n"))
        }
        QueueCmd::Policy(a) => set_policy(engine, a).await,
        QueueCmd::Pause(f) => pause(engine, true, f.json).await,
        QueueCmd::Resume(f) => pause(engine, false, f.json).await,
    }
}

async fn set_policy(engine: &Engine, a: &PolicyArgs) -> CliResult<()> {
    let now = engine.queue_stats().await?.counters.policy;
    let policy = AdmissionPolicy::new(
        a.every.unwrap_or(now.interval()),
        a.batch.map_or(now.batch(), |l| l.0),
        a.max_active.map_or(now.max_active(), |l| l.0),
    )?;
    if policy != now {
        engine.set_policy(policy).await?;
    }
    if a.json {
        return out::json(&PolicyView::from(policy));
    }
    print(&format!("admission policy: {}", describe_policy(policy)))
}

async fn pause(engine: &Engine, paused: bool, json: bool) -> CliResult<()> {
    engine.set_paused(paused).await?;
    if json {
        return out::json(&serde_json::json!({ "paused": paused }));
    }
    print(if paused {
        "admission paused: nobody else is admitted until `booking queue resume`"
    } else {
        "admission resumed"
    })
}

/// A hold with its holder.
#[derive(Debug, Serialize)]
struct HoldView {
    reservation_id: String,
    user_id: String,
    schedule_id: i64,
    seat: u16,
    price: i64,
    state: &'static str,
    created_at: String,
    expires_at: String,
}

pub fn hold_state(s: HoldState) -> &'static str {
    match s {
        HoldState::Held => "held",
        HoldState::Paid => "paid",
        HoldState::Cancelled => "cancelled",
        HoldState::Expired => "expired",
    }
}

impl From<&Hold> for HoldView {
    fn from(h: &Hold) -> Self {
        HoldView {
            reservation_id: h.id.to_string(),
            user_id: h.user.to_string(),
            schedule_id: h.schedule.get(),
            seat: h.seat.get(),
            price: h.price.minor_units(),
            state: hold_state(h.state_at(SystemClock.now())),
            created_at: h.created_at.to_string(),
            expires_at: h.expires_at.to_string(),
        }
    }
}

pub async fn holds(engine: &Engine, cmd: &HoldsCmd) -> CliResult<()> {
    match cmd {
        HoldsCmd::List(f) => {
            let list = engine.live_holds().await?;
            if f.json {
                let views: Vec<HoldView> = list.iter().map(Into::into).collect();
                return out::json(&views);
            }
            if list.is_empty() {
                note("no live holds");
                return Ok(());
            }
            let now = engine.clock().now();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|h| {
                    vec![
                        h.id.to_string(),
                        h.user.to_string(),
                        h.schedule.to_string(),
                        h.seat.to_string(),
                        out::amount(h.price.minor_units()),
                        format!("{} left", out::rough(h.expires_at.since(now))),
                    ]
                })
                .collect();
            print(&table(
                &[
                    "RESERVATION",
                    "USER",
                    "SCHEDULE",
                    "SEAT",
                    "PRICE",
                    "EXPIRES",
                ],
                &rows,
            ))
        }
        HoldsCmd::Sweep(f) => {
            let r = engine.sweep().await?;
            if f.json {
                return out::json(&serde_json::json!({
                    "holds_expired": r.n_holds_expired,
                    "sessions_expired": r.n_sessions_expired,
                }));
            }
            print(&format!(
                "recorded {} expired holds and {} lapsed sessions",
                r.n_holds_expired, r.n_sessions_expired
            ))
        }
    }
}

/// The sales of one date.
#[derive(Debug, Serialize)]
struct SalesRow {
    #[serde(flatten)]
    date: DateDto,
    revenue: i64,
}

/// The sales report of a concert.
#[derive(Debug, Serialize)]
struct SalesReport {
    concert_id: i64,
    name: String,
    dates: Vec<SalesRow>,
    total: Totals,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    seats_free: u64,
    seats_held: u64,
    seats_sold: u64,
    revenue: i64,
}

pub async fn sales(engine: &Engine, a: &SalesArgs) -> CliResult<()> {
    let id = concert_id(a.concert)?;
    let c = engine.concert(id).await?;
    let mut dates = engine.sales(id).await?;
    if let Some(d) = &a.date {
        let d = parse_date(d)?;
        dates.retain(|s| s.schedule.date() == d);
        if dates.is_empty() {
            return Err(booking_core::CatalogError::UnknownDate(d).into());
        }
    }
    let mut total = Totals::default();
    for s in &dates {
        total.seats_free += u64::from(s.n_free);
        total.seats_held += u64::from(s.n_held);
        total.seats_sold += u64::from(s.n_sold);
        total.revenue = total.revenue.saturating_add(s.revenue.minor_units());
    }
    let report = SalesReport {
        concert_id: id.get(),
        name: c.name.to_string(),
        dates: dates
            .iter()
            .map(|s| SalesRow {
                date: DateDto::from(s),
                revenue: s.revenue.minor_units(),
            })
            .collect(),
        total,
    };
    if a.json {
        return out::json(&report);
    }
    let mut rows: Vec<Vec<String>> = dates
        .iter()
        .map(|s| {
            vec![
                s.schedule.date().to_string(),
                s.n_sold.to_string(),
                s.n_held.to_string(),
                s.n_free.to_string(),
                out::amount(s.revenue.minor_units()),
            ]
        })
        .collect();
    let t = &report.total;
    rows.push(vec![
        "total".into(),
        t.seats_sold.to_string(),
        t.seats_held.to_string(),
        t.seats_free.to_string(),
        out::amount(t.revenue),
    ]);
    print(&format!("sales of concert {} {:?}", id, report.name))?;
    print(&table(&["DATE", "SOLD", "HELD", "FREE", "REVENUE"], &rows))
}

/// A user's wallet.
#[derive(Debug, Serialize)]
struct WalletView {
    #[serde(flatten)]
    balance: BalanceDto,
    ledger: Vec<LedgerEntryDto>,
}

pub async fn wallet(engine: &Engine, a: &WalletArgs) -> CliResult<()> {
    let user = parse_user(&a.user)?;
    let balance = engine.balance(user).await?;
    let ledger = engine.ledger(user).await?;
    if a.json {
        return out::json(&WalletView {
            balance: BalanceDto {
                user_id: user.to_string(),
                balance: balance.minor_units(),
            },
            ledger: ledger.iter().map(Into::into).collect(),
        });
    }
    print(&format!(
        "balance of {user}: {}",
        out::amount(balance.minor_units())
    ))?;
    if ledger.is_empty() {
        return print("no ledger entries");
    }
    print(&ledger_table(&ledger))
}

pub fn ledger_table(ledger: &[booking_core::domain::LedgerEntry]) -> String {
    let rows: Vec<Vec<String>> = ledger
        .iter()
        .map(|e| {
            let dto = LedgerEntryDto::from(e);
            vec![
                dto.id.to_string(),
                when(e.at),
                dto.kind,
                out::change(dto.delta),
                out::amount(dto.balance_after),
            ]
        })
        .collect();
    table(&["ID", "AT", "KIND", "CHANGE", "BALANCE"], &rows)
}
