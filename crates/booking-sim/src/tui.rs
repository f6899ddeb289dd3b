//! What the run shows while it goes: the terminal dashboard (ratatui + crossterm)
//! or a progress line a second. Both run on a thread of their own and only read
//! the aggregator's latest [`Snapshot`], so drawing never slows the workers.
//!
//! Keys: `q` (or Ctrl-C) stops the run and prints the summary, `p` pauses and
//! resumes the users, `1` `2` `3` or Tab switch views (overview, operations,
//! seats and errors).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Table, Wrap,
};

use crate::events::Op;
use crate::plan::format_duration;
use crate::run::Live;
use crate::stats::{OpFigures, Second, Snapshot};
use crate::target::SeatView;

/// Frames per second of the dashboard.
pub const FPS: u32 = 10;

fn snapshot(live: &Live) -> Snapshot {
    live.snapshot
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// The last complete second, if any.
fn last_second(s: &Snapshot) -> Second {
    let n = s.recent.len();
    if n >= 2 {
        s.recent[n - 2]
    } else {
        Second::default()
    }
}

fn ms(us: u64) -> String {
    crate::report::fmt_us(us)
}

/// A count with thousands separators: `1,375,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn thousands_i(n: i64) -> String {
    if n < 0 {
        format!("-{}", thousands(n.unsigned_abs()))
    } else {
        thousands(n as u64)
    }
}

/// The run's clock as people see it at `now`: elapsed and remaining time,
/// without the time spent paused.
pub fn run_clock(live: &Live, now: Instant) -> (Duration, Duration) {
    let total = live.info.plan_total;
    let elapsed = now
        .saturating_duration_since(live.info.start)
        .saturating_sub(live.control.paused_for(now))
        .min(total);
    (elapsed, total.saturating_sub(elapsed))
}

/// One progress line.
pub fn progress_line(live: &Live, s: &Snapshot) -> String {
    let sec = last_second(s);
    let q = s.queue.unwrap_or_default();
    let cap = q
        .max_active
        .map_or_else(|| "-".to_owned(), |c| c.to_string());
    let errors: u64 = s.errors.values().sum();
    let (elapsed, _) = run_clock(live, Instant::now());
    format!(
        "[{:>6}/{}] users {} (waiting {}, active {}/{}) | holds {}/s conflicts {}/s pay {}/s | p99 last second: hold {} pay {} | paid {} walked away {} errors {}{}{}{}",
        format_duration(Duration::from_secs(elapsed.as_secs())),
        format_duration(live.info.plan_total),
        s.n_users_in_flight(),
        q.waiting,
        q.active,
        cap,
        sec.n_holds,
        sec.n_conflicts,
        sec.n_payments,
        ms(s.op(Op::Hold).latency_last_sec.p99_us),
        ms(s.op(Op::Pay).latency_last_sec.p99_us),
        s.totals.n_payments,
        s.n_expirations,
        errors,
        match live.info.onsale_users {
            Some(users) => format!(" | {}", onsale_headline(s, users)),
            None => String::new(),
        } + &top_errors(s),
        if live.control.is_paused() {
            " (paused)"
        } else {
            ""
        },
        rate_limit_hint(s)
    )
}

/// What a run against a rate-limiting server is told, once (empty otherwise).
pub fn rate_limit_hint(s: &Snapshot) -> String {
    let limited: u64 = s
        .errors
        .iter()
        .filter(|(k, _)| k.ends_with("/rate_limited"))
        .map(|(_, v)| v)
        .sum();
    if limited == 0 {
        String::new()
    } else {
        format!(
            " | {limited} answers were 429: {}",
            crate::http::RATE_LIMIT_HINT
        )
    }
}

/// The on-sale scenario's headline figures so far: seats sold of the
/// capacity, when it sold out, users answered, purchase p99, polls last second.
pub fn onsale_headline(s: &Snapshot, users: u32) -> String {
    let at =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!(
        "sold {}/{} (sold out at {}) · answered {}/{} (last at {}) · purchase p99 {} · polls {}/s",
        s.totals.n_payments,
        s.capacity,
        at(s.sold_out_after),
        s.n_answered,
        users,
        at(s.last_answer_after),
        ms(s.purchase.p99_us),
        last_second(s).n_polls
    )
}

