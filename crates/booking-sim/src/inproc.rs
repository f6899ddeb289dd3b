//! The in-process target: virtual users call `booking-core` directly, over the
//! memory store, SQLite or PostgreSQL, with no HTTP in between. Each call passes the
//! queue gate first, exactly as a request would.

use std::sync::Arc;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, ConcertName, IdempotencyKey, NewSchedule, ReservationId,
    SeatCount, SeatNo, SeatPrices, SeatState, Timestamp, UserId,
};
use booking_core::{
    Booking, CancelError, CatalogError, ChargeError, GateError, HoldError, IssueError, PayError,
    QueueStatus, StatusError, Store, StoreError, SystemClock,
};
use chrono::NaiveDate;
use uuid::Uuid;

use crate::target::{
    ChargeAck, DateCreated, DateInfo, FailureKind, HoldAck, OpError, OpResult, PayAck, QueueSample,
    QueueState, Refusal, SeatView, Target, Ticket,
};

/// Virtual users calling one [`Booking`] engine in this process.
pub struct InProcess<S> {
    booking: Arc<Booking<S, SystemClock>>,
}

impl<S> InProcess<S> {
    /// A target over `booking`.
    pub fn new(booking: Arc<Booking<S, SystemClock>>) -> Self {
        InProcess { booking }
    }

    /// The engine.
    pub fn booking(&self) -> &Arc<Booking<S, SystemClock>> {
        &self.booking
    }
}

fn store_err(e: StoreError) -> OpError {
    match e {
        StoreError::Unavailable(d) => OpError::failed(FailureKind::Unavailable, d),
        StoreError::Failed(d) => OpError::failed(FailureKind::Internal, d),
    }
}

fn gate_err(e: GateError) -> OpError {
    match e {
        GateError::Waiting { .. } => OpError::Refused(Refusal::NotAdmitted),
        GateError::SoldOut => OpError::Refused(Refusal::SoldOut),
        GateError::Expired => OpError::Refused(Refusal::TokenExpired),
        GateError::Ended => OpError::Refused(Refusal::TokenEnded),
        GateError::Token(t) => OpError::failed(FailureKind::Unexpected, t.to_string()),
        GateError::UnknownToken => OpError::failed(FailureKind::Unexpected, "unknown token"),
        GateError::Store(s) => store_err(s),
    }
}

fn catalog_err(e: CatalogError) -> OpError {
    match e {
        CatalogError::UnknownDate(_) => OpError::Refused(Refusal::UnknownDate),
        CatalogError::UnknownConcert => OpError::failed(FailureKind::Unexpected, "unknown concert"),
        CatalogError::SoldOut => OpError::Refused(Refusal::SoldOut),
        CatalogError::Store(s) => store_err(s),
    }
}

/// What a queue status tells a user: the engine's pacing and sold-out answer
/// as a server would send them.
fn queue_state(status: QueueStatus) -> QueueState {
    match status {
        QueueStatus::Waiting {
            position,
            poll_after,
            ..
        } => QueueState::Waiting {
            position,
            poll_after: Some(poll_after),
        },
        QueueStatus::SoldOut => QueueState::SoldOut,
        QueueStatus::Active { .. } => QueueState::Active,
        QueueStatus::Expired => QueueState::Expired,
        QueueStatus::Done => QueueState::Done,
    }
}

fn unexpected(e: impl std::fmt::Display) -> OpError {
    OpError::failed(FailureKind::Unexpected, e.to_string())
}

fn reservation_id(id: Uuid) -> OpResult<ReservationId> {
    ReservationId::from_uuid(id).map_err(unexpected)
}

impl<S: Store + Clone> Target for InProcess<S> {
    async fn issue(&self, user: UserId, _slot: usize) -> OpResult<Ticket> {
        let issued = self.booking.issue_token(user).await.map_err(|e| match e {
            IssueError::QueueFull { .. } => OpError::Refused(Refusal::QueueFull),
            IssueError::Store(s) => store_err(s),
        })?;
        Ok(Ticket {
            token: issued.token,
            user,
            seq: issued.claims.seq.get(),
            node: 0,
            answer: Some(queue_state(issued.status)),
        })
    }

