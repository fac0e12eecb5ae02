//! A picture of a run: the latency distribution of each round trip (the
//! share of round trips at or under a time, on a log time axis) beside the
//! throughput of each pool, as one standalone SVG file.

use crate::report::Report;
use crate::Lat;
use std::fmt::Write;

const W: f64 = 1180.0;
const H: f64 = 460.0;
const COLOURS: [&str; 7] = [
    "#888888", "#1f77b4", "#17becf", "#9467bd", "#8c564b", "#d62728", "#ff7f0e",
];

/// The SVG document of `r`.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"##
    );
    s.push_str(r##"<rect width="100%" height="100%" fill="white"/>"##);
    latency(&mut s, r);
    throughput(&mut s, r);
    s.push_str("</svg>\n");
    s
}

/// Left panel: one line per round trip, percentile against log10(µs).
fn latency(s: &mut String, r: &Report) {
    let (x0, y0, w, h) = (60.0, 40.0, 560.0, 360.0);
    let series: [(&str, Lat); 7] = [
        ("spin floor", r.floor_spin),
        ("pipe", r.floor_pipe),
        ("pipe after idle", r.floor_pipe_after_idle),
        ("futex", r.futex),
        ("reference (50 us polls)", r.reference),
        ("dist-worker, hot", r.hot),
        ("dist-worker, sleeping child", r.sleeping),
    ];
    let (lo, hi) = (-2.0f64, 4.0f64); // 0.01 µs .. 10 ms
    let x = |us: f64| x0 + (us.max(0.01).log10().clamp(lo, hi) - lo) / (hi - lo) * w;
    let y = |pct: f64| y0 + h - pct / 100.0 * h;
    let _ = write!(
        s,
        r##"<text x="{x0}" y="24" font-size="14">round trips: share of round trips at or under a time</text>"##
    );
    axes(s, x0, y0, w, h);
    for e in lo as i32..=hi as i32 {
        let us = 10f64.powi(e);
        let label = if us < 1.0 {
            format!("{us} us")
        } else if us < 1000.0 {
            format!("{us:.0} us")
        } else {
            format!("{:.0} ms", us / 1000.0)
        };
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#eee"/><text x="{0}" y="{3}" text-anchor="middle">{label}</text>"##,
            x(us),
            y0,
            y0 + h,
            y0 + h + 16.0
        );
    }
    for pct in [0.0, 25.0, 50.0, 75.0, 90.0, 100.0] {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{pct}%</text>"##,
            x0 - 6.0,
            y(pct) + 4.0
        );
    }
    for (i, (name, l)) in series.iter().enumerate() {
        let pts: Vec<String> = l
            .dist
            .iter()
            .zip(Lat::PERCENTILES)
            .map(|(&us, pct)| format!("{:.1},{:.1}", x(us), y(pct)))
            .collect();
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        );
        // The legend sits bottom right, where the lines have not risen yet.
        let ly = y0 + h - 16.0 * (series.len() - i) as f64;
        let _ = write!(
            s,
            r##"<rect x="{}" y="{}" width="12" height="3" fill="{c}"/><text x="{}" y="{}">{name}: p50 {:.2} us</text>"##,
            x0 + w - 250.0,
            ly - 4.0,
            x0 + w - 232.0,
            ly,
            l.p50
        );
    }
}

/// Right panel: horizontal bars, tasks/s of each pool.
fn throughput(s: &mut String, r: &Report) {
    let (x0, y0, w) = (820.0, 40.0, 250.0);
    let mut bars: Vec<(String, f64)> = r
        .throughput
        .iter()
        .map(|&(n, t)| (format!("dist-worker, {n} children"), t))
        .collect();
    bars.push(("pipe pool, 4 children".into(), r.pipe_pool_4));
    bars.push(("reference, 4 children".into(), r.reference_pool_4));
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let _ = write!(
        s,
        r##"<text x="{}" y="24" font-size="14">throughput, no-op tasks (tasks/s)</text>"##,
        x0 - 170.0
    );
    for (i, (name, t)) in bars.iter().enumerate() {
        let by = y0 + 10.0 + 40.0 * i as f64;
        let bw = t / max * w;
        let c = if name.starts_with("dist-worker") {
            "#d62728"
        } else {
            "#888888"
        };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{name}</text><rect x="{x0}" y="{}" width="{bw:.1}" height="22" fill="{c}"/><text x="{}" y="{}">{:.0}</text>"##,
            x0 - 8.0,
            by + 15.0,
            by,
            x0 + bw + 4.0,
            by + 15.0,
            t
        );
    }
}

fn axes(s: &mut String, x0: f64, y0: f64, w: f64, h: f64) {
    let _ = write!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_picture_is_well_formed() {
        let l = crate::Lat::of((1..=1000).collect());
        let r = crate::report::Report {
            floor_spin: l,
            floor_pipe: l,
            floor_pipe_after_idle: l,
            futex: l,
            reference: l,
            hot: l,
            sleeping: l,
            throughput: vec![(1, 1e6), (4, 2e6)],
            reference_pool_4: 1e4,
            pipe_pool_4: 5e5,
            idle_cpu_percent_16_children: 0.1,
        };
        let svg = super::render(&r);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 7);
        assert_eq!(svg.matches("<rect x=").count(), 7 + 4 + 1);
    }
}
