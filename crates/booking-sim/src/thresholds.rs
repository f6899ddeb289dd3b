//! Pass/fail thresholds for CI: `--fail-if 'hold.p99>50ms'` (as in k6, but
//! written as the failing condition). Each expression is `METRIC OP VALUE`:
//!
//! - `OPERATION.STAT` with `STAT` one of `p50`, `p90`, `p99`, `p99.9`, `max`,
//!   `mean` (a latency: the value takes a unit, `us`, `ms` or `s`), `count`,
//!   `ok`, `errors` (calls), `error_rate` (errors of the calls, `0.01` or `1%`),
//!   `rate` (calls per second); `OPERATION` is an operation of the report
//!   (`issue`, `poll`, `watch`, `dates`, `seats`, `hold`, `charge`, `pay`,
//!   `pay_retry`, `cancel`, `probe`);
//! - `errors` (every failed call), `error_rate`, `holds`, `conflicts`,
//!   `conflict_rate` (conflicts of the hold attempts), `payments`,
//!   `payments_per_sec`;
//!
//! and `OP` one of `>`, `>=`, `<`, `<=`.

use std::fmt;
use std::str::FromStr;

use crate::events::Op;
use crate::report::Report;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
        }
    }
}

/// What a value is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Microseconds (written with a unit).
    Latency,
    /// A count or a rate.
    Number,
    /// A share, 0 to 1 (or written as a percentage).
    Ratio,
}

/// What a threshold measures.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Metric {
    Op(Op, &'static str),
    Errors,
    ErrorRate,
    Holds,
    Conflicts,
    ConflictRate,
    Payments,
    PaymentsPerSec,
}

const STATS: [&str; 11] = [
    "p50",
    "p90",
    "p99",
    "p99.9",
    "max",
    "mean",
    "count",
    "ok",
    "errors",
    "error_rate",
    "rate",
];

impl Metric {
    fn kind(&self) -> Kind {
        match self {
            Metric::Op(_, s) => match *s {
                "p50" | "p90" | "p99" | "p99.9" | "max" | "mean" => Kind::Latency,
                "error_rate" => Kind::Ratio,
                _ => Kind::Number,
            },
            Metric::ErrorRate | Metric::ConflictRate => Kind::Ratio,
            _ => Kind::Number,
        }
    }

    fn parse(s: &str) -> Result<Metric, String> {
        let global = match s {
            "errors" => Some(Metric::Errors),
            "error_rate" => Some(Metric::ErrorRate),
            "holds" => Some(Metric::Holds),
            "conflicts" => Some(Metric::Conflicts),
            "conflict_rate" => Some(Metric::ConflictRate),
            "payments" => Some(Metric::Payments),
            "payments_per_sec" => Some(Metric::PaymentsPerSec),
            _ => None,
        };
        if let Some(m) = global {
            return Ok(m);
        }
        let Some((op, stat)) = s.split_once('.') else {
            return Err(format!(
                "unknown metric {s:?}: use OPERATION.STAT (e.g. hold.p99) or one of errors, \
                 error_rate, holds, conflicts, conflict_rate, payments, payments_per_sec"
            ));
        };
        let op = Op::ALL
            .iter()
            .copied()
            .find(|o| o.name() == op)
            .ok_or_else(|| {
                let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
                format!(
                    "unknown operation {op:?} in {s:?}: one of {}",
                    names.join(", ")
                )
            })?;
        let stat = STATS.iter().copied().find(|x| *x == stat).ok_or_else(|| {
            format!(
                "unknown figure {stat:?} in {s:?}: one of {}",
                STATS.join(", ")
            )
        })?;
        Ok(Metric::Op(op, stat))
    }

    /// The run's value (microseconds for a latency).
    fn value(&self, r: &Report) -> f64 {
        let total: u64 = r.operations.iter().map(|o| o.count).sum();
        let failed: u64 = r.operations.iter().map(|o| o.failed).sum();
        let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        match self {
            Metric::Op(op, stat) => {
                let o = r.op(*op);
                let l = &o.latency_us;
                match *stat {
                    "p50" => l.p50 as f64,
                    "p90" => l.p90 as f64,
                    "p99" => l.p99 as f64,
                    "p99.9" => l.p999 as f64,
                    "max" => l.max as f64,
                    "mean" => l.mean,
                    "count" => o.count as f64,
                    "ok" => o.ok as f64,
                    "errors" => o.failed as f64,
                    "error_rate" => share(o.failed, o.count),
                    _ => o.rate_per_sec,
                }
            }
            Metric::Errors => failed as f64,
            Metric::ErrorRate => share(failed, total),
            Metric::Holds => r.holds.ok as f64,
            Metric::Conflicts => r.holds.conflicts as f64,
            Metric::ConflictRate => r.holds.conflict_ratio,
            Metric::Payments => r.payments.count as f64,
            Metric::PaymentsPerSec => r.payments.per_sec,
        }
    }
}