/// The two most frequent failures with the latest message of each, for a
/// progress line: ` (issue/transport 812: error sending request...; ...)`.
fn top_errors(s: &Snapshot) -> String {
    let top = s.top_errors(2);
    if top.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = top
        .iter()
        .map(|(k, n, sample)| match sample {
            // Said once, at the end of the line.
            Some(_) if k.ends_with("/rate_limited") => format!("{k} {n}"),
            Some(m) => format!("{k} {n}: {}", clip(m, 120)),
            None => format!("{k} {n}"),
        })
        .collect();
    format!(" ({})", parts.join("; "))
}

/// The last `n` characters of `s`, after an ellipsis when cut: a failure's
/// message ends with its root cause ("... tcp connect error: Connection
/// refused").
fn clip(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        s.to_owned()
    } else {
        let tail: String = s.chars().skip(len - n).collect();
        format!("...{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunInfo;
    use crate::target::QueueSample;
    use ratatui::backend::TestBackend;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    fn live(plan_total: Duration) -> Live {
        // 75.5 s ago: the header shows 75 s whatever the test's own pace.
        live_from(plan_total, Instant::now() - Duration::from_millis(75_500))
    }

    fn live_from(plan_total: Duration, start: Instant) -> Live {
        Live {
            snapshot: Arc::new(Mutex::new(Snapshot::default())),
            control: Arc::new(crate::user::Control::default()),
            finished: AtomicBool::new(false),
            info: RunInfo {
                target: "HTTP, 3 spawned on postgres".into(),
                seed: 1_733_000_000_123_456_789,
                plan: "500 users over 30s, 2000 users over 1m, 0 users over 10s".into(),
                plan_total,
                onsale_users: None,
                start,
            },
        }
    }

    /// A busy run's figures: large counts, sub-millisecond and slow latencies.
    fn busy() -> Snapshot {
        let mut s = Snapshot {
            elapsed: Duration::from_secs(75),
            ..Snapshot::default()
        };
        for (i, op) in Op::ALL.iter().enumerate() {
            let i = i as u64;
            s.ops.push(OpFigures {
                name: op.name(),
                n_total: 12_345_678 + i,
                n_ok: 12_000_000,
                rate_last_sec: 9_876.0,
                failed: [("timeout", 4_321)].into_iter().collect(),
                latency: crate::stats::Latency {
                    p50_us: 19,
                    p90_us: 420,
                    p99_us: 12_500,
                    p999_us: 250_000,
                    max_us: 1_250_000 + i,
                    mean_us: 100.0,
                },
                ..OpFigures::default()
            });
        }
        s.totals = Second {
            n_holds: 2_345_678,
            n_conflicts: 987_654,
            n_payments: 1_375_000,
            ..Second::default()
        };
        s.paid_amount = 6_875_000_000;
        s.n_expirations = 123_456;
        s.errors.insert("hold/timeout".into(), 47_531);
        s.n_dates = 1_234;
        s.n_seats_free = 45_678;
        s.n_users_started = 3_456_789;
        s.n_users_admitted = 3_400_000;
        s.queue = Some(QueueSample {
            issued: 3_456_789,
            serving: 3_400_000,
            waiting: 56_789,
            active: 987,
            max_active: Some(1_000),
            admit_rate_per_sec: 1_234.5,
        });
        s
    }

    fn render(live: &Live, s: &Snapshot, w: u16, h: u16, view: View) -> String {
        let mut t = ratatui::Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| draw(f, live, s, view)).expect("draw");
        let buf = t.backend().buffer();
        let mut text = String::new();
        for y in 0..h {
            for x in 0..w {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn every_overview_figure_fits_from_80x24_to_200x50() {
        let live = live(Duration::from_secs(100));
        let s = busy();
        for (w, h) in [(80, 24), (120, 40), (140, 34), (130, 36), (200, 50)] {
            let text = render(&live, &s, w, h, View::Overview);
            // Each figure whole, beside its name, followed by a blank or a border.
            let shown = |key: &str, value: &str| {
                text.lines().any(|l| {
                    l.find(key).is_some_and(|i| {
                        let rest = &l[i + key.len()..];
                        let rest = rest.trim_start();
                        rest.starts_with(value)
                            && rest[value.len()..]
                                .chars()
                                .next()
                                .is_none_or(|c| c == ' ' || c == '│')
                    })
                })
            };
            for (key, value) in [
                ("waiting (queue)", "56,789"),
                ("admitted so far", "3,400,000"),
                ("active now", "987 / 1,000 (99%)"),
                ("admission rate", "1234.5/s"),
                ("tokens issued", "3,456,789"),
                ("visits started", "3,456,789"),
                ("holds", "2,345,678"),
                ("conflicts (taken)", "987,654"),
                ("payments", "1,375,000"),
                ("paid (minor units)", "6,875,000,000"),
                ("holds walked away", "123,456"),
                ("errors", "47,531"),
                ("dates / free seats", "1,234 / 45,678"),
                ("elapsed", "75s · remaining 25s"),
            ] {
                assert!(shown(key, value), "{w}x{h}: {key} {value} missing:\n{text}");
            }
            for (i, op) in Op::ALL.iter().enumerate() {
                let count = thousands(12_345_678 + i as u64);
                let row = format!("{:<9} 9876   {count} 4,321", op.name());
                assert!(text.contains(&row), "{w}x{h}: {row:?} missing:\n{text}");
                assert!(
                    shown(&row, "19 us"),
                    "{w}x{h}: {row} latency missing:\n{text}"
                );
            }
            for latency in ["12.5 ms", "1.25 s"] {
                assert_eq!(
                    text.matches(latency).count(),
                    Op::ALL.len(),
                    "{w}x{h}: {latency}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn the_operations_view_fits_at_80x24() {
        let live = live(Duration::from_secs(100));
        let text = render(&live, &busy(), 80, 24, View::Operations);
        for (i, op) in Op::ALL.iter().enumerate() {
            let count = thousands(12_345_678 + i as u64);
            let row = format!(
                "{:<9} 9876   {count} 4,321      19 us      12.5 ms    1.25 s",
                op.name()
            );
            assert!(text.contains(&row), "{row:?} missing:\n{text}");
        }
        // Wide enough for every column.
        let text = render(&live, &busy(), 130, 36, View::Operations);
        for (i, op) in Op::ALL.iter().enumerate() {
            let count = thousands(12_345_678 + i as u64);
            let row = format!(
                "{:<9} {:<6} {count:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} 1.25 s",
                op.name(),
                "9876",
                "12,000,000",
                "0",
                "4,321",
                "19 us",
                "420 us",
                "12.5 ms",
                "250 ms"
            );
            assert!(text.contains(&row), "{row:?} missing:\n{text}");
        }
    }

    #[test]
    fn the_seat_map_uses_the_cli_legend_at_80x24() {
        let live = live(Duration::from_secs(100));
        let mut s = busy();
        s.heat = Some(crate::stats::HeatMap {
            schedule: 7,
            n_attempts: 1_234,
            seats: (0..50)
                .map(|i| match i % 3 {
                    0 => SeatView::Free,
                    1 => SeatView::Held,
                    _ => SeatView::Sold,
                })
                .collect(),
        });
        let text = render(&live, &s, 80, 24, View::Seats);
        for legend in [". free 17", "h held 17", "X sold 16"] {
            assert!(text.contains(legend), "{legend:?}:\n{text}");
        }
        assert!(text.contains("1 . h X . h X"), "{text}");
        assert!(!text.contains("[H]") && !text.contains("[S]"), "{text}");
    }

    #[test]
    fn a_header_too_long_for_the_terminal_is_marked_cut() {
        let live = live(Duration::from_secs(100));
        let text = render(&live, &busy(), 80, 24, View::Overview);
        let first = text.lines().next().expect("a line");
        assert!(first.contains('…'), "{first}");
    }

    #[test]
    fn the_clock_stops_while_paused() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let live = live_from(Duration::from_secs(100), start);
        assert_eq!(run_clock(&live, at(10)).0.as_secs(), 10);
        live.control.set_paused_at(true, at(10));
        // Thirty seconds paused: the clock shows 10 s all along.
        for t in [10, 25, 40] {
            let (elapsed, remaining) = run_clock(&live, at(t));
            assert_eq!(
                (elapsed.as_secs(), remaining.as_secs()),
                (10, 90),
                "at {t} s"
            );
        }
        live.control.set_paused_at(false, at(40));
        let (elapsed, remaining) = run_clock(&live, at(45));
        assert_eq!((elapsed.as_secs(), remaining.as_secs()), (15, 85));
        assert_eq!(
            run_clock(&live, at(500)).1,
            Duration::ZERO,
            "never below zero"
        );
    }

    #[test]
    fn the_progress_line_shows_the_last_second_in_microseconds() {
        let live = live(Duration::from_secs(100));
        let mut s = busy();
        s.ops[Op::Hold.index()].latency_last_sec.p99_us = 19;
        s.ops[Op::Pay.index()].latency_last_sec.p99_us = 420;
        let line = progress_line(&live, &s);
        assert!(
            line.contains("p99 last second: hold 19 us pay 420 us"),
            "{line}"
        );
        assert!(!line.contains("12.5 ms"), "not the cumulative p99: {line}");
        assert!(!line.contains("429"), "{line}");
        s.errors.insert("issue/rate_limited".into(), 989);
        s.error_samples.insert(
            "issue/rate_limited".into(),
            "429 Too Many Requests: hint".into(),
        );
        let line = progress_line(&live, &s);
        assert_eq!(
            line.matches("--rate-limit-ip 0").count(),
            1,
            "said once: {line}"
        );
        assert!(line.contains("989 answers were 429"), "{line}");
    }

    #[test]
    fn clipped_messages_keep_their_root_cause() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(
            clip("error sending request: tcp connect error: refused", 20),
            "...nnect error: refused"
        );
    }
}

/// Prints a progress line to standard error every second until the load phase is
/// over.
pub fn spawn_progress(live: Arc<Live>) -> JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        let mut next = Instant::now() + Duration::from_secs(1);
        while !live.finished.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() >= next {
                next += Duration::from_secs(1);
                eprintln!("{}", progress_line(&live, &snapshot(&live)));
            }
        }
        Ok(())
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Overview,
    Operations,
    Seats,
}

/// Runs the dashboard until the load phase is over, or `q`.
pub fn spawn_dashboard(live: Arc<Live>) -> JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        let mut terminal = ratatui::init();
        let r = dashboard_loop(&mut terminal, &live);
        ratatui::restore();
        r
    })
}

