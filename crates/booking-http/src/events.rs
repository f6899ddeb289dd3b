//! Pushed status: `GET /v1/queue/events`, a stream of Server-Sent Events.
//!
//! A waiting user opens one stream instead of polling. Each instance keeps one
//! [`LineFeed`]: while anyone listens, a single task reads the line
//! ([`Booking::line_snapshot`]: the counters and the sold-out mark) every
//! [`FEED_REFRESH`], and wakes the streams whose answer it changes: the places the
//! serving counter passed, or all of them when the sale sold out or admission
//! paused or resumed. A woken stream works out its status from the line with no
//! read ([`Booking::waiting_status`]); only a place that reached the serving
//! counter reads its queue entry once, to learn that it is active (or ended). A
//! waiting stream also wakes at its own pace to tell a new position.
//!
//! What a stream sends:
//! - at once, the status `GET /v1/queue/status` would answer;
//! - a final status (`active`, `sold_out`, `expired`, `done`) as soon as the line
//!   shows it, after which the stream ends;
//! - while waiting, a new position at most once per `poll_after_ms` of the last one
//!   sent, so the number of events follows admissions, not the length of the line.
//!
//! Each event is `event: status` with the `QueueDto` JSON of `GET /v1/queue/status`
//! as its data, and a `retry:` of its `poll_after_ms`, so a client that reconnects
//! does so at the pace a poll would. Comment lines keep an idle stream open.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Extension;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use booking_core::{Booking, Clock, LineSnapshot, QueueStatus, Store, TokenClaims};
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::AppState;
use crate::dto::QueueDto;
use crate::error::{ApiError, BadToken, CommonErrors};
use crate::extract::Bearer;

/// How often an instance with listeners reads the line again: one read of the
/// counters row per instance (the sold-out mark has its own recheck period), so 40
/// reads a second cost little next to what they save the people at the front, who
/// hear of their admission this much later at most.
pub const FEED_REFRESH: Duration = Duration::from_millis(25);

/// How often an idle stream sends a comment line, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One instance's view of the line, shared by all its streams.
///
/// Streams register their place; a refresh that sees the serving counter move
/// wakes only the places it passed, and one that sees the sale sold out (or
/// paused or resumed) wakes them all. A waiting stream otherwise wakes on its
/// own pace. So the work per refresh follows admissions, not the line's length.
///
/// The same feed also carries two nudges between this instance's request
/// handlers and its ticker ([`crate::run_background`], when both are given the
/// feed): a token issued wakes the ticker, so a user who arrives at an empty
/// line is admitted at once instead of at the ticker's next round; an advance
/// wakes the refresh, so streams hear of it at once instead of within
/// [`FEED_REFRESH`].
#[derive(Default)]
pub struct LineFeed {
    inner: Mutex<FeedState>,
    arrived: Notify,
    moved: Notify,
}

#[derive(Default)]
struct FeedState {
    /// The last line read.
    line: Option<LineSnapshot>,
    /// Waiting streams by (place, stream id).
    waiting: BTreeMap<(u64, u64), Arc<Notify>>,
    next_id: u64,
    /// Whether the refresh task runs. Set and cleared under this lock together
    /// with registering, so a new listener never finds the task stopping.
    running: bool,
}

/// A stream's registration; dropping it unregisters.
struct Listener {
    feed: Arc<LineFeed>,
    key: (u64, u64),
    wake: Arc<Notify>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.feed.state().waiting.remove(&self.key);
    }
}

impl std::fmt::Debug for LineFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineFeed").finish_non_exhaustive()
    }
}

impl LineFeed {
    fn state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a stream waiting at place `seq`; starts the refresh task if none
    /// runs.
    fn listen<S: Store, C: Clock>(
        self: &Arc<Self>,
        booking: &Arc<Booking<S, C>>,
        seq: u64,
    ) -> Listener {
        let wake = Arc::new(Notify::new());
        let mut st = self.state();
        let key = (seq, st.next_id);
        st.next_id += 1;
        st.waiting.insert(key, Arc::clone(&wake));
        if !st.running {
            st.running = true;
            tokio::spawn(refresh(Arc::clone(self), Arc::clone(booking)));
        }
        Listener {
            feed: Arc::clone(self),
            key,
            wake,
        }
    }

