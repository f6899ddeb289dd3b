//! The command line: every command, flag and environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, RetryPolicy};
use booking_http::ServeOptions;
use booking_http::limits::RateLimits;
use clap::{Args, Parser, Subcommand};

use crate::error::EXIT_CODES;

/// The default database: a SQLite file in the current directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://booking.db";

#[derive(Debug, Parser)]
#[command(
    name = "booking",
    version,
    about = "A concert-booking engine with a virtual waiting room.",
    long_about = "A concert-booking engine with a virtual waiting room.\n\n\
        `booking serve` runs the REST API. Every other command works directly \
        against the database (SQLite by default, or PostgreSQL), so it needs no \
        running server: operators set up concerts and watch the waiting room, users \
        take a queue token and book with it.\n\n\
        Read commands take --json for scripts. Commands that create something print \
        its id on standard output and a sentence on standard error, so that \
        `ID=$(booking ...)` captures the id.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// What every command that opens the database shares.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database and rules (every command)")]
pub struct Global {
    /// The database: sqlite://path/to/file.db (created on first use by serve,
    /// migrate and seed; a bare path such as booking.db means the same) or
    /// postgres://user:password@host:port/database.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// The secret that signs queue tokens, at least 32 bytes; the same for every
    /// server instance and for the user commands. Without it, a SQLite database
    /// keeps a generated one in a file beside it (<database>.secret, mode 0600);
    /// PostgreSQL requires it.
    #[arg(
        long,
        env = "BOOKING_TOKEN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub token_secret: Option<String>,

    /// How long a hold keeps its seat (e.g. 300s, 5m) [default: 300s].
    #[arg(long, env = "BOOKING_HOLD_TTL", value_parser = parse_duration, global = true)]
    pub hold_ttl: Option<Duration>,

    /// For tests: run as if this much later than the system clock says (e.g. 10m),
    /// so that a hold or a session lapses without waiting for it.
    #[arg(long, env = "BOOKING_CLOCK_OFFSET", value_parser = parse_duration, global = true, hide = true)]
    pub clock_offset: Option<Duration>,

    /// How long an admitted user's session lasts after its first use [default: 600s].
    #[arg(long, env = "BOOKING_SESSION_TTL", value_parser = parse_duration, global = true)]
    pub session_ttl: Option<Duration>,

    /// How long an admitted user has to show up before losing the place [default: 60s].
    #[arg(long, env = "BOOKING_SHOW_UP_GRACE", value_parser = parse_duration, global = true)]
    pub show_up_grace: Option<Duration>,

    /// Live holds per user at most, 1 to 50 [default: 4].
    #[arg(long, env = "BOOKING_MAX_HOLDS", global = true)]
    pub max_holds: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API, with the admission ticker and the hold sweeper, and the web
    /// pages: the waiting room at / and the operator's view at /admin.
    Serve(Box<ServeArgs>),
    /// Apply the migrations to the database and report the schema version.
    Migrate(JsonFlag),
    /// Create demo concerts with future dates, 50 seats each, with prices.
    Seed(JsonFlag),
    /// Write a consistent copy of an SQLite database to a new file, while servers
    /// keep using it (for PostgreSQL, use pg_dump).
    Backup(BackupArgs),
    /// Print a completion script for a shell, e.g. `booking completions bash >
    /// /etc/bash_completion.d/booking`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `booking man > booking.1; man ./booking.1`.
    Man,

    /// Admin: add, list and show concerts.
    #[command(subcommand)]
    Concert(ConcertCmd),
    /// Admin: add and list the dates (schedules) of a concert.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Admin: the waiting room: its state, the admission policy, pause and resume.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Admin: live holds, and sweeping expired holds and sessions.
    #[command(subcommand)]
    Holds(HoldsCmd),
    /// Admin: the sales report of a concert, per date (sold, held, free, revenue).
    Sales(SalesArgs),
    /// Admin: a user's balance and ledger.
    Wallet(WalletArgs),
    /// Admin: webhook endpoints: signed POSTs of the events, in order, at least
    /// once (every `booking serve` instance delivers).
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// Admin: the event feed (token.issued, session.admitted, hold.created,
    /// hold.cancelled, hold.expired, wallet.charged, payment.completed,
    /// session.ended), in order.
    #[command(subcommand)]
    Events(EventsCmd),

