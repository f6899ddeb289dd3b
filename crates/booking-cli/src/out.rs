//! Output: results on standard output (text or JSON), sentences for humans on
//! standard error, tables and the seat map.

use std::io::{IsTerminal, Write};

use booking_core::domain::{Amount, Seat, SeatState, Timestamp};
use serde::Serialize;

use crate::error::{CliError, CliResult};

/// Writes `text` and a newline to standard output. A closed pipe (`| head`) ends
/// the output quietly; it is not an error of the command.
pub fn print(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failure(format!("cannot write the output: {e}"))),
    }
}

/// Writes a sentence for a human to standard error.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Writes an error to standard error: `error: ` then `text`, the prefix in bold red
/// like clap's own errors when standard error is a terminal and `NO_COLOR` is not
/// set (<https://no-color.org>).
pub fn error(text: &str) {
    let stderr = std::io::stderr();
    let color = colored(stderr.is_terminal(), std::env::var_os("NO_COLOR"));
    let _ = writeln!(stderr.lock(), "{}{text}", error_prefix(color));
}

/// Whether to color: on a terminal, unless `NO_COLOR` is set to anything but "".
fn colored(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `error: `, in bold red when `color`.
fn error_prefix(color: bool) -> &'static str {
    if color {
        "\x1b[1m\x1b[31merror:\x1b[0m "
    } else {
        "error: "
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failure(format!("cannot write JSON: {e}")))?;
    print(&text)
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// `2026-06-01 19:00 UTC`.
/// An amount for people, as the web page shows it: the currency's smallest unit
/// with its digits grouped ("12,000", "-5,000").
pub fn amount(minor: i64) -> String {
    let digits = minor.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if minor < 0 {
        grouped.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(d);
    }
    grouped
}

/// A change of a balance for people: its sign always shown ("+5,000", "-12,000").
pub fn change(minor: i64) -> String {
    if minor >= 0 {
        format!("+{}", amount(minor))
    } else {
        amount(minor)
    }
}

pub fn when(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `19:04:31 UTC`.
pub fn clock_time(t: Timestamp) -> String {
    t.to_datetime().format("%H:%M:%S UTC").to_string()
}

/// A rough duration: `250 ms`, `45 s`, `3 min`, `2 h 5 min`.
pub fn rough(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) && d.subsec_millis() > 0 {
        return format!("{} ms", d.subsec_millis());
    }
    let s = d.as_secs_f64().ceil() as u64;
    match s {
        0..=89 => format!("{s} s"),
        90..=5_399 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h {} min", s / 3_600, (s % 3_600) / 60),
    }
}

/// The seat map: ten seats a row, one mark per seat, then the prices.
///
/// ```text
///            1  2  3  4  5  6  7  8  9 10
///    1-10    .  .  h  .  .  .  X  .  .  .
///   11-20    .  .  .  .  .  .  .  .  .  .
/// ```
pub fn seat_map(seats: &[Seat]) -> String {
    const PER_ROW: usize = 10;
    let label_w = seats
        .chunks(PER_ROW)
        .map(|row| row_label(row).len())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    let mut head = format!("{:label_w$} ", "");
    for i in 1..=PER_ROW.min(seats.len()) {
        head.push_str(&format!("{i:>3}"));
    }
    lines.push(head);
    for row in seats.chunks(PER_ROW) {
        let mut line = format!("{:>label_w$} ", row_label(row));
        for seat in row {
            let mark = match seat.state {
                SeatState::Free => '.',
                SeatState::Held { .. } => 'h',
                SeatState::Sold => 'X',
            };
            line.push_str(&format!("{mark:>3}"));
        }
        lines.push(line);
    }
    lines.push(String::new());
    lines.push(". free   h held   X sold".to_owned());
    lines.push(format!("prices: {}", price_runs(seats)));
    lines.join("\n")
}

fn row_label(row: &[Seat]) -> String {
    match (row.first(), row.last()) {
        (Some(a), Some(b)) if a.no != b.no => format!("{}-{}", a.no, b.no),
        (Some(a), _) => a.no.to_string(),
        _ => String::new(),
    }
}

/// `seats 1-10: 12,000, 11-50: 5,000`, or `5,000 each` when all are equal.
fn price_runs(seats: &[Seat]) -> String {
    let mut runs: Vec<(u16, u16, Amount)> = Vec::new();
    for s in seats {
        match runs.last_mut() {
            Some((_, last, price)) if *price == s.price && *last + 1 == s.no.get() => {
                *last = s.no.get();
            }
            _ => runs.push((s.no.get(), s.no.get(), s.price)),
        }
    }
    if let [(_, _, price)] = runs.as_slice() {
        return format!("{} each", amount(price.minor_units()));
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|(a, b, p)| {
            if a == b {
                format!("{a}: {}", amount(p.minor_units()))
            } else {
                format!("{a}-{b}: {}", amount(p.minor_units()))
            }
        })
        .collect();
    format!("seats {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use booking_core::domain::SeatNo;

    fn seat(n: i64, price: i64, state: SeatState) -> Seat {
        Seat {
            no: SeatNo::new(n).unwrap(),
            price: Amount::new(price).unwrap(),
            state,
        }
    }

    #[test]
    fn fifty_seats_are_five_rows_of_ten() {
        let mut seats: Vec<Seat> = (1..=50).map(|n| seat(n, 5_000, SeatState::Free)).collect();
        seats[2].state = SeatState::Held {
            until: Timestamp::from_millis(0),
        };
        seats[49].state = SeatState::Sold;
        let map = seat_map(&seats);
        let lines: Vec<&str> = map.lines().collect();
        assert_eq!(lines[0].split_whitespace().count(), 10, "{map}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>()[..4],
            ["1-10", ".", ".", "h"]
        );
        assert!(lines[5].starts_with("41-50"), "{map}");
        assert!(lines[5].ends_with('X'), "{map}");
        assert_eq!(lines.len(), 9, "{map}");
        assert_eq!(lines[8], "prices: 5,000 each");
    }

    #[test]
    fn prices_are_shown_as_runs() {
        let seats: Vec<Seat> = (1..=5)
            .map(|n| seat(n, if n <= 2 { 9_000 } else { 4_000 }, SeatState::Free))
            .collect();
        assert_eq!(price_runs(&seats), "seats 1-2: 9,000, 3-5: 4,000");
    }

    #[test]
    fn errors_are_red_only_when_asked() {
        assert_eq!(error_prefix(false), "error: ");
        assert_eq!(error_prefix(true), "\x1b[1m\x1b[31merror:\x1b[0m ");
        assert!(colored(true, None));
        assert!(colored(true, Some("".into())));
        assert!(!colored(true, Some("1".into())));
        assert!(!colored(false, None));
    }

    #[test]
    fn amounts_group_their_digits() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_375_000, "1,375,000"),
            (-5_000, "-5,000"),
            (i64::MIN, "-9,223,372,036,854,775,808"),
        ];
        for (minor, shown) in cases {
            assert_eq!(amount(minor), shown);
        }
        assert_eq!(
            (change(5_000), change(-120)),
            ("+5,000".into(), "-120".into())
        );
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "Blue Night".into()],
                vec!["12".into(), "X".into()],
            ],
        );
        assert_eq!(t, "ID  NAME\n1   Blue Night\n12  X");
    }

    #[test]
    fn rough_durations() {
        assert_eq!(rough(std::time::Duration::from_millis(1_200)), "2 s");
        assert_eq!(rough(std::time::Duration::from_millis(250)), "250 ms");
        assert_eq!(rough(std::time::Duration::from_secs(600)), "10 min");
        assert_eq!(rough(std::time::Duration::from_secs(7_500)), "2 h 5 min");
    }
}
