//! The contract suite: the rules of DESIGN.md sections 3-5, checked through the
//! services and the ports, on any store. Every function takes a fresh store.
//!
//! Names start with the requirement (R1-R6) or invariant (I1-I7) they check, or
//! with `port_` for a contract of one port method alone.
//!
//! One module per area, in the order of the list in [`crate::contract_suite`]:
//! `token` (R1), `admission` (I3, I4, sessions, the ticker), `catalog` (R2),
//! `holds` (R3, I1), `wallet` (R4, I2), `payment` (R5, I5, I6), `events` (issue 18:
//! the outbox and the feed, names starting with `ev_`).

use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, IdempotencyKey, UserId};
use booking_core::{QueueStatus, Store};

use crate::Kit;

mod admission;
mod catalog;
mod events;
mod holds;
mod payment;
mod token;
mod wallet;
mod webhooks;

pub use admission::*;
pub use catalog::*;
pub use events::*;
pub use holds::*;
pub use payment::*;
pub use token::*;
pub use wallet::*;
pub use webhooks::*;

const SEC: Duration = Duration::from_secs(1);

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("key")
}

fn policy(batch: Option<u32>, cap: Option<u32>) -> AdmissionPolicy {
    AdmissionPolicy::new(SEC, batch, cap).expect("policy")
}

async fn position(kit: &Kit<impl Store>, token: &str) -> u64 {
    match kit
        .booking
        .queue_status(token)
        .await
        .expect("status")
        .status
    {
        QueueStatus::Waiting { position, .. } => position,
        other => panic!("expected waiting, got {other:?}"),
    }
}

async fn issue_n(kit: &Kit<impl Store>, n: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        tokens.push(
            kit.booking
                .issue_token(UserId::random())
                .await
                .expect("issue")
                .token,
        );
    }
    tokens
}

/// Keeps the list of contract tests in one place for [`crate::contract_suite`].
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite!(@each $make;
            r1_token_issue_is_idempotent_per_user,
            r1_forged_and_altered_tokens_are_refused,
            r1_token_of_another_database_is_unknown,
            r1_status_reports_position_and_eta,
            r1_gate_refuses_waiting_tokens_with_their_position,
            r1_queue_full_is_refused,
            i3_admission_follows_issue_order,
            i4_capacity_is_never_exceeded,
            i4_a_late_show_up_cannot_exceed_the_cap,
            r1_no_show_loses_the_place_after_grace,
            r1_session_lasts_its_ttl,
            r1_ticker_respects_interval_and_pause,
            r6_concurrent_tickers_advance_once_per_tick,
            port_advance_is_a_compare_and_set,
            port_issue_is_atomic_per_user,
            r2_bookable_dates_are_future_with_free_seats,
            r2_seat_map_shows_state_and_price,
            r2_schedule_creation_rules,
            i1_held_seat_is_taken_until_it_lapses,
            r3_hold_limit_per_user,
            r3_hold_refuses_bad_seats_and_dates,
            r3_hold_lapses_when_the_show_starts,
            r3_cancel_rules,
            r3_sweeper_records_what_expired,
            i6_hold_port_requires_an_active_session,
            i1_concurrent_holds_on_one_seat_have_one_winner,
            r4_charge_adds_to_balance_with_a_ledger_row,
            r4_charge_limits,
            r4_charge_is_idempotent_by_key,
            i2_concurrent_charges_are_all_counted,
            r5_payment_sells_the_seat_and_ends_the_token,
            r5_insufficient_balance_changes_nothing,
            i5_payment_refusals,
            i5_retried_payment_returns_the_first_result,
            i6_concurrent_payments_of_one_token_pay_once,
            r5_several_holds_are_paid_in_one_payment,
            r5_payment_of_several_holds_is_all_or_nothing,
            i1_a_session_end_releases_its_holds,
            r5_late_payment_of_a_seat_sold_since_says_sold,
            r4_an_ended_token_reads_but_cannot_charge,
            port_webhook_add_list_remove,
            port_webhook_claim_picks_due_unleased_endpoints,
            port_webhook_writes_need_the_lease,
            port_webhook_lowest_cursor_of_active_endpoints,
            port_webhook_concurrent_claims_get_distinct_endpoints,
            port_webhook_retention_keeps_what_an_endpoint_has_not_had,
            ev_every_change_emits_its_events,
            ev_a_refused_write_emits_nothing,
            ev_the_feed_pages_filters_and_prunes
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // The guard (a temporary directory, a database to drop...) lives
                // until the test ends.
                let (store, _guard) = $make.await;
                $crate::contract::$name(store).await;
            }
        )+
    };
}
