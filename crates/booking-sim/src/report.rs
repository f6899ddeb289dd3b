//! The run's report: JSON (schema `report.schema.json` beside this crate's
//! manifest, checked by a test) and Markdown, with the same figures: per-operation
//! counts, rates and latency percentiles, holds against conflicts, expirations,
//! payments, errors, the simulator's CPU time, and every audit check.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audit::{Audit, Verdict};
use crate::events::Op;
use crate::stats::Snapshot;

/// The schema id every report carries.
pub const SCHEMA: &str = "booking-sim/report/v1";

/// What was simulated against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetReport {
    /// `memory`, `sqlite`, `postgres` (in process) or `http`.
    pub kind: String,
    /// Server instances (0 in process).
    pub instances: usize,
    /// Whether the instances were started by the simulator (`--spawn`).
    pub spawned: bool,
    /// Connections per instance at most over HTTP (0 in process).
    pub connections: usize,
    /// The database backend audited: `memory`, `sqlite`, `postgres`, or `none`.
    pub database: String,
}

/// The admission policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// Tick interval.
    pub interval_ms: u64,
    /// Users per tick at most.
    pub batch: Option<u32>,
    /// Active users at most.
    pub max_active: Option<u32>,
}

/// The run's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsReport {
    /// The load plan (`users,duration;...`).
    pub plan: String,
    /// The most users at once.
    pub peak_users: u32,
    /// How long the plan lasts.
    pub plan_secs: f64,
    /// Hold TTL (in-process and spawned targets).
    pub hold_ttl_secs: f64,
    /// Session TTL.
    pub session_ttl_secs: f64,
    /// Show-up grace.
    pub show_up_grace_secs: f64,
    /// Admission policy.
    pub policy: PolicyReport,
    /// Dates created at the start.
    pub initial_dates: u16,
    /// Seats per date.
    pub seats_per_date: u16,
    /// Price of every seat (minor units).
    pub price: i64,
    /// Whether dates were added as seats sold out.
    pub restock: bool,
    /// Think time between steps.
    pub think_ms: [u64; 2],
    /// Pause between polls.
    pub poll_every_ms: u64,
    /// Probabilities per visit.
    pub p_abandon_queue: f64,
    /// Walk away from a hold.
    pub p_abandon_hold: f64,
    /// Cancel the hold.
    pub p_cancel: f64,
    /// Retry the payment.
    pub p_retry_pay: f64,
    /// Probe the ended token.
    pub p_probe: f64,
    /// Zipf exponent of seat popularity.
    pub seat_skew: f64,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Median.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationReport {
    /// Its name.
    pub name: String,
    /// Completed calls.
    pub count: u64,
    /// Successes.
    pub ok: u64,
    /// Expected refusals (outcomes such as `seat_taken`).
    pub refused: u64,
    /// Failures (errors).
    pub failed: u64,
    /// Refusals by name.
    pub outcomes: BTreeMap<String, u64>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Calls per second over the load phase.
    pub rate_per_sec: f64,
    /// Successes per second over the load phase.
    pub ok_per_sec: f64,
    /// Latency of every call, whatever its outcome.
    pub latency_us: LatencyReport,
    /// Median, 90th and 99th percentile of the calls of each second of the
    /// run (from second 0; `[0, 0, 0]` for a second without a call).
    pub latency_per_second_us: Vec<[u64; 3]>,
}

/// One second of holds, conflicts and payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondReport {
    /// Seconds since the start.
    pub second: u64,
    /// Holds that succeeded.
    pub holds: u64,
    /// Holds refused: seat taken.
    pub conflicts: u64,
    /// Payments acknowledged.
    pub payments: u64,
}

/// Holds against conflicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldsReport {
    /// Holds that succeeded.
    pub ok: u64,
    /// Holds refused because the seat was taken.
    pub conflicts: u64,
    /// Per second, over the load phase.
    pub ok_per_sec: f64,
    /// Per second, over the load phase.
    pub conflicts_per_sec: f64,
    /// Conflicts / (holds + conflicts).
    pub conflict_ratio: f64,
    /// Holds left to expire by their users.
    pub left_to_expire: u64,
    /// The last seconds of the run (at most 120).
    pub per_second: Vec<SecondReport>,
}