    /// Tells the ticker that someone took a place in line.
    pub fn arrived(&self) {
        self.arrived.notify_one();
    }

    /// Resolves after [`LineFeed::arrived`] was called (at once if it was since
    /// the last wait).
    pub async fn wait_arrival(&self) {
        self.arrived.notified().await;
    }

    /// Tells the refresh that the serving counter moved: it reads the line now.
    pub fn moved(&self) {
        self.moved.notify_one();
    }

    /// The last line read, if any.
    fn line(&self) -> Option<LineSnapshot> {
        self.state().line
    }

    /// Takes in a new line and wakes the streams whose answer it may change.
    fn publish(&self, line: LineSnapshot) {
        let mut st = self.state();
        let old = st.line.replace(line);
        let everyone = old.is_none_or(|o| {
            o.sold_out != line.sold_out || o.counters.paused != line.counters.paused
        });
        if everyone {
            st.waiting.values().for_each(|w| w.notify_one());
            return;
        }
        let served = old.map_or(0, |o| o.counters.serving);
        if line.counters.serving > served {
            st.waiting
                .range((served + 1, 0)..=(line.counters.serving, u64::MAX))
                .for_each(|(_, w)| w.notify_one());
        }
    }
}

/// Reads the line every [`FEED_REFRESH`] while anyone listens.
async fn refresh<S: Store, C: Clock>(feed: Arc<LineFeed>, booking: Arc<Booking<S, C>>) {
    loop {
        {
            let mut st = feed.state();
            if st.waiting.is_empty() {
                st.running = false;
                st.line = None;
                return;
            }
        }
        match booking.line_snapshot().await {
            Ok(line) => feed.publish(line),
            Err(e) => tracing::warn!(error = %e, "the line feed could not read the line"),
        }
        tokio::select! {
            () = tokio::time::sleep(FEED_REFRESH) => {}
            () = feed.moved.notified() => {}
        }
    }
}

/// Set when the server begins to shut down ([`crate::serve_with`] adds it to the
/// app): every open stream ends, so that graceful shutdown, which lets each
/// connection finish its response, does not wait for streams without end.
#[derive(Clone)]
pub struct Closing(pub(crate) watch::Receiver<bool>);

/// Waits until `closing` says the server is shutting down (or its server is gone);
/// forever without one.
async fn closed(closing: &mut Option<watch::Receiver<bool>>) {
    match closing {
        Some(rx) => {
            let _ = rx.wait_for(|c| *c).await;
        }
        None => std::future::pending().await,
    }
}

/// `?token=`: EventSource cannot set headers.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The queue token of a stream: `Authorization: Bearer`, else the `token` query
/// parameter.
pub struct StreamToken(String);

