//! The report's plots, as small hand-written SVG files (no plotting library): a
//! line chart with axes, ticks and a legend. [`crate::report::Report::write`]
//! puts them beside the Markdown report, which links them.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series<'a> {
    /// Its name in the legend.
    pub name: &'a str,
    /// Its colour (any SVG colour).
    pub color: &'a str,
    /// Its points, x ascending.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 800.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 55.0;
const BOTTOM: f64 = 45.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" step for about `n` ticks up to `max`: 1, 2 or 5 times a power of ten.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A line chart: `title` above, `x_label` under the x axis, y ticks written by
/// `y_fmt`. An empty chart (no point) still has its axes and says so.
pub fn line_chart(
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
    y_fmt: &dyn Fn(f64) -> String,
) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x0 = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else if x0.is_finite() {
        (x0, x0 + 1.0)
    } else {
        (0.0, 1.0)
    };
    let ymax_data = all().map(|p| p.1).fold(0.0, f64::max);
    let ystep = nice_step(if ymax_data > 0.0 { ymax_data } else { 1.0 }, 5.0);
    let ymax = (ymax_data / ystep).ceil().max(1.0) * ystep;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - y / ymax * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Horizontal grid and y ticks.
    let mut y = 0.0;
    while y <= ymax + ystep / 2.0 {
        let py = sy(y);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            esc(&y_fmt(y))
        );
        y += ystep;
    }
    // X ticks.
    let xstep = nice_step(x1 - x0, 8.0).max(1.0);
    let mut x = (x0 / xstep).ceil() * xstep;
    while x <= x1 + 1e-9 {
        let px = sx(x);
        let _ = writeln!(
            o,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{x}</text>"##,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 18.0
        );
        x += xstep;
    }
    let _ = writeln!(
        o,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 8.0,
        esc(x_label)
    );
    if all().next().is_none() {
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666">no data</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"><title>{}</title></polyline>"#,
            esc(s.color),
            pts.join(" "),
            esc(s.name)
        );
    }
    // Legend, under the title, right-aligned.
    let mut lx = W - RIGHT - 150.0 * series.len() as f64;
    for s in series {
        let _ = writeln!(
            o,
            r#"<rect x="{lx:.1}" y="34" width="14" height="4" fill="{}"/><text x="{:.1}" y="40">{}</text>"#,
            esc(s.color),
            lx + 18.0,
            esc(s.name)
        );
        lx += 150.0;
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_its_lines_legend_and_ticks() {
        let svg = line_chart(
            "Holds <per> second",
            "second",
            &[
                Series {
                    name: "holds",
                    color: "green",
                    points: vec![(0.0, 0.0), (1.0, 40.0), (2.0, 90.0)],
                },
                Series {
                    name: "conflicts",
                    color: "red",
                    points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
                },
            ],
            &|y| format!("{y:.0}"),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("Holds &lt;per&gt; second"), "escaped title");
        assert!(svg.contains(">holds</text>") && svg.contains(">conflicts</text>"));
        // 90 rounds up to a 100 top tick on steps of 20.
        assert!(
            svg.contains(">100</text>") && svg.contains(">20</text>"),
            "{svg}"
        );
        // The highest point is at the top of the plot area: y = TOP + ph - 90/100 ph.
        let ph = H - TOP - BOTTOM;
        assert!(svg.contains(&format!("{:.1},{:.1}", W - RIGHT, TOP + ph - 0.9 * ph)));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = line_chart("x", "second", &[], &|y| format!("{y}"));
        assert!(svg.contains("no data"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