/// Payments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentsReport {
    /// Acknowledged (first answers).
    pub count: u64,
    /// Per second, over the load phase.
    pub per_sec: f64,
    /// Sum, in minor units.
    pub amount: i64,
}

/// Virtual users.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsersReport {
    /// Visits started (a token taken).
    pub started: u64,
    /// Told they were admitted.
    pub admitted: u64,
    /// Visits by how they ended.
    pub endings: BTreeMap<String, u64>,
    /// Visits still running when the drain time ran out (cut off).
    pub cut_off: u64,
}

/// The last sample of the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueueReport {
    /// Places issued.
    pub issued: u64,
    /// Admitted (the serving counter).
    pub serving: u64,
    /// Still waiting.
    pub waiting: u64,
    /// Active at the last sample.
    pub active: u64,
    /// The most active users any sample showed.
    pub max_active_sampled: u64,
}

/// CPU time over the load phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuReport {
    /// The whole process.
    pub process_secs: f64,
    /// The whole process, as a share of one core (100 = one core busy).
    pub process_percent: f64,
    /// Threads of spawned servers.
    pub servers_secs: f64,
    /// Everything else: the simulator (and, in process, the engine it calls).
    pub simulator_secs: f64,
    /// The simulator, as a share of one core.
    pub simulator_percent: f64,
}

/// One second of the on-sale scenario's waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PollSecond {
    /// Seconds since sale open.
    pub second: u64,
    /// Status polls completed in that second.
    pub polls: u64,
    /// Users waiting in line, as sampled in that second.
    pub waiting: u64,
}

/// The on-sale scenario's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnsaleReport {
    /// Users who came to buy (one seat each).
    pub users: u32,
    /// Seats of the concert's dates.
    pub capacity: u64,
    /// What must be sold: the capacity, or every user's seat if fewer came.
    pub expected_sold: u64,
    /// Seats sold, counted in the database on the run's dates (or, without a
    /// database to read, from acknowledged payments).
    pub sold: u64,
    /// `database` or `answers`: where `sold` was counted.
    pub sold_counted_in: String,
    /// Whether `sold == expected_sold`.
    pub sold_as_expected: bool,
    /// Users told "bought".
    pub bought: u64,
    /// Users told "sold out" (by the server, or by finding no free seat).
    pub sold_out: u64,
    /// Users with no final answer (failed, or still waiting when the run
    /// stopped).
    pub unanswered: u64,
    /// From sale open until acknowledged payments reached the capacity.
    pub time_to_sell_out_secs: Option<f64>,
    /// From sale open until every user had a final answer (`None` if some
    /// never had one).
    pub all_answered_secs: Option<f64>,
    /// From sale open until the last final answer.
    pub last_answer_secs: Option<f64>,
    /// The whole purchase: from the answer that admitted the user to the
    /// payment's receipt.
    pub purchase_latency_us: LatencyReport,
    /// The waits between polls the server asked for (`poll_after_ms`), in
    /// microseconds; all zero when it never said.
    pub poll_after_us: LatencyReport,
    /// Requests of every kind per purchase.
    pub requests_per_purchase: Option<f64>,
    /// CPU time of the spawned servers per purchase (`None` in process, where
    /// the engine cannot be told apart from the simulator, and with --url).
    pub server_cpu_secs_per_purchase: Option<f64>,
    /// Polls per second against the length of the line.
    pub polls_per_second: Vec<PollSecond>,
}

/// One `--fail-if` threshold and the run's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdReport {
    /// The expression, as given (without blanks), e.g. `hold.p99>50ms`.
    pub expression: String,
    /// The run's value, for people (`61.2 ms`, `0.42%`, `118`).
    pub value: String,
    /// Whether the run crossed it (the run then fails).
    pub crossed: bool,
}

