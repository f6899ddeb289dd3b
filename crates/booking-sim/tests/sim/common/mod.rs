//! Shared set-up of the simulator's tests: short runs with small numbers, short
//! TTLs and fast admission, so that every outcome (holds, conflicts, payments,
//! expirations, replays, probes) happens within a few seconds.

#![allow(dead_code)]

use std::time::Duration;

use booking_core::Config;
use booking_core::domain::AdmissionPolicy;
use booking_sim::events::Op;
use booking_sim::plan::Plan;
use booking_sim::run::{Outcome, SimConfig};
use booking_sim::user::Behaviour;

/// A short run: `users` users for `secs` seconds, few seats, a small cap.
pub fn small(users: u32, secs: u64, seed: u64) -> SimConfig {
    SimConfig {
        plan: Plan::constant(users, Duration::from_secs(secs), Duration::from_millis(300))
            .expect("plan"),
        seed,
        behaviour: Behaviour {
            think_min: Duration::from_millis(5),
            think_max: Duration::from_millis(40),
            poll_every: Duration::from_millis(30),
            p_abandon_queue: 0.05,
            p_abandon_hold: 0.2,
            p_cancel: 0.1,
            p_retry_pay: 0.3,
            p_probe: 0.3,
            ..Behaviour::default()
        },
        initial_dates: 2,
        seats_per_date: 20,
        policy: AdmissionPolicy::rate_and_capacity(20, Duration::from_millis(50), 30)
            .expect("policy"),
        engine: Config {
            hold_ttl: Duration::from_secs(1),
            session_ttl: Duration::from_secs(3),
            show_up_grace: Duration::from_secs(2),
            ..Config::default()
        },
        sample_every: Duration::from_millis(100),
        drain: Duration::from_secs(20),
        pool_size: 8,
        ..SimConfig::default()
    }
}

/// The figures every short run must show: the whole flow happened, users
/// collided on seats, and the audit is clean.
pub fn assert_healthy(o: &Outcome, cfg: &SimConfig) {
    let r = &o.report;
    let seed = cfg.seed;
    assert!(
        r.audit.clean,
        "seed {seed}: audit {:#?}",
        r.audit
            .checks
            .iter()
            .filter(|c| c.n_violations > 0)
            .collect::<Vec<_>>()
    );
    for op in [
        Op::Issue,
        Op::Poll,
        Op::Dates,
        Op::Seats,
        Op::Hold,
        Op::Charge,
        Op::Pay,
    ] {
        assert!(r.op(op).ok > 0, "seed {seed}: no successful {}", op.name());
    }
    assert!(
        r.op(Op::Hold)
            .outcomes
            .get("seat_taken")
            .copied()
            .unwrap_or(0)
            > 0,
        "seed {seed}: no conflicts"
    );
    assert_eq!(r.holds.conflicts, r.op(Op::Hold).outcomes["seat_taken"]);
    assert_eq!(r.payments.count, r.op(Op::Pay).ok);
    assert_eq!(
        r.payments.amount,
        r.payments.count as i64 * cfg.price,
        "every seat costs the same"
    );
    assert!(
        r.holds.left_to_expire > 0,
        "seed {seed}: no hold left to expire"
    );
    // Replays and probes both happened and were answered as they must be.
    assert!(r.op(Op::PayRetry).ok > 0, "seed {seed}: no replay");
    assert_eq!(r.op(Op::PayRetry).failed, 0);
    assert!(r.op(Op::Probe).count > 0, "seed {seed}: no probe");
    assert_eq!(r.op(Op::Probe).ok, 0, "an ended token held a seat");
    // No operation failed.
    assert!(r.errors.is_empty(), "seed {seed}: errors {:?}", r.errors);
    // The cap held in every sample, and samples were taken.
    let q = r.queue.expect("queue samples");
    assert!(q.max_active_sampled <= 30, "{q:?}");
    let audited = r.audit.checks.iter().filter(|c| c.n_checked > 0).count();
    assert!(
        audited >= 12,
        "most checks looked at something: {:#?}",
        r.audit
    );
}
