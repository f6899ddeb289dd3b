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
    Axis, Block, Cell, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Table, Wrap,
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
    if us >= 10_000 {
        format!("{:.0}", us as f64 / 1000.0)
    } else {
        format!("{:.1}", us as f64 / 1000.0)
    }
}

/// One progress line.
pub fn progress_line(live: &Live, s: &Snapshot) -> String {
    let sec = last_second(s);
    let q = s.queue.unwrap_or_default();
    let cap = q
        .max_active
        .map_or_else(|| "-".to_owned(), |c| c.to_string());
    let errors: u64 = s.errors.values().sum();
    format!(
        "[{:>6}/{}] users {} (waiting {}, active {}/{}) | holds {}/s conflicts {}/s pay {}/s | p99 hold {} ms pay {} ms | paid {} expired {} errors {}{}{}",
        format_duration(Duration::from_secs(s.elapsed.as_secs())),
        format_duration(live.info.plan_total),
        s.n_users_in_flight(),
        q.waiting,
        q.active,
        cap,
        sec.n_holds,
        sec.n_conflicts,
        sec.n_payments,
        ms(s.op(Op::Hold).latency.p99_us),
        ms(s.op(Op::Pay).latency.p99_us),
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
        }
    )
}

/// The on-sale scenario's headline figures so far: seats sold of the
/// capacity, when it sold out, users answered, purchase p99, polls last second.
pub fn onsale_headline(s: &Snapshot, users: u32) -> String {
    let at =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!(
        "sold {}/{} (sold out at {}) · answered {}/{} (last at {}) · purchase p99 {} ms · polls {}/s",
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

fn draw(f: &mut Frame, live: &Live, s: &Snapshot, view: View) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(10),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, head, live, s);
    match view {
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
        tab("3", View::Seats, "seats & errors"),
        Span::raw("   Tab switch · p pause · q quit and print the summary").dark_gray(),
    ]);
    f.render_widget(Paragraph::new(line), foot);
}

fn draw_header(f: &mut Frame, area: Rect, live: &Live, s: &Snapshot) {
    let total = live.info.plan_total;
    let elapsed = s.elapsed.min(total);
    let state = if live.control.is_stopping() {
        Span::styled(" STOPPING ", Style::new().black().on_red())
    } else if live.control.is_paused() {
        Span::styled(" PAUSED ", Style::new().black().on_yellow())
    } else {
        Span::styled(" RUNNING ", Style::new().black().on_green())
    };
    let line1 = Line::from(vec![
        Span::styled("booking-sim ", Style::new().bold()),
        state,
        Span::raw(format!(
            "  {} · seed {} · plan {}",
            live.info.target, live.info.seed, live.info.plan
        )),
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
            format_duration(Duration::from_secs(total.saturating_sub(elapsed).as_secs()))
        );
        (ratio, label)
    };
    let [a, b] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)])
        .areas(area.inner(ratatui::layout::Margin::new(1, 0)));
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
        Layout::horizontal([Constraint::Length(38), Constraint::Min(30)]).areas(top);
    draw_queue(f, queue, s);
    draw_chart(f, chart, s);
    let [ops, totals] =
        Layout::horizontal([Constraint::Min(50), Constraint::Length(38)]).areas(bottom);
    draw_op_table(f, ops, s, false);
    draw_totals(f, totals, s);
}