/// One route's latency on the servers, from their Prometheus histograms: the
/// upper bounds of the buckets that hold the median and the 99th percentile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteLatency {
    /// `GET /v1/queue/status` and so on.
    pub route: String,
    /// Requests answered.
    pub count: u64,
    /// The median is at most this (seconds); `None` above the last bucket.
    pub p50_at_most_secs: Option<f64>,
    /// The 99th percentile is at most this (seconds); `None` above the last bucket.
    pub p99_at_most_secs: Option<f64>,
    /// Share answered within 100 ms.
    pub within_100ms: f64,
}

/// Sums the latency histograms of Prometheus texts (one per instance) by route.
pub fn route_latency(texts: &[String]) -> Vec<RouteLatency> {
    // route -> (bucket bound -> count), "+Inf" as infinity
    let mut routes: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for text in texts {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("booking_http_request_duration_seconds_bucket{")
            else {
                continue;
            };
            let Some((labels, count)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    kv.strip_prefix(name)?
                        .strip_prefix("=\"")?
                        .strip_suffix('"')
                })
            };
            let (Some(method), Some(route), Some(le), Ok(n)) = (
                label("method"),
                label("route"),
                label("le"),
                count.trim().parse::<u64>(),
            ) else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            let buckets = routes.entry(format!("{method} {route}")).or_default();
            match buckets.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, c)) => *c += n,
                None => buckets.push((bound, n)),
            }
        }
    }
    routes
        .into_iter()
        .filter_map(|(route, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = buckets.last().map(|(_, n)| *n).filter(|n| *n > 0)?;
            let at = |q: f64| {
                buckets
                    .iter()
                    .find(|(_, n)| *n as f64 >= q * total as f64)
                    .map(|(b, _)| *b)
                    .filter(|b| b.is_finite())
            };
            let within = buckets
                .iter()
                .filter(|(b, _)| *b <= 0.1)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            Some(RouteLatency {
                route,
                count: total,
                p50_at_most_secs: at(0.5),
                p99_at_most_secs: at(0.99),
                within_100ms: (within as f64 / total as f64 * 1000.0).round() / 1000.0,
            })
        })
        .collect()
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The seed that reproduces the users' choices.
    pub seed: u64,
    /// What was simulated against.
    pub target: TargetReport,
    /// Settings.
    pub settings: SettingsReport,
    /// Length of the load phase.
    pub elapsed_secs: f64,
    /// Virtual users.
    pub users: UsersReport,
    /// Every operation, in flow order.
    pub operations: Vec<OperationReport>,
    /// Holds and conflicts.
    pub holds: HoldsReport,
    /// Payments.
    pub payments: PaymentsReport,
    /// Failures by operation and kind (`hold/timeout`).
    pub errors: BTreeMap<String, u64>,
    /// The latest message of each failure in `errors`.
    pub error_samples: BTreeMap<String, String>,
    /// The waiting room at the end.
    pub queue: Option<QueueReport>,
    /// CPU time, where the platform tells.
    pub cpu: Option<CpuReport>,
    /// The on-sale scenario's figures (`None` for the browse scenario).
    pub onsale: Option<OnsaleReport>,
    /// What the machine does with no booking in the way, measured just before the
    /// load (`--baseline`).
    pub baseline: Option<crate::baseline::BaselineReport>,
    /// Over HTTP: each route's latency as the instances measured it themselves
    /// (their `/metrics` histograms, summed), without the time a request waited
    /// for one of the simulator's connections.
    pub server_latency: Vec<RouteLatency>,
    /// The `--fail-if` thresholds and whether the run crossed each (empty
    /// without any).
    pub thresholds: Vec<ThresholdReport>,
    /// The auditor's verdicts.
    pub audit: Audit,
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// A latency's report figures.
pub(crate) fn latency_report(l: &crate::stats::Latency) -> LatencyReport {
    LatencyReport {
        p50: l.p50_us,
        p90: l.p90_us,
        p99: l.p99_us,
        p999: l.p999_us,
        max: l.max_us,
        mean: (l.mean_us * 10.0).round() / 10.0,
    }
}