fn dashboard_loop(terminal: &mut ratatui::DefaultTerminal, live: &Live) -> io::Result<()> {
    let frame = Duration::from_secs(1) / FPS;
    let mut view = View::Overview;
    loop {
        let started = Instant::now();
        if live.finished.load(Ordering::Acquire) {
            return Ok(());
        }
        let s = snapshot(live);
        terminal.draw(|f| draw(f, live, &s, view))?;
        while let Some(left) = frame.checked_sub(started.elapsed()) {
            if !event::poll(left)? {
                break;
            }
            let Event::Key(k) = event::read()? else {
                continue;
            };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            match k.code {
                KeyCode::Char('q') | KeyCode::Esc => live.control.stop(),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    live.control.stop();
                }
                KeyCode::Char('p') | KeyCode::Char(' ') => {
                    live.control.set_paused(!live.control.is_paused());
                }
                KeyCode::Char('1') => view = View::Overview,
                KeyCode::Char('2') => view = View::Operations,
                KeyCode::Char('3') => view = View::Seats,
                KeyCode::Tab => {
                    view = match view {
                        View::Overview => View::Operations,
                        View::Operations => View::Seats,
                        View::Seats => View::Overview,
                    };
                }
                _ => {}
            }
        }
    }
}

/// Whether the dashboard lays itself out for a small terminal (80x24 and up to
/// this): no chart on the overview, fewer latency columns, shorter labels. The
/// full overview needs 130 columns for its operations table beside the totals,
/// and 36 rows for every operation's row.
fn is_narrow(area: Rect) -> bool {
    area.width < 130 || area.height < 36
}