fn draw_queue(f: &mut Frame, area: Rect, s: &Snapshot) {
    let q = s.queue.unwrap_or_default();
    let cap = q.max_active;
    let lines = vec![
        kv("waiting (queue length)", q.waiting.to_string()),
        kv("admitted so far", q.serving.to_string()),
        kv(
            "active now",
            match cap {
                Some(c) => format!("{} / {c}", q.active),
                None => q.active.to_string(),
            },
        ),
        kv("admission rate", format!("{:.1}/s", q.admit_rate_per_sec)),
        kv("tokens issued", q.issued.to_string()),
        Line::raw(""),
        kv("visits in flight", s.n_users_in_flight().to_string()),
        kv("visits started", s.n_users_started.to_string()),
        kv("told admitted", s.n_users_admitted.to_string()),
    ];
    let block = Block::bordered().title(" Waiting room ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [text, gauge] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    f.render_widget(Paragraph::new(lines), text);
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
        Span::raw(format!("{k:<24}")).dark_gray(),
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

fn op_row(o: &OpFigures, full: bool) -> Row<'static> {
    let l = &o.latency;
    let refused: u64 = o.refused.values().sum();
    let failed: u64 = o.failed.values().sum();
    let mut cells = vec![
        Cell::from(o.name),
        Cell::from(format!("{:.0}", o.rate_last_sec)),
        Cell::from(o.n_total.to_string()),
    ];
    if full {
        cells.push(Cell::from(o.n_ok.to_string()));
        cells.push(Cell::from(refused.to_string()));
    }
    cells.push(Cell::from(failed.to_string()).style(if failed > 0 {
        Style::new().red()
    } else {
        Style::new()
    }));
    cells.push(Cell::from(ms(l.p50_us)));
    cells.push(Cell::from(ms(l.p90_us)));
    cells.push(Cell::from(ms(l.p99_us)));
    if full {
        cells.push(Cell::from(ms(l.p999_us)));
    }
    cells.push(Cell::from(ms(l.max_us)));
    Row::new(cells)
}

fn draw_op_table(f: &mut Frame, area: Rect, s: &Snapshot, full: bool) {
    let mut header = vec!["operation", "ops/s", "count"];
    if full {
        header.extend(["ok", "refused"]);
    }
    header.extend(["errors", "p50 ms", "p90 ms", "p99 ms"]);
    if full {
        header.push("p99.9 ms");
    }
    header.push("max ms");
    let widths: Vec<Constraint> = header
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if i == 0 {
                Constraint::Length(10)
            } else {
                Constraint::Length(9)
            }
        })
        .collect();
    let rows: Vec<Row> = s.ops.iter().map(|o| op_row(o, full)).collect();
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(
            Block::bordered().title(" Operations (latency of every call, whatever its outcome) "),
        );
    f.render_widget(table, area);
}

fn draw_totals(f: &mut Frame, area: Rect, s: &Snapshot) {
    let t = s.totals;
    let errors: u64 = s.errors.values().sum();
    let lines = vec![
        kv("holds", t.n_holds.to_string()),
        kv("conflicts (seat taken)", t.n_conflicts.to_string()),
        kv("payments", t.n_payments.to_string()),
        kv("paid (minor units)", s.paid_amount.to_string()),
        kv("holds left to expire", s.n_expirations.to_string()),
        kv("errors", errors.to_string()),
        kv(
            "dates / free seats",
            format!("{} / {}", s.n_dates, s.n_seats_free),
        ),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Totals ")),
        area,
    );
}

fn draw_operations(f: &mut Frame, area: Rect, s: &Snapshot) {
    let [table, outcomes] =
        Layout::vertical([Constraint::Length(14), Constraint::Min(3)]).areas(area);
    draw_op_table(f, table, s, true);
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
            let per_row = usize::from(heat.width.saturating_sub(8).max(10) / 3).min(25);
            for (r, chunk) in h.seats.chunks(per_row).enumerate() {
                let mut spans = vec![Span::raw(format!("{:>4} ", r * per_row + 1)).dark_gray()];
                for v in chunk {
                    let (text, style) = match v {
                        SeatView::Free => {
                            free += 1;
                            ("[ ]", Style::new().green())
                        }
                        SeatView::Held => {
                            held += 1;
                            ("[H]", Style::new().black().on_yellow())
                        }
                        SeatView::Sold => {
                            sold += 1;
                            ("[S]", Style::new().white().on_red())
                        }
                    };
                    spans.push(Span::styled(text, style));
                }
                lines.push(Line::from(spans));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled(format!(" free {free} "), Style::new().green()),
                Span::styled(format!(" held {held} "), Style::new().black().on_yellow()),
                Span::styled(format!(" sold {sold} "), Style::new().white().on_red()),
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
