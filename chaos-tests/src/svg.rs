//! The report's plot, written by hand as SVG: throughput (ok / info / fail completions per
//! second) and latency (median and maximum of completed operations per second, log scale) over
//! time, with the fault windows shaded and labelled.

use crate::history::{Event, EventType};
use std::collections::HashMap;
use std::fmt::Write;

/// A shaded window: from, to (ms since the start) and a label.
#[derive(Debug, Clone)]
pub struct Window {
    /// Start, ms.
    pub from_ms: u64,
    /// End, ms.
    pub to_ms: u64,
    /// What it was.
    pub label: String,
    /// Whether it applied (a failed fault is drawn hatched grey).
    pub applied: bool,
}

const W: f64 = 1100.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 220.0;
const TOP1: f64 = 40.0;
const TOP2: f64 = TOP1 + PANEL + 50.0;
const H: f64 = TOP2 + PANEL + 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG text for `events` over `duration_ms`, with `windows` shaded.
pub fn plot(title: &str, events: &[Event], windows: &[Window], duration_ms: u64) -> String {
    let secs = (duration_ms / 1000 + 1).max(1) as usize;
    let mut ok = vec![0u32; secs];
    let mut info = vec![0u32; secs];
    let mut fail = vec![0u32; secs];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); secs];
    let mut invoked: HashMap<u64, u64> = HashMap::new();
    for e in events {
        let s = ((e.time_us / 1_000_000) as usize).min(secs - 1);
        match e.kind {
            EventType::Invoke => {
                invoked.insert(e.op, e.time_us);
            }
            k => {
                match k {
                    EventType::Ok => ok[s] += 1,
                    EventType::Info => info[s] += 1,
                    _ => fail[s] += 1,
                }
                if let Some(t0) = invoked.get(&e.op) {
                    lat[s].push(((e.time_us.saturating_sub(*t0)) as f64 / 1000.0).max(0.01));
                }
            }
        }
    }
    let x = |ms: f64| LEFT + (W - LEFT - RIGHT) * ms / (secs as f64 * 1000.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        esc(title)
    );
    // fault windows across both panels
    for w in windows {
        let (x0, x1) = (x(w.from_ms as f64), x(w.to_ms as f64));
        let fill = if w.applied { "#f4a6a6" } else { "#cccccc" };
        for top in [TOP1, TOP2] {
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="{fill}" fill-opacity="0.45"/>"#,
                (x1 - x0).max(1.0)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="9" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
            x0 + 10.0,
            TOP1 + PANEL - 4.0,
            x0 + 10.0,
            TOP1 + PANEL - 4.0,
            esc(&w.label)
        );
    }
    // panel 1: throughput
    let max_t = ok
        .iter()
        .zip(&info)
        .zip(&fail)
        .map(|((a, b), c)| a.max(b).max(c))
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    axes(
        &mut s,
        TOP1,
        "completions / s",
        &[0.0, max_t / 2.0, max_t],
        |v| TOP1 + PANEL - PANEL * v / max_t,
    );
    for (series, color, name) in [
        (&ok, "#2a7", "ok"),
        (&info, "#e90", "info"),
        (&fail, "#c33", "fail"),
    ] {
        let pts: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    x(i as f64 * 1000.0 + 500.0),
                    TOP1 + PANEL - PANEL * *v as f64 / max_t
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>{name}</title></polyline>"#,
            pts.join(" ")
        );
    }
    legend(
        &mut s,
        TOP1,
        &[("ok", "#2a7"), ("info", "#e90"), ("fail", "#c33")],
    );
    // panel 2: latency, log10 ms from 0.1 ms to 100 s
    let (lo, hi) = (-1.0f64, 5.0f64);
    let y = |ms: f64| TOP2 + PANEL - PANEL * ((ms.log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
    axes(
        &mut s,
        TOP2,
        "latency ms (log)",
        &[0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0],
        y,
    );
    for (pick, color, name) in [(0.5, "#36c", "median"), (1.0, "#639", "max")] {
        let pts: Vec<String> = lat
            .iter_mut()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| {
                l.sort_by(f64::total_cmp);
                let v = l[((l.len() - 1) as f64 * pick) as usize];
                format!("{:.1},{:.1}", x(i as f64 * 1000.0 + 500.0), y(v))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>{name}</title></polyline>"#,
            pts.join(" ")
        );
    }
    legend(&mut s, TOP2, &[("median", "#36c"), ("max", "#639")]);
    // time axis
    let step = (secs / 10).max(1);
    for i in (0..=secs).step_by(step) {
        let xx = x(i as f64 * 1000.0);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{i}s</text>"#,
            TOP2 + PANEL + 15.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn axes(s: &mut String, top: f64, label: &str, ticks: &[f64], y: impl Fn(f64) -> f64) {
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#444"/>"##,
        W - LEFT - RIGHT
    );
    for t in ticks {
        let yy = y(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            if *t >= 10.0 || *t == 0.0 {
                format!("{t:.0}")
            } else {
                format!("{t}")
            }
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">{}</text>"#,
        top - 6.0,
        esc(label)
    );
}

fn legend(s: &mut String, top: f64, items: &[(&str, &str)]) {
    for (i, (name, color)) in items.iter().enumerate() {
        let xx = W - RIGHT - 200.0 + i as f64 * 65.0;
        let _ = writeln!(
            s,
            r#"<rect x="{xx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            top - 16.0,
            xx + 14.0,
            top - 7.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Builder, Outcome};
    use serde_json::json;

    #[test]
    fn plots_a_small_history() {
        let mut b = Builder::new("counter");
        b.op(1, "add", "c", json!(1), 0, 2_000, Outcome::Ok, json!(null))
            .op(
                2,
                "add",
                "c",
                json!(1),
                1_500_000,
                1_600_000,
                Outcome::Info,
                json!(null),
            );
        let svg = plot(
            "t <1>",
            &b.events(),
            &[Window {
                from_ms: 1000,
                to_ms: 2000,
                label: "kill n1".into(),
                applied: true,
            }],
            3000,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("kill n1") && svg.contains("t &lt;1&gt;"));
    }
}
