//! What virtual users report: one compact [`Event`] per operation, plus the facts
//! the auditor needs (what each user was told). Workers only send; the aggregator
//! thread does all the counting.

use uuid::Uuid;

use crate::target::{FailureKind, HoldAck, PayAck, QueueSample, Refusal};

/// The operations of the flow, as counted and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Take a queue token.
    Issue,
    /// Poll the token's place.
    Poll,
    /// Open the pushed status stream (Server-Sent Events); its latency is the
    /// time to the first event.
    Watch,
    /// List the bookable dates.
    Dates,
    /// Read a seat map.
    Seats,
    /// Hold a seat.
    Hold,
    /// Top up the balance.
    Charge,
    /// Pay a hold.
    Pay,
    /// Retry a payment with the same idempotency key (must replay the first).
    PayRetry,
    /// Cancel a hold.
    Cancel,
    /// After paying, try to hold again with the ended token (must be refused).
    Probe,
}

impl Op {
    /// Every operation, in flow order.
    pub const ALL: [Op; 11] = [
        Op::Issue,
        Op::Poll,
        Op::Watch,
        Op::Dates,
        Op::Seats,
        Op::Hold,
        Op::Charge,
        Op::Pay,
        Op::PayRetry,
        Op::Cancel,
        Op::Probe,
    ];

    /// A stable name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Issue => "issue",
            Op::Poll => "poll",
            Op::Watch => "watch",
            Op::Dates => "dates",
            Op::Seats => "seats",
            Op::Hold => "hold",
            Op::Charge => "charge",
            Op::Pay => "pay",
            Op::PayRetry => "pay_retry",
            Op::Cancel => "cancel",
            Op::Probe => "probe",
        }
    }

    /// Its index in [`Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// It succeeded.
    Ok,
    /// An expected refusal (an outcome, not an error).
    Refused(Refusal),
    /// A failure (an error).
    Failed(FailureKind),
}

/// How a virtual user's visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ending {
    /// Paid for a seat.
    Paid,
    /// Stopped polling while waiting.
    AbandonedQueue,
    /// Left a hold to expire.
    AbandonedHold,
    /// Cancelled the hold and left.
    Cancelled,
    /// Found no seat after every attempt, or every date sold out.
    NoSeat,
    /// Told the sale is sold out (by the server, or, in the on-sale scenario,
    /// by finding no free seat on any date after its tries and a re-look): a
    /// final answer.
    SoldOut,
    /// The token or the hold lapsed before the user was done.
    Lapsed,
    /// A failure ended the visit.
    Failed,
    /// The run stopped first.
    Stopped,
}

impl Ending {
    /// Every ending.
    pub const ALL: [Ending; 9] = [
        Ending::Paid,
        Ending::AbandonedQueue,
        Ending::AbandonedHold,
        Ending::Cancelled,
        Ending::NoSeat,
        Ending::SoldOut,
        Ending::Lapsed,
        Ending::Failed,
        Ending::Stopped,
    ];

    /// A stable name.
    pub fn name(self) -> &'static str {
        match self {
            Ending::Paid => "paid",
            Ending::AbandonedQueue => "abandoned_queue",
            Ending::AbandonedHold => "abandoned_hold",
            Ending::Cancelled => "cancelled",
            Ending::NoSeat => "no_seat",
            Ending::SoldOut => "sold_out",
            Ending::Lapsed => "lapsed",
            Ending::Failed => "failed",
            Ending::Stopped => "stopped",
        }
    }
}

/// A write whose outcome the auditor must account for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A charge of an amount.
    Charge {
        /// Minor units.
        amount: i64,
    },
    /// A payment of a reservation at a price.
    Pay {
        /// The reservation.
        reservation: Uuid,
        /// Its price.
        amount: i64,
    },
}

/// What one user was told, for the auditor. Times are milliseconds since the epoch
/// on this machine's clock (the servers' clock too, when they run here).
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A token with its place.
    Issued {
        /// The user.
        user: Uuid,
        /// The place.
        seq: u64,
    },
    /// A poll sent at `sent_at_ms` answered "waiting".
    ToldWaiting {
        /// The place.
        seq: u64,
        /// When the poll was sent.
        sent_at_ms: i64,
    },
    /// A poll answered at `received_at_ms` said "admitted" (the first time).
    ToldAdmitted {
        /// The place.
        seq: u64,
        /// When the answer arrived.
        received_at_ms: i64,
    },
    /// A hold was acknowledged; the answer arrived at `received_at_ms`.
    Held {
        /// The user.
        user: Uuid,
        /// What the answer said.
        ack: HoldAck,
        /// When the answer arrived.
        received_at_ms: i64,
    },
    /// A cancel of a hold, sent at `sent_at_ms`, was acknowledged (the seat was
    /// free again at some instant after `sent_at_ms`).
    Released {
        /// The reservation.
        reservation: Uuid,
        /// When the cancel was sent.
        sent_at_ms: i64,
    },
    /// The user walked away from a hold, leaving it to expire.
    LeftToExpire {
        /// The reservation.
        reservation: Uuid,
    },
    /// A write is about to be sent (a later `Charged`/`Paid`/`Refused` settles it;
    /// none means its outcome is unknown).
    Attempt {
        /// The user.
        user: Uuid,
        /// Which write, with its idempotency key's id.
        write: Write,
        /// The attempt's id.
        id: u64,
    },
    /// The write `id` was refused: it changed nothing.
    AttemptRefused {
        /// The attempt.
        id: u64,
    },
    /// A charge was acknowledged.
    Charged {
        /// The attempt.
        id: u64,
        /// The user.
        user: Uuid,
        /// Minor units.
        amount: i64,
        /// Whether it was a replay.
        replayed: bool,
    },
    /// A payment was acknowledged.
    Paid {
        /// The attempt.
        id: u64,
        /// The user.
        user: Uuid,
        /// What the answer said.
        ack: PayAck,
    },
    /// A payment retried with the same key answered.
    Replayed {
        /// The first answer's payment.
        first: Uuid,
        /// The retry's answer: its payment if it succeeded, else what it said.
        second: Result<Uuid, String>,
    },
    /// After paying, a hold with the ended token answered.
    Probed {
        /// The user.
        user: Uuid,
        /// `None` when it was refused as it must be; else what it said.
        wrongly: Option<String>,
    },
    /// A visit ended.
    Ended(Ending),
}

/// One message from a worker (or the sampler) to the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An operation completed.
    Op {
        /// Which.
        op: Op,
        /// How long it took, in microseconds.
        latency_us: u64,
        /// How it ended.
        class: OpClass,
        /// For holds: the schedule and seat tried.
        seat: Option<(i64, u16)>,
    },
    /// What a failed operation said (sent beside its [`Event::Op`]): the
    /// aggregator keeps the latest one per operation and kind, for people.
    Failure {
        /// Which operation.
        op: Op,
        /// What kind of failure.
        kind: FailureKind,
        /// Its message.
        detail: String,
    },
    /// A purchase completed (on-sale scenario): from the answer that admitted
    /// the user to the payment's receipt.
    Purchase {
        /// Microseconds.
        latency_us: u64,
    },
    /// A queue answer said when to ask again (`poll_after`).
    PollAfter {
        /// Milliseconds.
        ms: u64,
    },
    /// A fact for the auditor.
    Fact(Fact),
    /// A sample of the waiting room.
    Queue(QueueSample),
    /// A date was added.
    DateAdded {
        /// Its schedule.
        schedule: i64,
        /// Its seats.
        seats: u16,
    },
}