impl<St: Send + Sync> FromRequestParts<St> for StreamToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            let Bearer(token) = Bearer::from_request_parts(parts, state).await?;
            return Ok(StreamToken(token));
        }
        let Query(q) = Query::<TokenQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed query: {}", e.body_text())))?;
        match q.token {
            Some(t) if !t.trim().is_empty() => Ok(StreamToken(t.trim().to_owned())),
            _ => Err(ApiError::unauthorized(
                "missing_token",
                "send the queue token as Authorization: Bearer <token> or as ?token=<token>",
            )),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/queue/events",
    tag = "queue",
    summary = "Where the token stands, pushed: a stream of Server-Sent Events instead of polling",
    description = "Each event is `event: status` whose data is the same JSON as `GET /v1/queue/status`. \
                   The first comes at once; a final status (`active`, `sold_out`, `expired`, `done`) \
                   comes as soon as the server sees it and ends the stream; while waiting, a new \
                   position comes at most once per `poll_after_ms`. Each event's `retry` is its \
                   `poll_after_ms`. A stream that cannot go on (the token's place is no \
                   longer known) ends with one `event: error` whose data is the JSON error \
                   body. The response's schema is that of one event (`QueueEvent`). The token goes in `Authorization: Bearer`, or in the `token` \
                   query parameter for clients that cannot set headers (EventSource).",
    security(("queue_token" = []), ("queue_token_query" = [])),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = QueueDto),
        BadToken,
        CommonErrors
    )
)]
pub async fn queue_events<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    closing: Option<Extension<Closing>>,
    StreamToken(token): StreamToken,
) -> Result<Response, ApiError> {
    let view = st.booking.queue_status(&token).await?;
    let listener = st.feed.listen(&st.booking, view.claims.seq.get());
    let watcher = Watcher {
        booking: Arc::clone(&st.booking),
        claims: view.claims,
        token,
        listener,
        closing: closing.map(|Extension(Closing(rx))| rx),
        first: Some((view.status, view.paused)),
        last: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(watcher, Watcher::next);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One stream's state.
struct Watcher<S, C> {
    booking: Arc<Booking<S, C>>,
    claims: TokenClaims,
    token: String,
    listener: Listener,
    /// Says when the server shuts down.
    closing: Option<watch::Receiver<bool>>,
    /// The status to send first, and whether admission was paused.
    first: Option<(QueueStatus, bool)>,
    /// The last waiting status sent, whether admission was paused then, and when.
    last: Option<(QueueStatus, bool, Instant)>,
    done: bool,
}

impl<S: Store, C: Clock> Watcher<S, C> {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.done {
            return None;
        }
        if let Some((status, paused)) = self.first.take() {
            return Some((Ok(self.sent(status, paused)), self));
        }
        loop {
            // Woken when the line passes this place or the sale's state changes;
            // else at the pace of the last status sent, to tell the new position.
            let due = self.due();
            tokio::select! {
                () = self.listener.wake.notified() => {}
                () = sleep_until(due) => {}
                () = closed(&mut self.closing) => return None,
            }
            let line = self.listener.feed.line();
            let known = line.and_then(|l| {
                let s = self.booking.waiting_status(&self.claims, &l)?;
                Some((s, l.counters.paused))
            });
            let (status, paused) = match known {
                Some(s) => s,
                None => match self.booking.queue_status(&self.token).await {
                    Ok(view) => (view.status, view.paused),
                    Err(e) => {
                        self.done = true;
                        return Some((Ok(error_event(e.into())), self));
                    }
                },
            };
            if self.worth_sending(status, paused) {
                return Some((Ok(self.sent(status, paused)), self));
            }
            // Nothing new to tell: the pace starts again from now.
            if let Some((sent, was_paused, _)) = self.last {
                self.last = Some((sent, was_paused, Instant::now()));
            }
        }
    }

    /// Records `status` as sent and makes its event.
    fn sent(&mut self, status: QueueStatus, paused: bool) -> Event {
        match status {
            QueueStatus::Waiting { .. } => self.last = Some((status, paused, Instant::now())),
            _ => self.done = true,
        }
        status_event(&self.claims, status, paused)
    }

    /// A final status always; a waiting one when its position moved or admission
    /// paused or resumed.
    fn worth_sending(&self, status: QueueStatus, paused: bool) -> bool {
        let QueueStatus::Waiting { position, .. } = status else {
            return true;
        };
        match self.last {
            Some((
                QueueStatus::Waiting {
                    position: before, ..
                },
                was_paused,
                _,
            )) => position != before || paused != was_paused,
            _ => true,
        }
    }

    /// When the pace of the last waiting status sent allows the next.
    fn due(&self) -> Option<Instant> {
        match self.last {
            Some((QueueStatus::Waiting { poll_after, .. }, _, at)) => Some(at + poll_after),
            _ => None,
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn status_event(claims: &TokenClaims, status: QueueStatus, paused: bool) -> Event {
    let dto = QueueDto::new(claims, status, None).with_paused(paused);
    let retry = Duration::from_millis(dto.poll_after_ms);
    Event::default()
        .event("status")
        .retry(retry)
        .json_data(&dto)
        .unwrap_or_else(|_| Event::default().event("status"))
}

fn error_event(e: ApiError) -> Event {
    let body = serde_json::json!({"error": {"code": e.code, "message": e.message}});
    Event::default().event("error").data(body.to_string())
}