    /// User: take a queue token (or get back the one you have).
    #[command(subcommand)]
    Token(TokenCmd),
    /// User: where your token stands (position and ETA); --wait until admitted.
    Status(StatusArgs),
    /// User: the bookable dates of a concert.
    Dates(DatesArgs),
    /// User: the seat map of a concert on a date.
    Seats(SeatsArgs),
    /// User: hold a seat for a few minutes.
    Hold(HoldArgs),
    /// User: cancel one of your holds.
    Cancel(ReservationArgs),
    /// User: your reservations (held, paid, cancelled, expired); any token of yours,
    /// ended or not.
    Reservations(UserRead),
    /// User: top up your balance.
    Charge(ChargeArgs),
    /// User: your balance.
    Balance(UserRead),
    /// User: pay one or several of your holds in one payment (all or nothing); the
    /// seats are yours, the token ends and your other holds are released.
    Pay(PayArgs),
    /// User: your payments, each with its seats; any token of yours, ended or not.
    Payments(UserRead),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new file (it must not exist yet).
    pub file: std::path::PathBuf,
}

/// Just `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (a name such as localhost:8080 is resolved), or a
    /// port alone for 127.0.0.1 (port 0 picks a free one).
    #[arg(long, env = "BOOKING_BIND", default_value = "127.0.0.1:8080", value_parser = parse_bind)]
    pub bind: SocketAddr,

    /// The key of the admin API (Authorization: Bearer <key>); generated and
    /// printed when not given.
    #[arg(long, env = "BOOKING_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// Set the admission policy at start, e.g. "batch=50,every=1s,max-active=500"
    /// (batch: users admitted per tick; every: the tick interval; max-active: the
    /// most users active at once). Stored in the database for every instance;
    /// left as it is when not given (a new database starts with batch=50,
    /// every=1s, max-active=500).
    #[arg(long, env = "BOOKING_POLICY", value_parser = parse_policy)]
    pub policy: Option<AdmissionPolicy>,

    /// Requests per second from one IP address, 0 for no limit.
    #[arg(long, env = "BOOKING_RATE_LIMIT_IP", default_value_t = RateLimits::default().per_ip_per_sec)]
    pub rate_limit_ip: f64,

    /// Requests per second with one queue token, 0 for no limit.
    #[arg(long, env = "BOOKING_RATE_LIMIT_TOKEN", default_value_t = RateLimits::default().per_token_per_sec)]
    pub rate_limit_token: f64,

    /// Requests a client may send at once above its rate.
    #[arg(long, env = "BOOKING_RATE_LIMIT_BURST", default_value_t = RateLimits::default().burst)]
    pub rate_limit_burst: f64,

    /// How long a client has to send a request's headers (also how long an idle
    /// kept-alive connection stays open); a connection past it is closed.
    #[arg(long, env = "BOOKING_HEADER_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub header_timeout: Duration,

    /// How long a request's body may take to arrive; past it the client gets 408.
    #[arg(long, env = "BOOKING_BODY_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub body_timeout: Duration,

    /// Client connections open at once, at most (lowered to fit the open-files
    /// limit); past it new clients wait to be accepted.
    #[arg(long, env = "BOOKING_MAX_CLIENTS", default_value_t = ServeOptions::default().max_connections)]
    pub max_clients: usize,

    /// Client connections open at once from one IP address, 0 for no cap.
    /// Loopback addresses are exempt unless --cap-loopback is given.
    #[arg(long, env = "BOOKING_MAX_CLIENTS_PER_IP", default_value_t = ServeOptions::default().max_connections_per_ip)]
    pub max_clients_per_ip: usize,

    /// Apply --max-clients-per-ip to loopback addresses too (by default a proxy
    /// or a load test on this machine is not capped).
    #[arg(long, env = "BOOKING_CAP_LOOPBACK")]
    pub cap_loopback: bool,

    /// How often to try an admission tick (the policy decides when one is due).
    #[arg(long, env = "BOOKING_TICK_EVERY", value_parser = parse_duration, default_value = "100ms")]
    pub tick_every: Duration,

    /// How often to record expired holds and sessions.
    #[arg(long, env = "BOOKING_SWEEP_EVERY", value_parser = parse_duration, default_value = "10s")]
    pub sweep_every: Duration,

    /// Webhook endpoints this instance posts to at once (0: deliver none here).
    #[arg(long, env = "BOOKING_WEBHOOK_WORKERS", default_value_t = 4)]
    pub webhook_workers: usize,

    /// The longest one webhook request may take, connecting included (1s to 60s).
    #[arg(long, env = "BOOKING_WEBHOOK_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub webhook_timeout: Duration,

    /// Trust the certificate authorities in this PEM file for https:// webhook
    /// receivers, beside the bundled Mozilla roots (for a private CA or a
    /// receiver's self-signed certificate; no system store is read).
    #[arg(long, env = "BOOKING_WEBHOOK_CA", value_name = "FILE")]
    pub webhook_ca: Option<PathBuf>,

    /// How long a deliverer keeps an endpoint it claimed (renewed by each
    /// delivery); past it another instance may take the endpoint over (10s to 1h,
    /// and at least twice --webhook-timeout).
    #[arg(long, env = "BOOKING_WEBHOOK_LEASE", value_parser = parse_duration, default_value = "60s")]
    pub webhook_lease: Duration,

    /// Failures in a row after which an endpoint is marked failed and left until
    /// `booking webhook retry` (1 to 100).
    #[arg(long, env = "BOOKING_WEBHOOK_MAX_ATTEMPTS", default_value_t = RetryPolicy::default().max_attempts)]
    pub webhook_max_attempts: u32,

    /// The wait after an endpoint's first failure, doubled after each next one
    /// and jittered to between half of it and all of it (100ms to 1h).
    #[arg(long, env = "BOOKING_WEBHOOK_BACKOFF", value_parser = parse_duration, default_value = "5s")]
    pub webhook_backoff: Duration,

    /// The longest wait between two tries of a failing endpoint (--webhook-backoff
    /// to 24h).
    #[arg(long, env = "BOOKING_WEBHOOK_BACKOFF_MAX", value_parser = parse_duration, default_value = "1h")]
    pub webhook_backoff_max: Duration,

    /// How long status polls may use this instance's cached queue counters (0 to 10s).
    #[arg(long, env = "BOOKING_COUNTERS_CACHE", value_parser = parse_duration, default_value = "100ms")]
    pub counters_cache: Duration,

    /// How long a session this instance let through may pass the gate of catalog
    /// reads again without a database read (0 to 10s; 0 reads every time). A token
    /// paid on another instance can read the catalog for this long; holds and
    /// payments always check the session in their own write.
    #[arg(long, env = "BOOKING_GATE_CACHE", value_parser = parse_duration, default_value = "1s")]
    pub gate_cache: Duration,

    /// How long a seat map may be served from this instance's cache (0 to 10s). Lapsed
    /// holds show free at once; a seat taken through another instance shows after
    /// this long (holding it answers "seat taken").
    #[arg(long, env = "BOOKING_SEAT_MAP_CACHE", value_parser = parse_duration, default_value = "100ms")]
    pub seat_map_cache: Duration,

    /// Database connections in the pool.
    #[arg(long, env = "BOOKING_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,

    /// Load the demo concerts if the database has no concert yet.
    #[arg(long)]
    pub demo: bool,

    /// Log filter, e.g. "info" or "booking_http=debug,info" (logs go to standard error).
    /// The default also quiets the notices PostgreSQL sends while migrating (such as
    /// "already exists, skipping" when another instance migrated first).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,sqlx::postgres::notice=warn"
    )]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum ConcertCmd {
    /// Create a concert; prints its id.
    Add {
        /// Its name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every concert.
    List(JsonFlag),
    /// One concert with all its dates (past ones too) and seat counts.
    Show {
        /// The concert's id.
        concert: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Add a date to a concert; prints the schedule's id.
    Add(ScheduleAddArgs),
    /// Every date of a concert, past ones too, with seat counts.
    List {
        /// The concert's id.
        concert: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// The concert's id.
    pub concert: i64,
    /// The date, YYYY-MM-DD (one per concert).
    #[arg(long)]
    pub date: String,
    /// When the show starts on that date, HH:MM, UTC.
    #[arg(long, default_value = "19:00")]
    pub time: String,
    /// How many seats (1 to 1000).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    pub seats: i64,
    /// One price for every seat, in minor units.
    #[arg(
        long,
        allow_negative_numbers = true,
        conflicts_with = "prices",
        required_unless_present = "prices"
    )]
    pub price: Option<i64>,
    /// Or one price per seat, seat 1 first, comma-separated.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub prices: Option<Vec<i64>>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Issued, serving counter, waiting and active users, policy, admission rate.
    Show(JsonFlag),
    /// Replace the admission policy (for every instance).
    Policy(PolicyArgs),
    /// Stop admitting anyone until `booking queue resume`.
    Pause(JsonFlag),
    /// Admit again.
    Resume(JsonFlag),
}

/// Changes only the settings given; the others stay as they are. Prints the whole
/// policy after.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Users admitted per tick at most ("amusement park"), or "none" for no batch
    /// limit.
    #[arg(long, value_parser = parse_limit, value_name = "N|none")]
    pub batch: Option<Limit>,
    /// Active users at most ("bank teller"), or "none" for no cap.
    #[arg(long, value_parser = parse_limit, value_name = "N|none")]
    pub max_active: Option<Limit>,
    /// The tick interval (10ms to 1h).
    #[arg(long, value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HoldsCmd {
    /// Holds live now, soonest expiry first.
    List(JsonFlag),
    /// Record expired holds and lapsed sessions (the server does it every few seconds).
    Sweep(JsonFlag),
}

