//! Users wait between two polls as long as the server asks (`poll_after`), fall
//! back to their own interval when it does not say, and take "sold out" as a
//! final answer. A scripted target answers; tokio's paused clock measures the
//! waits exactly (no real time passes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, Timestamp, UserId};
use booking_sim::events::{Ending, Event};
use booking_sim::target::{
    ChargeAck, DateCreated, DateInfo, HoldAck, OpError, OpResult, PayAck, QueueSample, QueueState,
    Refusal, SeatView, Target, Ticket,
};
use booking_sim::user::{Behaviour, Control, Ctx, visit_rng};
use chrono::NaiveDate;
use tokio::time::Instant;
use uuid::Uuid;

/// Answers polls from a script, records when each poll came, and answers
/// the dates with `dates_answer`.
struct Scripted {
    issue_answer: Option<QueueState>,
    polls: Mutex<VecDeque<QueueState>>,
    polled_at: Mutex<Vec<Instant>>,
    dates_answer: OpResult<Vec<DateInfo>>,
}

fn refused<T>() -> OpResult<T> {
    Err(OpError::Refused(Refusal::UnknownDate))
}

impl Target for Scripted {
    async fn issue(&self, user: UserId, _slot: usize) -> OpResult<Ticket> {
        Ok(Ticket {
            token: "t".into(),
            user,
            seq: 1,
            node: 0,
            answer: self.issue_answer,
        })
    }
    async fn status(&self, _t: &Ticket) -> OpResult<QueueState> {
        self.polled_at.lock().unwrap().push(Instant::now());
        Ok(self
            .polls
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(QueueState::Active))
    }
    async fn dates(&self, _t: &Ticket, _c: i64) -> OpResult<Vec<DateInfo>> {
        self.dates_answer.clone()
    }
    async fn seats(&self, _t: &Ticket, _c: i64, _d: NaiveDate) -> OpResult<Vec<SeatView>> {
        refused()
    }
    async fn hold(&self, _t: &Ticket, _c: i64, _d: NaiveDate, _s: u16) -> OpResult<HoldAck> {
        refused()
    }
    async fn charge(&self, _t: &Ticket, _a: i64, _k: &str) -> OpResult<ChargeAck> {
        refused()
    }
    async fn pay(&self, _t: &Ticket, _r: Uuid, _k: &str) -> OpResult<PayAck> {
        refused()
    }
    async fn cancel(&self, _t: &Ticket, _r: Uuid) -> OpResult<()> {
        refused()
    }
    async fn create_concert(&self, _n: &str) -> OpResult<i64> {
        refused()
    }
    async fn create_date(&self, _c: i64, _s: Timestamp, _n: u16, _p: i64) -> OpResult<DateCreated> {
        refused()
    }
    async fn set_policy(&self, _p: AdmissionPolicy) -> OpResult<()> {
        refused()
    }
    async fn queue_sample(&self) -> OpResult<QueueSample> {
        refused()
    }
}

fn waiting(poll_after_ms: Option<u64>) -> QueueState {
    QueueState::Waiting {
        position: 5,
        poll_after: poll_after_ms.map(Duration::from_millis),
    }
}

/// Runs one on-sale user against `target`; returns its ending and the gaps
/// between its polls (the first gap from the token's issue).
async fn one_user(target: Scripted) -> (Ending, Vec<Duration>) {
    let target = Arc::new(target);
    let (tx, _rx) = std::sync::mpsc::channel::<Event>();
    let ctx = Ctx {
        target: Arc::clone(&target),
        events: tx,
        behaviour: Behaviour {
            think_min: Duration::ZERO,
            think_max: Duration::ZERO,
            poll_every: Duration::from_millis(500),
            ..Behaviour::default()
        },
        concert: 1,
        control: Arc::new(Control::default()),
    };
    let t0 = Instant::now();
    let end = ctx.onsale_visit(0, &mut visit_rng(1, 0, 0), 1).await;
    let at = target.polled_at.lock().unwrap().clone();
    let gaps = std::iter::once(t0)
        .chain(at.iter().copied())
        .zip(at.iter().copied())
        .map(|(a, b)| b - a)
        .collect();
    (end, gaps)
}

#[tokio::test(start_paused = true)]
async fn polls_follow_poll_after_then_the_own_interval() {
    let (end, gaps) = one_user(Scripted {
        issue_answer: Some(waiting(Some(2_000))),
        polls: Mutex::new(
            [waiting(Some(1_500)), waiting(None), waiting(Some(250))]
                .into_iter()
                .collect(),
        ),
        polled_at: Mutex::new(Vec::new()),
        dates_answer: Err(OpError::Refused(Refusal::SoldOut)),
    })
    .await;
    let ms = |v: u64| Duration::from_millis(v);
    // The issue answer said 2 s; then 1.5 s; then nothing (the user's own
    // 500 ms); then 250 ms; the fourth poll says admitted.
    assert_eq!(gaps, vec![ms(2_000), ms(1_500), ms(500), ms(250)]);
    assert_eq!(end, Ending::SoldOut, "a sold-out refusal is a final answer");
}

#[tokio::test(start_paused = true)]
async fn sold_out_while_waiting_is_a_final_answer() {
    let (end, gaps) = one_user(Scripted {
        issue_answer: None,
        polls: Mutex::new([waiting(None), QueueState::SoldOut].into_iter().collect()),
        polled_at: Mutex::new(Vec::new()),
        dates_answer: Ok(Vec::new()),
    })
    .await;
    assert_eq!(end, Ending::SoldOut);
    assert_eq!(gaps, vec![Duration::ZERO, Duration::from_millis(500)]);

    // Told sold out by the token's issue answer: not one poll.
    let (end, gaps) = one_user(Scripted {
        issue_answer: Some(QueueState::SoldOut),
        polls: Mutex::new(VecDeque::new()),
        polled_at: Mutex::new(Vec::new()),
        dates_answer: Ok(Vec::new()),
    })
    .await;
    assert_eq!((end, gaps.len()), (Ending::SoldOut, 0));
}

#[tokio::test(start_paused = true)]
async fn no_free_seat_anywhere_after_a_relook_is_sold_out() {
    let date = NaiveDate::from_ymd_opt(2030, 1, 1).expect("date");
    let (end, _) = one_user(Scripted {
        issue_answer: None,
        polls: Mutex::new(VecDeque::new()),
        polled_at: Mutex::new(Vec::new()),
        dates_answer: Ok(vec![DateInfo {
            date,
            schedule: 1,
            n_free: 0,
        }]),
    })
    .await;
    assert_eq!(end, Ending::SoldOut);
}