/// One `--fail-if` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    metric: Metric,
    cmp: Cmp,
    /// Microseconds for a latency, else the plain value.
    value: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_value(v: &str, kind: Kind, whole: &str) -> Result<f64, String> {
    let num = |s: &str| -> Result<f64, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("{whole:?}: {v:?} is not a number"))
    };
    match kind {
        Kind::Latency => {
            let (n, scale) = if let Some(n) = v.strip_suffix("us") {
                (n, 1.0)
            } else if let Some(n) = v.strip_suffix("ms") {
                (n, 1e3)
            } else if let Some(n) = v.strip_suffix('s') {
                (n, 1e6)
            } else {
                return Err(format!(
                    "{whole:?}: a latency needs a unit: us, ms or s (e.g. 50ms)"
                ));
            };
            Ok(num(n)? * scale)
        }
        Kind::Ratio => match v.strip_suffix('%') {
            Some(n) => Ok(num(n)? / 100.0),
            None => {
                let x = num(v)?;
                if x > 1.0 {
                    Err(format!(
                        "{whole:?}: a rate is 0 to 1, or a percentage such as 1%"
                    ))
                } else {
                    Ok(x)
                }
            }
        },
        Kind::Number => num(v),
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let pos = text.find(['<', '>']).ok_or_else(|| {
            format!("{s:?}: write METRIC OP VALUE with OP one of > >= < <=, e.g. 'hold.p99>50ms'")
        })?;
        let (metric, rest) = text.split_at(pos);
        let (cmp, value) = if let Some(v) = rest.strip_prefix(">=") {
            (Cmp::Ge, v)
        } else if let Some(v) = rest.strip_prefix("<=") {
            (Cmp::Le, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Cmp::Gt, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Cmp::Lt, v)
        } else {
            unreachable!("found < or > at pos")
        };
        if metric.is_empty() || value.is_empty() {
            return Err(format!(
                "{s:?}: write METRIC OP VALUE, e.g. 'hold.p99>50ms'"
            ));
        }
        let metric = Metric::parse(metric).map_err(|e| format!("--fail-if {e}"))?;
        let value = parse_value(value, metric.kind(), s)?;
        Ok(Threshold {
            text,
            metric,
            cmp,
            value,
        })
    }
}

/// A threshold that the run crossed, for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossed {
    /// The expression.
    pub threshold: String,
    /// The run's value, for people (`hold.p99 was 61 ms`).
    pub actual: String,
}

impl Threshold {
    /// The run's value, for people.
    fn actual(&self, r: &Report) -> String {
        let v = self.metric.value(r);
        match self.metric.kind() {
            Kind::Latency => crate::report::fmt_us(v.round() as u64),
            Kind::Ratio => format!("{:.2}%", v * 100.0),
            Kind::Number => {
                if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            }
        }
    }

    /// Whether the run crossed this threshold.
    pub fn crossed(&self, r: &Report) -> bool {
        self.cmp.holds(self.metric.value(r), self.value)
    }
}

/// Every threshold with the run's value and whether it was crossed, for the
/// report.
pub fn evaluate(thresholds: &[Threshold], report: &Report) -> Vec<crate::report::ThresholdReport> {
    thresholds
        .iter()
        .map(|t| crate::report::ThresholdReport {
            expression: t.text.clone(),
            value: t.actual(report),
            crossed: t.crossed(report),
        })
        .collect()
}

/// The thresholds `report` crossed.
pub fn check(thresholds: &[Threshold], report: &Report) -> Vec<Crossed> {
    thresholds
        .iter()
        .filter(|t| t.crossed(report))
        .map(|t| Crossed {
            threshold: t.text.clone(),
            actual: format!("{} was {}", metric_text(&t.text, t.cmp), t.actual(report)),
        })
        .collect()
}

fn metric_text(text: &str, cmp: Cmp) -> &str {
    text.split(cmp.symbol()).next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_with_units() {
        let t: Threshold = "hold.p99 > 50ms".parse().expect("valid");
        assert_eq!(t.metric, Metric::Op(Op::Hold, "p99"));
        assert_eq!(t.cmp, Cmp::Gt);
        assert_eq!(t.value, 50_000.0);
        assert_eq!(t.to_string(), "hold.p99>50ms");
        let t: Threshold = "pay.p99.9>=1.5s".parse().expect("valid");
        assert_eq!((t.cmp, t.value), (Cmp::Ge, 1_500_000.0));
        let t: Threshold = "issue.p50<=250us".parse().expect("valid");
        assert_eq!((t.cmp, t.value), (Cmp::Le, 250.0));
        let t: Threshold = "error_rate>1%".parse().expect("valid");
        assert_eq!(t.value, 0.01);
        let t: Threshold = "payments<10".parse().expect("valid");
        assert_eq!((t.cmp, t.value), (Cmp::Lt, 10.0));
    }

    #[test]
    fn malformed_expressions_say_what_is_wrong() {
        let e = |s: &str| s.parse::<Threshold>().expect_err(s);
        assert!(
            e("hold.p99").contains("METRIC OP VALUE"),
            "{}",
            e("hold.p99")
        );
        assert!(e("hold.p99>50").contains("unit"), "{}", e("hold.p99>50"));
        assert!(e("hodl.p99>5ms").contains("unknown operation"));
        assert!(e("hold.p98>5ms").contains("unknown figure"));
        assert!(e("latency>5ms").contains("unknown metric"));
        assert!(e("error_rate>2").contains("percentage"));
        assert!(
            e("hold.p99>quickms").contains("not a number"),
            "{}",
            e("hold.p99>quickms")
        );
        assert!(e(">5ms").contains("METRIC OP VALUE"));
        assert!(e("hold.p99>-5ms").contains("not a number"));
    }
}