/// Webhook endpoints. Each request is `POST URL` with one event as its JSON body
/// (`{"id", "type", "at", "data"}`) and `X-Booking-Signature: t=<unix
/// seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`; a receiver
/// checks it and deduplicates by event id (delivery is at least once). A non-2xx
/// answer or a timeout is retried with exponential backoff and jitter (5 s
/// doubling to 1 h); after 12 failures in a row the endpoint is `failed` until
/// `booking webhook retry`.
#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// Add an endpoint. It receives the events committed from now on. Prints its
    /// id and its secret: the secret is shown this once.
    Add(WebhookAddArgs),
    /// Every endpoint: id, status, types, URL.
    List(JsonFlag),
    /// The delivery state of every endpoint (or one): status, cursor, events
    /// behind, failures in a row, next attempt, last error, which instance holds it.
    Status(WebhookStatusArgs),
    /// Remove an endpoint: nothing more is posted to it.
    Remove(WebhookIdArgs),
    /// Make a failed (or backing-off) endpoint active and due now; delivery
    /// resumes after its cursor.
    Retry(WebhookIdArgs),
}

#[derive(Debug, Args)]
pub struct WebhookAddArgs {
    /// Where to post: http:// or https://, with a host, no user name or password
    /// (an https:// receiver's certificate must chain to a bundled root or to a CA
    /// given to `booking serve --webhook-ca`).
    pub url: String,
    /// The event types to deliver, comma-separated (token.issued,
    /// session.admitted, hold.created, hold.cancelled, hold.expired,
    /// wallet.charged, payment.completed, session.ended); "all" (the default) for
    /// every type.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub types: Vec<String>,
    /// The signing secret (16 to 200 visible ASCII characters); one is generated
    /// when not given. Prefer the environment variable: a command line is visible
    /// to other users of the machine.
    #[arg(long, env = "BOOKING_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WebhookStatusArgs {
    /// Only this endpoint.
    pub id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WebhookIdArgs {
    /// The endpoint's id (from `booking webhook list`).
    pub id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Print the events after an id, one line each, oldest first; --follow keeps
    /// printing new ones as they happen (Ctrl-C stops). With --json, one JSON
    /// object per line, as `GET /v1/admin/events` and the webhooks send them.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only the events after this id (default: from the oldest kept).
    #[arg(long)]
    pub after: Option<u64>,
    /// Keep waiting for new events.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only these types, comma-separated or repeated (e.g. hold.created,payment.completed).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SalesArgs {
    /// The concert's id.
    pub concert: i64,
    /// Only this date, YYYY-MM-DD.
    #[arg(long)]
    pub date: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WalletArgs {
    /// The user's UUID.
    pub user: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The queue token of a user command.
#[derive(Debug, Args)]
pub struct TokenArg {
    /// Your queue token (from `booking token take`).
    #[arg(long, env = "BOOKING_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding your queue token (`booking token take --save FILE`); --token
    /// wins when both are given.
    #[arg(long, env = "BOOKING_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Take a place in the waiting room; prints the token. Asking again while the
    /// place is live gives the same place back.
    Take {
        /// Your user id (a UUID); without it a new one is made and printed on
        /// standard error (keep it: your wallet and purchases belong to it).
        #[arg(long)]
        user: Option<String>,
        /// Also write the token to this file (mode 0600), for --token-file.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Print JSON instead of the token.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub token: TokenArg,
    /// Poll until admitted, showing the position; exit 5 if the token ends or the
    /// timeout passes first, 4 if the sale is sold out.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
    /// With --wait: poll this often instead of when the waiting room says. By
    /// default each poll waits as long as the answer asks (two thirds of the
    /// expected wait, 250ms near the front to 20s far back).
    #[arg(long, value_parser = parse_duration)]
    pub poll: Option<Duration>,
    /// With --wait: only watch; leave the admission ticks to a running server.
    /// Without it, the command also runs ticks itself while it waits (safe beside
    /// any number of servers: a tick is a compare-and-set).
    #[arg(long)]
    pub no_tick: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DatesArgs {
    /// The concert's id.
    pub concert: i64,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SeatsArgs {
    /// The concert's id.
    pub concert: i64,
    /// The date, YYYY-MM-DD.
    pub date: String,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of the seat map.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The concert's id.
    pub concert: i64,
    /// The date, YYYY-MM-DD.
    pub date: String,
    /// The seat number.
    #[arg(allow_negative_numbers = true)]
    pub seat: i64,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of the reservation id.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReservationArgs {
    /// The reservation's id (printed by `booking hold`).
    pub reservation: String,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UserRead {
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChargeArgs {
    /// The amount in the currency's smallest unit (cents: 5000 is 50.00), from 1 to
    /// the largest single charge (1000000 by default). Output groups its digits:
    /// 5,000.
    #[arg(allow_negative_numbers = true)]
    pub amount: i64,
    /// An idempotency key: a retry with the same key adds nothing.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PayArgs {
    /// The held reservations' ids: one, or several paid at once (all or nothing, at
    /// most 50).
    #[arg(required = true, num_args = 1..)]
    pub reservations: Vec<String>,
    /// An idempotency key: a retry with the same key returns the first payment.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON instead of the payment id.
    #[arg(long)]
    pub json: bool,
}

/// Parses `300`, `300s`, `250ms`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 300s, 250ms, 5m or 1h"))?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m, h or d")),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Parses an admission policy: `batch=N`, `max-active=N`, `every=DURATION`,
/// comma-separated; at least one of batch and max-active; `every` defaults to 1s.
/// Where to listen: `HOST:PORT`, a name that resolves (`localhost:8080`, IPv4
/// first), or a port alone for `127.0.0.1`.
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| {
        format!("{s:?} is not an address to listen on ({why}): give HOST:PORT or a port")
    };
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// A limit of the admission policy as given: a number, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u32>);

/// A limit of the admission policy: a number, or "none" (also "off") for none.
pub fn parse_limit(s: &str) -> Result<Limit, String> {
    match s.trim() {
        "none" | "off" => Ok(Limit(None)),
        n => n
            .parse::<u32>()
            .map(|n| Limit(Some(n)))
            .map_err(|_| format!("{s:?} is neither a whole number nor \"none\"")),
    }
}

pub fn parse_policy(s: &str) -> Result<AdmissionPolicy, String> {
    let mut batch = None;
    let mut max_active = None;
    let mut every = Duration::from_secs(1);
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write key=value (batch, every, max-active)"))?;
        let number = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{key}: {v:?} is not a whole number"))
        };
        match key.trim() {
            "batch" => batch = Some(number(value)?),
            "max-active" | "max_active" => max_active = Some(number(value)?),
            "every" | "interval" => every = parse_duration(value)?,
            other => {
                return Err(format!(
                    "unknown policy key {other:?}: use batch, every, max-active"
                ));
            }
        }
    }
    AdmissionPolicy::new(every, batch, max_active).map_err(|e| e.to_string())
}

impl Command {
    /// The concert the command names, if any: its errors name it too.
    pub fn concert(&self) -> Option<i64> {
        match self {
            Command::Concert(ConcertCmd::Show { concert, .. })
            | Command::Schedule(ScheduleCmd::List { concert, .. }) => Some(*concert),
            Command::Schedule(ScheduleCmd::Add(a)) => Some(a.concert),
            Command::Sales(a) => Some(a.concert),
            Command::Dates(a) => Some(a.concert),
            Command::Seats(a) => Some(a.concert),
            Command::Hold(a) => Some(a.concert),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn policies() {
        let p = parse_policy("batch=10,every=500ms").unwrap();
        assert_eq!(
            (p.batch(), p.max_active(), p.interval()),
            (Some(10), None, Duration::from_millis(500))
        );
        let p = parse_policy("max-active=100").unwrap();
        assert_eq!(
            (p.batch(), p.max_active(), p.interval()),
            (None, Some(100), Duration::from_secs(1))
        );
        let p = parse_policy("batch=5, max-active=20, every=2s").unwrap();
        assert_eq!((p.batch(), p.max_active()), (Some(5), Some(20)));
        assert!(parse_policy("every=1s").is_err(), "batch or capacity");
        assert!(parse_policy("batch=0").is_err());
        assert!(parse_policy("batch=-1").is_err());
        assert!(parse_policy("speed=3").is_err());
        assert!(parse_policy("batch").is_err());
    }
}