    async fn status(&self, t: &Ticket) -> OpResult<QueueState> {
        let view = self
            .booking
            .queue_status(&t.token)
            .await
            .map_err(|e| match e {
                StatusError::Store(s) => store_err(s),
                other => unexpected(other),
            })?;
        Ok(queue_state(view.status))
    }

    async fn dates(&self, t: &Ticket, concert: i64) -> OpResult<Vec<DateInfo>> {
        self.booking.gate(&t.token).await.map_err(gate_err)?;
        let concert = ConcertId::new(concert).map_err(unexpected)?;
        let list = self
            .booking
            .bookable_dates(concert)
            .await
            .map_err(catalog_err)?;
        Ok(list
            .iter()
            .map(|s| DateInfo {
                date: s.schedule.date(),
                schedule: s.schedule.id.get(),
                n_free: s.n_free,
            })
            .collect())
    }

    async fn seats(&self, t: &Ticket, concert: i64, date: NaiveDate) -> OpResult<Vec<SeatView>> {
        self.booking.gate(&t.token).await.map_err(gate_err)?;
        let concert = ConcertId::new(concert).map_err(unexpected)?;
        let (_, seats) = self
            .booking
            .seats(concert, date)
            .await
            .map_err(catalog_err)?;
        Ok(seats
            .iter()
            .map(|s| match s.state {
                SeatState::Free => SeatView::Free,
                SeatState::Held { .. } => SeatView::Held,
                SeatState::Sold => SeatView::Sold,
            })
            .collect())
    }

    async fn hold(
        &self,
        t: &Ticket,
        concert: i64,
        date: NaiveDate,
        seat: u16,
    ) -> OpResult<HoldAck> {
        let who = self
            .booking
            .gate_for_write(&t.token)
            .await
            .map_err(gate_err)?;
        let concert = ConcertId::new(concert).map_err(unexpected)?;
        let schedule = self
            .booking
            .schedule_on(concert, date)
            .await
            .map_err(catalog_err)?;
        let seat = SeatNo::new(i64::from(seat)).map_err(unexpected)?;
        let hold = self
            .booking
            .hold(&who, schedule.id, seat)
            .await
            .map_err(|e| match e {
                HoldError::SeatTaken(_) => OpError::Refused(Refusal::SeatTaken),
                HoldError::SoldOut => OpError::Refused(Refusal::SoldOut),
                HoldError::HoldLimit { .. } => OpError::Refused(Refusal::HoldLimit),
                HoldError::SessionEnded => OpError::Refused(Refusal::TokenEnded),
                HoldError::Closed => OpError::Refused(Refusal::DateClosed),
                HoldError::UnknownSchedule => OpError::Refused(Refusal::UnknownDate),
                HoldError::Gate(g) => gate_err(g),
                HoldError::Store(s) => store_err(s),
                other => unexpected(other),
            })?;
        Ok(HoldAck {
            reservation: hold.id.as_uuid(),
            schedule: hold.schedule.get(),
            seat: hold.seat.get(),
            price: hold.price.minor_units(),
            created_at_ms: hold.created_at.as_millis(),
            expires_at_ms: hold.expires_at.as_millis(),
        })
    }

    async fn charge(&self, t: &Ticket, amount: i64, key: &str) -> OpResult<ChargeAck> {
        // The wallet needs a valid token of the same user, as over HTTP.
        self.booking.verify_token(&t.token).map_err(unexpected)?;
        let amount = Amount::new(amount).map_err(unexpected)?;
        let key = IdempotencyKey::new(key).map_err(unexpected)?;
        let receipt = self
            .booking
            .charge(t.user, amount, Some(key))
            .await
            .map_err(|e| match e {
                ChargeError::Store(s) => store_err(s),
                other => unexpected(other),
            })?;
        Ok(ChargeAck {
            balance_after: receipt.entry.balance_after.minor_units(),
            replayed: receipt.replayed,
        })
    }