/// The per-operation and hold figures of a final snapshot.
pub(crate) fn figures(
    snap: &Snapshot,
    secs: f64,
    left_to_expire: u64,
) -> (Vec<OperationReport>, HoldsReport, PaymentsReport) {
    let ops = snap
        .ops
        .iter()
        .map(|o| {
            let refused: u64 = o.refused.values().sum();
            let failed: u64 = o.failed.values().sum();
            OperationReport {
                name: o.name.to_owned(),
                count: o.n_total,
                ok: o.n_ok,
                refused,
                failed,
                outcomes: o
                    .refused
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                errors: o
                    .failed
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                rate_per_sec: per_sec(o.n_total, secs),
                ok_per_sec: per_sec(o.n_ok, secs),
                latency_us: latency_report(&o.latency),
                latency_per_second_us: o.per_sec_us.clone(),
            }
        })
        .collect();
    let t = snap.totals;
    let first = snap
        .elapsed
        .as_secs()
        .saturating_sub(snap.recent.len() as u64 - 1);
    let holds = HoldsReport {
        ok: t.n_holds,
        conflicts: t.n_conflicts,
        ok_per_sec: per_sec(t.n_holds, secs),
        conflicts_per_sec: per_sec(t.n_conflicts, secs),
        conflict_ratio: if t.n_holds + t.n_conflicts > 0 {
            ((t.n_conflicts as f64 / (t.n_holds + t.n_conflicts) as f64) * 1e4).round() / 1e4
        } else {
            0.0
        },
        left_to_expire,
        per_second: snap
            .recent
            .iter()
            .enumerate()
            .map(|(i, s)| SecondReport {
                second: first + i as u64,
                holds: s.n_holds,
                conflicts: s.n_conflicts,
                payments: s.n_payments,
            })
            .collect(),
    };
    let payments = PaymentsReport {
        count: t.n_payments,
        per_sec: per_sec(t.n_payments, secs),
        amount: snap.paid_amount,
    };
    (ops, holds, payments)
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The figures of one operation.
    pub fn op(&self, op: Op) -> &OperationReport {
        &self.operations[op.index()]
    }

    /// Why the run itself failed, if it did: more than half of its requests
    /// failed (every one, against a target that cannot be reached), or none was
    /// made. Names the most frequent failure with its latest message.
    pub fn run_failure(&self) -> Option<String> {
        let total: u64 = self.operations.iter().map(|o| o.count).sum();
        let failed: u64 = self.operations.iter().map(|o| o.failed).sum();
        if total == 0 {
            return Some("no request completed".into());
        }
        if let Some(o) = &self.onsale {
            if !o.sold_as_expected {
                return Some(format!(
                    "sold {} seats, not {} (capacity {}, {} users)",
                    o.sold, o.expected_sold, o.capacity, o.users
                ));
            }
            if o.unanswered > 0 {
                return Some(format!(
                    "{} of {} users had no final answer (bought or sold out)",
                    o.unanswered, o.users
                ));
            }
        }
        if failed * 2 <= total {
            return None;
        }
        let top = self
            .errors
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(k, n)| match self.error_samples.get(k) {
                Some(m) => format!("; most were {k} ({n}): {m}"),
                None => format!("; most were {k} ({n})"),
            })
            .unwrap_or_default();
        Some(format!("{failed} of {total} requests failed{top}"))
    }

    /// The baselines beside this run's rates.
    fn baseline_markdown(&self, m: &mut String, b: &crate::baseline::BaselineReport) {
        let _ = writeln!(m, "## Baselines (same run, just before the load)\n");
        let _ = writeln!(m, "| what | per second | p50 | p99 |");
        let _ = writeln!(m, "|---|---:|---:|---:|");
        let h = &b.hello_world;
        let _ = writeln!(
            m,
            "| axum hello world over HTTP, {} connections | {:.0} | {} | {} |",
            h.connections,
            h.requests_per_sec,
            ms(h.p50_us),
            ms(h.p99_us)
        );
        if let Some(r) = &b.raw_sql {
            let _ = writeln!(
                m,
                "| raw SQL ({}): 3-statement transaction, {} tasks | {:.0} | - | - |",
                r.backend, r.tasks, r.three_statement_tx_per_sec
            );
            let _ = writeln!(
                m,
                "| raw SQL ({}): single-row insert, {} tasks | {:.0} | - | - |",
                r.backend, r.tasks, r.insert_per_sec
            );
        }
        let requests: u64 = self.operations.iter().map(|o| o.count).sum();
        let secs = self.elapsed_secs.max(1e-9);
        let rps = requests as f64 / secs;
        let _ = writeln!(
            m,
            "\nThis run: {rps:.0} requests/s over the load phase ({:.0}% of hello world).",
            100.0 * rps / h.requests_per_sec.max(1e-9)
        );
        if let (Some(o), Some(r)) = (&self.onsale, &b.raw_sql)
            && let Some(t) = o.time_to_sell_out_secs.filter(|t| *t > 0.0)
        {
            let sold = o.sold as f64 / t;
            let _ = writeln!(
                m,
                "Seats sold per second until sold out: {sold:.0} ({:.1}% of the raw \
                 3-statement transaction rate).",
                100.0 * sold / r.three_statement_tx_per_sec.max(1e-9)
            );
        }
        let _ = writeln!(m);
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let s = &self.settings;
        let _ = writeln!(m, "# booking-sim report\n");
        let _ = writeln!(
            m,
            "Target **{}** ({}{}), database audited: {}. Seed `{}`.\n",
            self.target.kind,
            if self.target.instances == 0 {
                "in process".to_owned()
            } else {
                crate::run::instances(self.target.instances)
            },
            if self.target.spawned { ", spawned" } else { "" },
            self.target.database,
            self.seed
        );
        let _ = writeln!(
            m,
            "Plan `{}` (peak {} users), load phase {:.1} s. Hold TTL {} s, session TTL {} s, \
             show-up grace {} s; admission every {} ms, batch {}, cap {}. {} dates of {} seats at \
             {} to start{}.\n",
            s.plan,
            s.peak_users,
            self.elapsed_secs,
            s.hold_ttl_secs,
            s.session_ttl_secs,
            s.show_up_grace_secs,
            s.policy.interval_ms,
            opt(s.policy.batch),
            opt(s.policy.max_active),
            s.initial_dates,
            s.seats_per_date,
            s.price,
            if s.restock {
                ", more added as seats sell out"
            } else {
                ""
            }
        );
        if let Some(o) = &self.onsale {
            let secs = |v: Option<f64>| v.map_or_else(|| "never".into(), |v| format!("{v:.2} s"));
            let p = &o.purchase_latency_us;
            let _ = writeln!(m, "## On sale\n");
            let _ = writeln!(m, "| figure | value |\n|---|---:|");
            let rows: Vec<(&str, String)> = vec![
                ("users", o.users.to_string()),
                (
                    "sold / capacity",
                    format!(
                        "{} / {} ({}, {})",
                        o.sold,
                        o.capacity,
                        if o.sold_as_expected {
                            "as expected"
                        } else {
                            "**NOT as expected**"
                        },
                        o.sold_counted_in
                    ),
                ),
                (
                    "bought / sold out / no answer",
                    format!("{} / {} / {}", o.bought, o.sold_out, o.unanswered),
                ),
                ("time to sell out", secs(o.time_to_sell_out_secs)),
                ("every user answered after", secs(o.all_answered_secs)),
                ("last answer after", secs(o.last_answer_secs)),
                (
                    "purchase (admission to receipt) p50 / p99 / p99.9 / max",
                    format!(
                        "{} / {} / {} / {}",
                        ms(p.p50),
                        ms(p.p99),
                        ms(p.p999),
                        ms(p.max)
                    ),
                ),
                ("poll_after the server asked for, p50 / p99 / max", {
                    let a = &o.poll_after_us;
                    if a.max == 0 {
                        "never said".into()
                    } else {
                        format!("{} / {} / {}", ms(a.p50), ms(a.p99), ms(a.max))
                    }
                }),
                (
                    "requests per purchase",
                    o.requests_per_purchase
                        .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
                ),
                (
                    "server CPU per purchase",
                    o.server_cpu_secs_per_purchase
                        .map_or_else(|| "-".into(), |v| format!("{:.2} ms", v * 1000.0)),
                ),
                (
                    "most polls in a second (line then)",
                    o.polls_per_second
                        .iter()
                        .max_by_key(|s| s.polls)
                        .map_or_else(
                            || "-".into(),
                            |s| format!("{} ({} waiting)", s.polls, s.waiting),
                        ),
                ),
            ];
            for (k, v) in rows {
                let _ = writeln!(m, "| {k} | {v} |");
            }
            let _ = writeln!(m, "\nPolls per second against the line:\n");
            let _ = writeln!(m, "| second | polls | waiting |\n|---:|---:|---:|");
            for s in &o.polls_per_second {
                let _ = writeln!(m, "| {} | {} | {} |", s.second, s.polls, s.waiting);
            }
            let _ = writeln!(m);
        }
        if let Some(b) = &self.baseline {
            self.baseline_markdown(&mut m, b);
        }
        if !self.server_latency.is_empty() {
            let _ = writeln!(
                m,
                "## Latency on the servers\n\nAs the instances measured it (their `/metrics` \
                 histograms, summed): without the time a request waited for one of the \
                 simulator's connections. Bounds are the histogram's buckets.\n"
            );
            let _ = writeln!(
                m,
                "| route | requests | p50 at most | p99 at most | within 100 ms |"
            );
            let _ = writeln!(m, "|---|---:|---:|---:|---:|");
            let bound = |v: Option<f64>| {
                v.map_or_else(|| "above 5 s".into(), |s| ms((s * 1e6).round() as u64))
            };
            for r in &self.server_latency {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {:.1}% |",
                    r.route,
                    r.count,
                    bound(r.p50_at_most_secs),
                    bound(r.p99_at_most_secs),
                    100.0 * r.within_100ms
                );
            }
            let _ = writeln!(m);
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(m, "## Thresholds (--fail-if)\n");
            let _ = writeln!(m, "| fails if | the run | verdict |\n|---|---:|---|");
            for t in &self.thresholds {
                let _ = writeln!(
                    m,
                    "| `{}` | {} | {} |",
                    t.expression,
                    t.value,
                    if t.crossed { "**CROSSED**" } else { "passed" }
                );
            }
            let _ = writeln!(m);
        }
        let _ = writeln!(m, "## Operations\n");
        let _ = writeln!(
            m,
            "| operation | count | ok | outcomes | errors | ops/s | ok/s | p50 | p90 | p99 | p99.9 | max |"
        );
        let _ = writeln!(
            m,
            "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for o in &self.operations {
            let l = &o.latency_us;
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
                o.name,
                o.count,
                o.ok,
                counts(&o.outcomes),
                counts(&o.errors),
                o.rate_per_sec,
                o.ok_per_sec,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            );
        }
        let h = &self.holds;
        let _ = writeln!(m, "\n## Holds, conflicts, payments\n");
        let _ = writeln!(
            m,
            "- holds: {} ({:.1}/s); conflicts (seat taken): {} ({:.1}/s), {:.1}% of attempts",
            h.ok,
            h.ok_per_sec,
            h.conflicts,
            h.conflicts_per_sec,
            h.conflict_ratio * 100.0
        );
        let _ = writeln!(
            m,
            "- holds users walked away from (left to expire): {}",
            h.left_to_expire
        );
        let _ = writeln!(
            m,
            "- payments: {} ({:.1}/s), {} in minor units",
            self.payments.count, self.payments.per_sec, self.payments.amount
        );
        let u = &self.users;
        let _ = writeln!(
            m,
            "- visits: {} started, {} admitted; endings: {}{}",
            u.started,
            u.admitted,
            counts(&u.endings),
            if u.cut_off > 0 {
                format!("; {} cut off at the end", u.cut_off)
            } else {
                String::new()
            }
        );
        if let Some(q) = &self.queue {
            let _ = writeln!(
                m,
                "- waiting room at the end: {} issued, {} admitted, {} waiting, {} active (most sampled: {})",
                q.issued, q.serving, q.waiting, q.active, q.max_active_sampled
            );
        }
        let _ = writeln!(m, "- errors: {}", counts(&self.errors));
        for (k, sample) in &self.error_samples {
            let _ = writeln!(m, "  - {k}, latest: {}", sample.replace('\n', " "));
        }
        if let Some(why) = self.run_failure() {
            let _ = writeln!(m, "- **the run failed**: {why}");
        }
        if let Some(c) = &self.cpu {
            let _ = writeln!(
                m,
                "- CPU: process {:.1} s ({:.0}% of one core), simulator {:.1} s ({:.0}%), spawned servers {:.1} s",
                c.process_secs,
                c.process_percent,
                c.simulator_secs,
                c.simulator_percent,
                c.servers_secs
            );
        }
        let _ = writeln!(
            m,
            "\n## Audit: {}\n",
            if self.audit.clean {
                "clean"
            } else {
                "VIOLATIONS"
            }
        );
        let _ = writeln!(
            m,
            "| check | invariant | verdict | checked | violations | what |"
        );
        let _ = writeln!(m, "|---|---|---|---:|---:|---|");
        for c in &self.audit.checks {
            let verdict = match c.verdict {
                Verdict::Passed => "passed",
                Verdict::Failed => "**FAILED**",
                Verdict::Skipped => "skipped",
            };
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                c.id, c.invariant, verdict, c.n_checked, c.n_violations, c.title
            );
        }
        for c in self.audit.checks.iter().filter(|c| !c.details.is_empty()) {
            let _ = writeln!(m, "\n{}:\n", c.id);
            for d in &c.details {
                let _ = writeln!(m, "- {d}");
            }
        }
        m
    }

    /// Writes the JSON to `path` and the Markdown beside it (same name, `.md`).
    /// Returns the Markdown file's path.
    ///
    /// # Errors
    /// IO errors.
    pub fn write(&self, path: &Path) -> std::io::Result<PathBuf> {
        std::fs::write(path, self.to_json())?;
        let [_, md, holds, latency] = report_paths(path);
        std::fs::write(&holds, self.holds_svg())?;
        std::fs::write(&latency, self.latency_svg())?;
        let name = |p: &Path| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        let mut text = self.to_markdown();
        let _ = writeln!(
            text,
            "\n## Plots\n\n![Holds, conflicts and payments per second]({})\n\n\
             ![Latency per second of holds and payments]({})",
            name(&holds),
            name(&latency)
        );
        std::fs::write(&md, text)?;
        Ok(md)
    }

    /// Holds, conflicts and payments per second, as an SVG line chart.
    pub fn holds_svg(&self) -> String {
        let per = &self.holds.per_second;
        let line = |g: fn(&SecondReport) -> u64| -> Vec<(f64, f64)> {
            per.iter().map(|s| (s.second as f64, g(s) as f64)).collect()
        };
        crate::svg::line_chart(
            "Holds, conflicts (seat taken) and payments per second",
            "second of the run",
            &[
                crate::svg::Series {
                    name: "holds",
                    color: "#2a9d3f",
                    points: line(|s| s.holds),
                },
                crate::svg::Series {
                    name: "conflicts",
                    color: "#d62728",
                    points: line(|s| s.conflicts),
                },
                crate::svg::Series {
                    name: "payments",
                    color: "#1f77b4",
                    points: line(|s| s.payments),
                },
            ],
            &|y| format!("{y:.0}/s"),
        )
    }

    /// The median and 99th percentile of holds and payments, second by second,
    /// as an SVG line chart.
    pub fn latency_svg(&self) -> String {
        let line = |op: Op, i: usize| -> Vec<(f64, f64)> {
            self.op(op)
                .latency_per_second_us
                .iter()
                .enumerate()
                .filter(|(_, v)| v[i] > 0)
                .map(|(sec, v)| (sec as f64, v[i] as f64))
                .collect()
        };
        crate::svg::line_chart(
            "Latency per second: hold and pay, p50 and p99",
            "second of the run",
            &[
                crate::svg::Series {
                    name: "hold p50",
                    color: "#8fd19e",
                    points: line(Op::Hold, 0),
                },
                crate::svg::Series {
                    name: "hold p99",
                    color: "#2a9d3f",
                    points: line(Op::Hold, 2),
                },
                crate::svg::Series {
                    name: "pay p50",
                    color: "#9ecae1",
                    points: line(Op::Pay, 0),
                },
                crate::svg::Series {
                    name: "pay p99",
                    color: "#1f77b4",
                    points: line(Op::Pay, 2),
                },
            ],
            &|y| fmt_us(y.round() as u64),
        )
    }
}