fn draw(f: &mut Frame, live: &Live, s: &Snapshot, view: View) {
    let narrow = is_narrow(f.area());
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(10),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, head, live, s);
    match view {
        View::Overview if narrow => draw_overview_narrow(f, body, s),
        View::Overview => draw_overview(f, body, s),
        View::Operations => draw_operations(f, body, s),
        View::Seats => draw_seats(f, body, s),
    }
    let tab = |n: &str, v: View, name: &str| {
        let style = if v == view {
            Style::new().reversed()
        } else {
            Style::new()
        };
        Span::styled(format!(" {n} {name} "), style)
    };
    let line = Line::from(vec![
        tab("1", View::Overview, "overview"),
        tab("2", View::Operations, "operations"),
        tab(
            "3",
            View::Seats,
            if narrow { "seats" } else { "seats & errors" },
        ),
        Span::raw(if narrow {
            "  p pause · q quit"
        } else {
            "   Tab switch · p pause · q quit and print the summary"
        })
        .dark_gray(),
    ]);
    f.render_widget(Paragraph::new(line), foot);
}

/// `text` cut to `width` characters, the cut marked with an ellipsis.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn draw_header(f: &mut Frame, area: Rect, live: &Live, s: &Snapshot) {
    let total = live.info.plan_total;
    let (elapsed, remaining) = run_clock(live, Instant::now());
    let state = if live.control.is_stopping() {
        Span::styled(" STOPPING ", Style::new().black().on_red())
    } else if live.control.is_paused() {
        Span::styled(" PAUSED ", Style::new().black().on_yellow())
    } else {
        Span::styled(" RUNNING ", Style::new().black().on_green())
    };
    let inner = area.inner(ratatui::layout::Margin::new(1, 0));
    let about = format!(
        "  {} · seed {} · plan {}",
        live.info.target, live.info.seed, live.info.plan
    );
    let room = usize::from(inner.width).saturating_sub(12 + 10);
    let line1 = Line::from(vec![
        Span::styled("booking-sim ", Style::new().bold()),
        state,
        Span::raw(fit(&about, room)),
    ]);
    let (ratio, label) = if let Some(users) = live.info.onsale_users {
        // On sale: the gauge is users answered; the label the headline figures.
        let ratio = (s.n_answered as f64 / f64::from(users.max(1))).clamp(0.0, 1.0);
        (ratio, onsale_headline(s, users))
    } else {
        let ratio = if total.is_zero() {
            0.0
        } else {
            (elapsed.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0)
        };
        let label = format!(
            "elapsed {} · remaining {}",
            format_duration(Duration::from_secs(elapsed.as_secs())),
            // Whole seconds that add up to the plan.
            format_duration(Duration::from_secs(
                (elapsed + remaining)
                    .as_secs()
                    .saturating_sub(elapsed.as_secs())
            ))
        );
        (ratio, label)
    };
    let label = fit(&label, usize::from(inner.width));
    let [a, b] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
    f.render_widget(Paragraph::new(line1), a);
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::new().cyan())
            .ratio(ratio)
            .label(label),
        b,
    );
}