    async fn pay(&self, t: &Ticket, reservation: Uuid, key: &str) -> OpResult<PayAck> {
        let id = reservation_id(reservation)?;
        let key = IdempotencyKey::new(key).map_err(unexpected)?;
        let receipt = self
            .booking
            .pay(&t.token, id, Some(key))
            .await
            .map_err(|e| match e {
                PayError::Gate(g) => gate_err(g),
                PayError::HoldExpired => OpError::Refused(Refusal::HoldExpired),
                PayError::AlreadyPaid => OpError::Refused(Refusal::AlreadyPaid),
                PayError::Cancelled => OpError::Refused(Refusal::Cancelled),
                PayError::InsufficientBalance { .. } => {
                    OpError::Refused(Refusal::InsufficientBalance)
                }
                PayError::SessionEnded => OpError::Refused(Refusal::TokenEnded),
                PayError::Store(s) => store_err(s),
                other => unexpected(other),
            })?;
        let p = &receipt.payment;
        Ok(PayAck {
            payment: p.id.as_uuid(),
            reservation: p.reservation.as_uuid(),
            schedule: p.schedule.get(),
            seat: p.seat.get(),
            amount: p.amount.minor_units(),
            paid_at_ms: p.paid_at.as_millis(),
            replayed: receipt.replayed,
        })
    }

    async fn cancel(&self, t: &Ticket, reservation: Uuid) -> OpResult<()> {
        let who = self.booking.gate(&t.token).await.map_err(gate_err)?;
        let id = reservation_id(reservation)?;
        self.booking
            .cancel_hold(&who, id)
            .await
            .map_err(|e| match e {
                CancelError::NotHeld(booking_core::domain::HoldState::Expired) => {
                    OpError::Refused(Refusal::HoldExpired)
                }
                CancelError::NotHeld(booking_core::domain::HoldState::Paid) => {
                    OpError::Refused(Refusal::AlreadyPaid)
                }
                CancelError::NotHeld(_) => OpError::Refused(Refusal::Cancelled),
                CancelError::Store(s) => store_err(s),
                other => unexpected(other),
            })?;
        Ok(())
    }

    async fn create_concert(&self, name: &str) -> OpResult<i64> {
        let name = ConcertName::new(name).map_err(unexpected)?;
        let c = self.booking.create_concert(name).await.map_err(store_err)?;
        Ok(c.id.get())
    }

    async fn create_date(
        &self,
        concert: i64,
        starts_at: Timestamp,
        seats: u16,
        price: i64,
    ) -> OpResult<DateCreated> {
        let new = NewSchedule::new(
            ConcertId::new(concert).map_err(unexpected)?,
            starts_at,
            SeatCount::new(i64::from(seats)).map_err(unexpected)?,
            SeatPrices::Uniform(Amount::new(price).map_err(unexpected)?),
        )
        .map_err(unexpected)?;
        let s = self
            .booking
            .create_schedule(new)
            .await
            .map_err(unexpected)?;
        Ok(DateCreated {
            date: s.date(),
            schedule: s.id.get(),
        })
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> OpResult<()> {
        self.booking.set_policy(policy).await.map_err(store_err)
    }

    async fn queue_sample(&self) -> OpResult<QueueSample> {
        let s = self.booking.queue_stats().await.map_err(store_err)?;
        let c = s.counters;
        Ok(QueueSample {
            issued: c.last_seq,
            serving: c.serving,
            waiting: c.n_waiting(),
            active: s.n_active,
            max_active: c.policy.max_active(),
            admit_rate_per_sec: c.admit_rate_milli as f64 / 1000.0,
        })
    }
}