/// Every file [`Report::write`] writes for a JSON report at `path`: the JSON,
/// the Markdown, and the two plots (`NAME-holds.svg`, `NAME-latency.svg`).
pub fn report_paths(path: &Path) -> [PathBuf; 4] {
    let stem = path
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    [
        path.to_path_buf(),
        markdown_path(path),
        path.with_file_name(format!("{stem}-holds.svg")),
        path.with_file_name(format!("{stem}-latency.svg")),
    ]
}

/// Where the Markdown report of a JSON report at `path` goes.
pub fn markdown_path(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "md") {
        path.with_extension("report.md")
    } else {
        path.with_extension("md")
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "none".into(), |v| v.to_string())
}

/// A latency for people, with its unit: `19 us` below a millisecond, `4.25 ms`,
/// `12.5 ms`, `250 ms`, `1.25 s`.
///
/// Seven characters at most below 1,000 s.
pub fn fmt_us(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if us < 1_000 {
        format!("{us} us")
    } else if us < 10_000 {
        format!("{ms:.2} ms")
    } else if us < 100_000 {
        format!("{ms:.1} ms")
    } else if us < 1_000_000 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn ms(us: u64) -> String {
    fmt_us(us)
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = m
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_carry_their_unit() {
        assert_eq!(fmt_us(0), "0 us");
        assert_eq!(fmt_us(19), "19 us");
        assert_eq!(fmt_us(999), "999 us");
        assert_eq!(fmt_us(1_000), "1.00 ms");
        assert_eq!(fmt_us(4_250), "4.25 ms");
        assert_eq!(fmt_us(12_500), "12.5 ms");
        assert_eq!(fmt_us(250_000), "250 ms");
        assert_eq!(fmt_us(1_250_000), "1.25 s");
        assert_eq!(fmt_us(120_000_000), "120.00 s");
    }

    #[test]
    fn server_histograms_are_summed_by_route() {
        let one = "# TYPE booking_http_request_duration_seconds histogram
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"0.001\"} 90
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"0.1\"} 99
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"5\"} 100
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"+Inf\"} 100
booking_http_request_duration_seconds_sum{method=\"GET\",route=\"/v1/queue/status\"} 1.5
";
        let two = "booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"0.001\"} 0
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"0.1\"} 0
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"5\"} 0
booking_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue/status\",le=\"+Inf\"} 100
";
        let r = route_latency(&[one.to_owned(), two.to_owned()]);
        assert_eq!(r.len(), 1);
        let s = &r[0];
        assert_eq!(s.route, "GET /v1/queue/status");
        assert_eq!(s.count, 200);
        // 90 of 200 within 1 ms, 99 within 100 ms: the median is in (0.1, 5].
        assert_eq!(s.p50_at_most_secs, Some(5.0));
        // Half the requests were above the last bucket.
        assert_eq!(s.p99_at_most_secs, None);
        assert_eq!(s.within_100ms, 0.495);
        assert!(route_latency(&["garbage {".to_owned()]).is_empty());
    }

    #[test]
    fn the_markdown_file_sits_beside_the_json() {
        assert_eq!(
            markdown_path(Path::new("out/run.json")),
            Path::new("out/run.md")
        );
        assert_eq!(markdown_path(Path::new("run")), Path::new("run.md"));
        assert_eq!(
            markdown_path(Path::new("run.md")),
            Path::new("run.report.md")
        );
    }
}