fn draw_overview(f: &mut Frame, area: Rect, s: &Snapshot) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [queue, chart] =
        Layout::horizontal([Constraint::Length(42), Constraint::Min(30)]).areas(top);
    draw_queue(f, queue, s);
    draw_chart(f, chart, s);
    let [ops, totals] =
        Layout::horizontal([Constraint::Min(50), Constraint::Length(42)]).areas(bottom);
    draw_op_table(f, ops, s, Columns::Usual);
    draw_totals(f, totals, s, Block::bordered().title(" Totals "));
}

/// The overview on a small terminal (80x24): the waiting room and the totals
/// side by side, every operation below with its main figures; no chart (view 1
/// on a wider terminal has it).
fn draw_overview_narrow(f: &mut Frame, area: Rect, s: &Snapshot) {
    let [top, bottom] = Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(area);
    let [queue, totals] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let block = |t: &'static str| Block::new().borders(Borders::TOP).title(t);
    f.render_widget(
        Paragraph::new(queue_lines(s, true)).block(block(" Waiting room ")),
        queue,
    );
    draw_totals(f, totals, s, block(" Totals "));
    draw_op_table(f, bottom, s, Columns::Few);
}

fn queue_lines(s: &Snapshot, narrow: bool) -> Vec<Line<'static>> {
    let q = s.queue.unwrap_or_default();
    let active = match q.max_active {
        Some(c) => format!(
            "{} / {} ({:.0}%)",
            thousands(q.active),
            thousands(u64::from(c)),
            100.0 * q.active as f64 / f64::from(c.max(1))
        ),
        None => thousands(q.active),
    };
    let mut lines = vec![
        kv("waiting (queue)", thousands(q.waiting)),
        kv("admitted so far", thousands(q.serving)),
        kv("active now", active),
        kv("admission rate", format!("{:.1}/s", q.admit_rate_per_sec)),
        kv("tokens issued", thousands(q.issued)),
    ];
    if !narrow {
        lines.push(Line::raw(""));
    }
    lines.push(kv("visits now", thousands(s.n_users_in_flight())));
    lines.push(kv("visits started", thousands(s.n_users_started)));
    if !narrow {
        lines.push(kv("told admitted", thousands(s.n_users_admitted)));
    }
    lines
}

