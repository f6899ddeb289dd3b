//! Load plans (`500,30s;2000,1m;0,10s`: ramp to 500 users over 30 s, then to 2,000
//! over a minute, then down to none over 10 s) and durations (`500ms`, `30s`,
//! `2m`, `1h`; a bare number is seconds).

use std::fmt;
use std::time::Duration;

/// The most virtual users a plan may ask for.
pub const MAX_USERS: u32 = 1_000_000;

/// The longest a plan may last.
pub const MAX_PLAN: Duration = Duration::from_secs(7 * 86_400);

/// One step: move linearly from the previous step's users to `users` over `over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Users at the end of the step.
    pub users: u32,
    /// How long the step lasts.
    pub over: Duration,
}

/// A load plan: steps from zero users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    /// A plan from its steps.
    ///
    /// # Errors
    /// When there is no step, a step asks for more than [`MAX_USERS`], or the plan
    /// lasts nothing or more than [`MAX_PLAN`].
    pub fn new(steps: Vec<Step>) -> Result<Plan, String> {
        if steps.is_empty() {
            return Err("a plan needs at least one step".into());
        }
        if let Some(s) = steps.iter().find(|s| s.users > MAX_USERS) {
            return Err(format!("{} users: at most {MAX_USERS}", s.users));
        }
        let total: Duration = steps.iter().map(|s| s.over).sum();
        if total.is_zero() {
            return Err("a plan must last some time".into());
        }
        if total > MAX_PLAN {
            return Err("a plan lasts at most 7 days".into());
        }
        Ok(Plan { steps })
    }

    /// `users` users, reached linearly over `ramp`, kept until `duration` has
    /// passed since the start.
    ///
    /// # Errors
    /// As [`Plan::new`].
    pub fn constant(users: u32, duration: Duration, ramp: Duration) -> Result<Plan, String> {
        let ramp = ramp.min(duration);
        let mut steps = Vec::new();
        if !ramp.is_zero() {
            steps.push(Step { users, over: ramp });
        }
        if duration > ramp {
            steps.push(Step {
                users,
                over: duration - ramp,
            });
        }
        if ramp.is_zero() && steps.len() == 1 {
            // From 0 to `users` at once: a step of no length first.
            steps.insert(
                0,
                Step {
                    users,
                    over: Duration::ZERO,
                },
            );
        }
        Plan::new(steps)
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How long the plan lasts.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.over).sum()
    }

    /// The most users the plan ever asks for.
    pub fn peak(&self) -> u32 {
        self.steps.iter().map(|s| s.users).max().unwrap_or(0)
    }

    /// How many users should be running `t` after the start (0 after the end).
    pub fn users_at(&self, t: Duration) -> u32 {
        let mut from = 0u32;
        let mut start = Duration::ZERO;
        for s in &self.steps {
            let end = start + s.over;
            if t < end {
                let f = (t - start).as_secs_f64() / s.over.as_secs_f64();
                let v = f64::from(from) + (f64::from(s.users) - f64::from(from)) * f;
                return v.round().clamp(0.0, f64::from(MAX_USERS)) as u32;
            }
            from = s.users;
            start = end;
        }
        0
    }
}

impl std::str::FromStr for Plan {
    type Err = String;

    fn from_str(s: &str) -> Result<Plan, String> {
        let mut steps = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (users, over) = part
                .split_once(',')
                .ok_or_else(|| format!("{part:?}: a step is USERS,DURATION (e.g. 500,30s)"))?;
            let users: u32 = users
                .trim()
                .parse()
                .map_err(|_| format!("{users:?}: not a number of users"))?;
            steps.push(Step {
                users,
                over: parse_duration(over)?,
            });
        }
        Plan::new(steps)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| format!("{},{}", s.users, format_duration(s.over)))
            .collect();
        f.write_str(&parts.join(";"))
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds (`1.5`).
///
/// # Errors
/// For anything else, or a negative or absurd duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1_000.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not a duration (use 500ms, 30s, 2m or 1h)"))?;
    let ms = v * unit_ms;
    if !ms.is_finite() || ms < 0.0 || ms > MAX_PLAN.as_millis() as f64 {
        return Err(format!("{s:?}: out of range (0 to 7 days)"));
    }
    Ok(Duration::from_micros((ms * 1_000.0).round() as u64))
}

/// `1m30s`-style text for a duration, at millisecond precision.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1_000) {
        return format!("{ms}ms");
    }
    let s = ms / 1_000;
    if s.is_multiple_of(3_600) && s > 0 {
        format!("{}h", s / 3_600)
    } else if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn plans_parse_and_interpolate() {
        let p: Plan = "500,30s;2000,1m;0,10s".parse().unwrap();
        assert_eq!(p.total(), 100 * S);
        assert_eq!(p.peak(), 2_000);
        assert_eq!(p.users_at(Duration::ZERO), 0);
        assert_eq!(p.users_at(15 * S), 250);
        assert_eq!(p.users_at(30 * S), 500);
        assert_eq!(p.users_at(60 * S), 1_250);
        assert_eq!(p.users_at(95 * S), 1_000);
        assert_eq!(p.users_at(100 * S), 0);
        assert_eq!(p.to_string(), "500,30s;2000,1m;0,10s");
    }

    #[test]
    fn bad_plans_are_refused_with_a_reason() {
        for bad in ["", "500", "x,1s", "5,1y", "0,0s", "2000000,1s", "1,8d"] {
            let e = bad.parse::<Plan>().unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_constant_plan_ramps_then_holds() {
        let p = Plan::constant(100, 10 * S, 2 * S).unwrap();
        assert_eq!(p.users_at(S), 50);
        assert_eq!(p.users_at(5 * S), 100);
        assert_eq!(p.users_at(10 * S), 0);
        let at_once = Plan::constant(7, 3 * S, Duration::ZERO).unwrap();
        assert_eq!(at_once.users_at(Duration::ZERO), 7);
        assert_eq!(at_once.total(), 3 * S);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(30 * S));
        assert_eq!(parse_duration("2m"), Ok(120 * S));
        assert_eq!(parse_duration("1h"), Ok(3_600 * S));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1_500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(format_duration(90 * S), "90s");
        assert_eq!(format_duration(120 * S), "2m");
    }
}
