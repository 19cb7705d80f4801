//! Line charts as hand-written SVG (no plotting dependency): one or more panels stacked, each
//! with named series, optional log-scale y axis and labelled vertical markers (e.g. a kill).

use std::fmt::Write;

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One panel.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Log-scale y (values <= 0 are dropped).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical markers: x and label.
    pub markers: Vec<(f64, String)>,
    /// A horizontal reference line: y and label (e.g. a target).
    pub reference: Option<(f64, String)>,
}

const W: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const GAP: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Tidy number for a tick label.
fn label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "Nice" ticks over [lo, hi] (3 to 8 of them, at 1, 2 or 5 times a power of ten).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-6 {
        out.push(v);
        v += step;
    }
    out
}

/// The SVG document for `panels`, stacked top to bottom, under `title`.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let h = TOP + panels.len() as f64 * (PANEL_H + GAP) + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, p) in panels.iter().enumerate() {
        let top = TOP + 20.0 + i as f64 * (PANEL_H + GAP);
        panel(&mut out, p, top);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, p: &Panel, top: f64) {
    let (x0, x1) = (LEFT, W - RIGHT);
    let (y0, y1) = (top + PANEL_H, top);
    let ty = |v: f64| if p.log_y { v.log10() } else { v };
    let pts: Vec<(f64, f64)> = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(_, y)| !p.log_y || *y > 0.0)
        .chain(p.reference.iter().map(|(y, _)| (f64::NAN, *y)))
        .collect();
    let xs = pts.iter().map(|q| q.0).filter(|x| x.is_finite());
    let (xmin, xmax) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (xmin, xmax) = if xmin > xmax {
        (0.0, 1.0)
    } else if xmax - xmin < 1e-9 {
        (xmin - 1.0, xmax + 1.0)
    } else {
        (xmin, xmax)
    };
    let ys = pts.iter().map(|q| ty(q.1)).filter(|y| y.is_finite());
    let (mut ymin, mut ymax) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    if ymin > ymax {
        (ymin, ymax) = (0.0, 1.0);
    }
    if p.log_y {
        (ymin, ymax) = (ymin.floor(), ymax.ceil().max(ymin.floor() + 1.0));
    } else {
        ymin = ymin.min(0.0);
        ymax = if ymax <= ymin {
            ymin + 1.0
        } else {
            ymax * 1.05
        };
    }
    let sx = |x: f64| x0 + (x - xmin) / (xmax - xmin) * (x1 - x0);
    let sy = |y: f64| y0 - (ty(y) - ymin) / (ymax - ymin) * (y0 - y1);
    let _ = writeln!(
        out,
        r##"<text x="{x0}" y="{}" font-size="12" font-weight="bold">{}</text><rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        y1 - 6.0,
        esc(&p.title),
        x1 - x0,
        y0 - y1
    );
    // grid and tick labels
    let yt: Vec<f64> = if p.log_y {
        (ymin as i32..=ymax as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        ticks(ymin, ymax)
    };
    for v in yt {
        let y = sy(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 4.0,
            label(v)
        );
    }
    for v in ticks(xmin, xmax) {
        let x = sx(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y0}" stroke="#f3f3f3"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 14.0,
            label(v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        y0 + 30.0,
        esc(&p.x_label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(&format!(
            "{}{}",
            p.y_label,
            if p.log_y { " (log)" } else { "" }
        ))
    );
    if let Some((v, l)) = &p.reference {
        let y = sy(*v);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#999" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#666">{}</text>"##,
            x0 + 4.0,
            y - 4.0,
            esc(l)
        );
    }
    for (x, l) in &p.markers {
        if !(xmin..=xmax).contains(x) {
            continue;
        }
        let xx = sx(*x);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{y1}" x2="{xx:.1}" y2="{y0}" stroke="#000" stroke-dasharray="3 3"/><text x="{:.1}" y="{}">{}</text>"##,
            xx + 3.0,
            y1 + 12.0,
            esc(l)
        );
    }
    for (i, s) in p.series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|(_, y)| y.is_finite() && (!p.log_y || *y > 0.0))
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{}"/>"#,
                path.join(" ")
            );
            if path.len() <= 20 {
                for pt in &path {
                    let (a, b) = pt.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(out, r#"<circle cx="{a}" cy="{b}" r="2.5" fill="{c}"/>"#);
                }
            }
        }
        let ly = y1 + 14.0 + i as f64 * 16.0;
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x1 + 10.0,
            x1 + 28.0,
            x1 + 32.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(3.0, 1234.0);
        assert!(t.first().unwrap() >= &3.0 && t.last().unwrap() <= &1234.0);
        assert!(t.len() >= 3 && t.len() <= 7, "{t:?}");
    }

    #[test]
    fn a_chart_draws_every_series_marker_and_escapes_text() {
        let p = Panel {
            title: "p99 <ms> & rate".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            log_y: true,
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(0.0, 1.0), (1.0, 10.0), (2.0, 0.0)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(0.0, 5.0), (2.0, 50.0)],
                },
            ],
            markers: vec![(1.0, "kill".into()), (99.0, "outside".into())],
            reference: Some((50.0, "target".into())),
        };
        let s = svg("t", &[p.clone(), Panel { log_y: false, ..p }]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert_eq!(s.matches(">kill<").count(), 2);
        assert!(
            !s.contains("outside"),
            "a marker outside the x range is not drawn"
        );
        assert!(s.contains("p99 &lt;ms&gt; &amp; rate"));
        assert!(!s.contains("NaN"), "no NaN coordinates");
    }
}