fn draw_queue(f: &mut Frame, area: Rect, s: &Snapshot) {
    let q = s.queue.unwrap_or_default();
    let cap = q.max_active;
    let block = Block::bordered().title(" Waiting room ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [text, gauge] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    f.render_widget(Paragraph::new(queue_lines(s, false)), text);
    if let Some(c) = cap {
        let ratio = (q.active as f64 / f64::from(c.max(1))).clamp(0.0, 1.0);
        f.render_widget(
            Gauge::default()
                .gauge_style(Style::new().magenta())
                .ratio(ratio)
                .label(format!("capacity {:.0}%", ratio * 100.0)),
            gauge,
        );
    }
}

fn kv(k: &str, v: String) -> Line<'static> {
    Line::from(vec![
        Span::raw(format!("{k:<19} ")).dark_gray(),
        Span::styled(v, Style::new().bold()),
    ])
}

fn draw_chart(f: &mut Frame, area: Rect, s: &Snapshot) {
    // Complete seconds only: the current one is still filling.
    let n = s.recent.len().saturating_sub(1);
    let first = s.elapsed.as_secs().saturating_sub(n as u64);
    let points = |g: fn(&Second) -> u64| -> Vec<(f64, f64)> {
        s.recent[..n]
            .iter()
            .enumerate()
            .map(|(i, x)| ((first + i as u64) as f64, g(x) as f64))
            .collect()
    };
    let holds = points(|x| x.n_holds);
    let conflicts = points(|x| x.n_conflicts);
    let payments = points(|x| x.n_payments);
    let ymax = holds
        .iter()
        .chain(&conflicts)
        .chain(&payments)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let x0 = first as f64;
    let x1 = (first + n.max(1) as u64) as f64;
    let data = vec![
        Dataset::default()
            .name("holds/s")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().green())
            .data(&holds),
        Dataset::default()
            .name("conflicts/s")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().red())
            .data(&conflicts),
        Dataset::default()
            .name("payments/s")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().cyan())
            .data(&payments),
    ];
    let chart = Chart::new(data)
        .block(Block::bordered().title(" Holds vs conflicts per second "))
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .labels([format!("{}s", first), format!("{}s", first + n as u64)])
                .style(Style::new().dark_gray()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, ymax])
                .labels(["0".to_owned(), format!("{:.0}", ymax)])
                .style(Style::new().dark_gray()),
        );
    f.render_widget(chart, area);
}

/// Which columns the operations table shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// A small terminal: rate, count, errors, p50, p99, max.
    Few,
    /// The overview: and p90.
    Usual,
    /// The operations view: and ok, refused, p99.9.
    All,
}

fn op_row(o: &OpFigures, cols: Columns) -> Row<'static> {
    let l = &o.latency;
    let refused: u64 = o.refused.values().sum();
    let failed: u64 = o.failed.values().sum();
    let mut cells = vec![
        Cell::from(o.name),
        Cell::from(format!("{:.0}", o.rate_last_sec)),
        Cell::from(thousands(o.n_total)),
    ];
    if cols == Columns::All {
        cells.push(Cell::from(thousands(o.n_ok)));
        cells.push(Cell::from(thousands(refused)));
    }
    cells.push(Cell::from(thousands(failed)).style(if failed > 0 {
        Style::new().red()
    } else {
        Style::new()
    }));
    cells.push(Cell::from(ms(l.p50_us)));
    if cols != Columns::Few {
        cells.push(Cell::from(ms(l.p90_us)));
    }
    cells.push(Cell::from(ms(l.p99_us)));
    if cols == Columns::All {
        cells.push(Cell::from(ms(l.p999_us)));
    }
    cells.push(Cell::from(ms(l.max_us)));
    Row::new(cells)
}

fn draw_op_table(f: &mut Frame, area: Rect, s: &Snapshot, cols: Columns) {
    let mut header = vec!["operation", "ops/s", "count"];
    if cols == Columns::All {
        header.extend(["ok", "refused"]);
    }
    header.extend(["errors", "p50"]);
    if cols != Columns::Few {
        header.push("p90");
    }
    header.push("p99");
    if cols == Columns::All {
        header.push("p99.9");
    }
    header.push("max");
    // Counts up to 99,999,999 and latencies such as "12.5 ms" or "1.25 s" fit.
    let widths: Vec<Constraint> = header
        .iter()
        .map(|h| match *h {
            "operation" => Constraint::Length(9),
            "ops/s" => Constraint::Length(6),
            _ => Constraint::Length(10),
        })
        .collect();
    let rows: Vec<Row> = s.ops.iter().map(|o| op_row(o, cols)).collect();
    let block = if cols == Columns::Few {
        Block::new()
            .borders(Borders::TOP)
            .title(" Operations (latency of every call) ")
    } else {
        Block::bordered().title(" Operations (latency of every call, whatever its outcome) ")
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(block);
    f.render_widget(table, area);
}

fn draw_totals(f: &mut Frame, area: Rect, s: &Snapshot, block: Block<'static>) {
    let t = s.totals;
    let errors: u64 = s.errors.values().sum();
    let lines = vec![
        kv("holds", thousands(t.n_holds)),
        kv("conflicts (taken)", thousands(t.n_conflicts)),
        kv("payments", thousands(t.n_payments)),
        kv("paid (minor units)", thousands_i(s.paid_amount)),
        kv("holds walked away", thousands(s.n_expirations)),
        kv("errors", thousands(errors)),
        kv(
            "dates / free seats",
            format!("{} / {}", thousands(s.n_dates), thousands(s.n_seats_free)),
        ),
    ];
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_operations(f: &mut Frame, area: Rect, s: &Snapshot) {
    let [table, outcomes] =
        Layout::vertical([Constraint::Length(14), Constraint::Min(3)]).areas(area);
    // On a small terminal, the columns that fit; the outcomes below say the rest.
    let cols = if area.width < 130 {
        Columns::Few
    } else {
        Columns::All
    };
    draw_op_table(f, table, s, cols);
    let mut lines = Vec::new();
    for o in &s.ops {
        let parts: Vec<String> = o
            .refused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .chain(o.failed.iter().map(|(k, v)| format!("{k} {v} (error)")))
            .collect();
        if !parts.is_empty() {
            lines.push(Line::from(vec![
                Span::styled(format!("{:<10}", o.name), Style::new().bold()),
                Span::raw(parts.join(", ")),
            ]));
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" Outcomes and errors by operation ")),
        outcomes,
    );
}

fn draw_seats(f: &mut Frame, area: Rect, s: &Snapshot) {
    let [heat, side] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(44)]).areas(area);
    let mut lines = Vec::new();
    let title = match &s.heat {
        Some(h) => {
            let (mut free, mut held, mut sold) = (0, 0, 0);
            let per_row = usize::from(heat.width.saturating_sub(8).max(10) / 2).min(25);
            for (r, chunk) in h.seats.chunks(per_row).enumerate() {
                let mut spans = vec![Span::raw(format!("{:>4} ", r * per_row + 1)).dark_gray()];
                for v in chunk {
                    let (text, style) = match v {
                        SeatView::Free => {
                            free += 1;
                            (". ", Style::new().green())
                        }
                        SeatView::Held => {
                            held += 1;
                            ("h ", Style::new().black().on_yellow())
                        }
                        SeatView::Sold => {
                            sold += 1;
                            ("X ", Style::new().white().on_red())
                        }
                    };
                    spans.push(Span::styled(text, style));
                }
                lines.push(Line::from(spans));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled(format!(" . free {free} "), Style::new().green()),
                Span::styled(format!(" h held {held} "), Style::new().black().on_yellow()),
                Span::styled(format!(" X sold {sold} "), Style::new().white().on_red()),
            ]));
            format!(
                " Seats of the busiest date (schedule {}, {} hold attempts) ",
                h.schedule, h.n_attempts
            )
        }
        None => " Seats ".to_owned(),
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        heat,
    );

    let [errs, ends] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(side);
    let mut e: Vec<Line> = Vec::new();
    for (k, n, sample) in s.top_errors(usize::MAX) {
        e.push(kv(k, n.to_string()));
        if let Some(m) = sample {
            e.push(Line::raw(format!("  {}", clip(m, 200))).dim());
        }
    }
    if e.is_empty() {
        e.push(Line::raw("none").green());
    }
    f.render_widget(
        Paragraph::new(e)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Errors by kind, latest message ")),
        errs,
    );
    let ends_lines: Vec<Line> = s
        .endings
        .iter()
        .map(|(k, v)| kv(k, v.to_string()))
        .collect();
    f.render_widget(
        Paragraph::new(ends_lines).block(Block::bordered().title(" Visits by ending ")),
        ends,
    );
    let _ = Color::Reset;
}
