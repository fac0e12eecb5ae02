//! The results of a run, as a text table or as one JSON object.

use crate::Lat;
use serde::{Serialize, Serializer};

/// Everything one run measures. Round trips in µs; rates in tasks/s.
#[derive(Serialize)]
pub struct Report {
    #[serde(rename = "floor_spin_us")]
    pub floor_spin: Lat,
    #[serde(rename = "floor_pipe_us")]
    pub floor_pipe: Lat,
    #[serde(rename = "floor_pipe_after_idle_us")]
    pub floor_pipe_after_idle: Lat,
    #[serde(rename = "futex_us")]
    pub futex: Lat,
    #[serde(rename = "reference_us")]
    pub reference: Lat,
    #[serde(rename = "hot_us")]
    pub hot: Lat,
    #[serde(rename = "sleeping_us")]
    pub sleeping: Lat,
    /// (children, tasks/s), in the order measured.
    #[serde(
        rename = "throughput_tasks_per_s",
        serialize_with = "rates_by_children"
    )]
    pub throughput: Vec<(usize, f64)>,
    #[serde(rename = "reference_pool_4_tasks_per_s", serialize_with = "rate")]
    pub reference_pool_4: f64,
    #[serde(rename = "pipe_pool_4_tasks_per_s", serialize_with = "rate")]
    pub pipe_pool_4: f64,
    #[serde(serialize_with = "thousandths")]
    pub idle_cpu_percent_16_children: f64,
}

/// A latency as `{"p50": .., "p99": ..}`, to the nanosecond.
impl Serialize for Lat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Lat", 2)?;
        st.serialize_field("p50", &round3(self.p50))?;
        st.serialize_field("p99", &round3(self.p99))?;
        st.end()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn thousandths<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(*x))
}

/// A rate as a whole number of tasks/s.
fn rate<S: Serializer>(r: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(r.round() as u64)
}

/// `{"1": rate, "4": rate, ...}`, keys in the order measured.
fn rates_by_children<S: Serializer>(v: &[(usize, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|&(n, r)| (n.to_string(), r.round() as u64)))
}

impl Report {
    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }

    /// The text table, with each figure's ratio to its baseline.
    pub fn print_table(&self) {
        let (spin, pipe, pipe_cold) =
            (self.floor_spin, self.floor_pipe, self.floor_pipe_after_idle);
        println!(
            "{:<48} {:>10} {:>10}   ratio",
            "round trip (one task, dispatch + wait)", "p50 us", "p99 us"
        );
        let x = |a: Lat, b: Lat| a.p50 / b.p50;
        let rows = [
            (
                "floor: two processes spinning on one word",
                spin,
                "1.0x spin floor".to_string(),
            ),
            (
                "floor: pipe round trip",
                pipe,
                format!("{:.1}x spin floor", x(pipe, spin)),
            ),
            (
                "floor: pipe round trip, child idle 3 ms before",
                pipe_cold,
                format!("{:.2}x pipe", x(pipe_cold, pipe)),
            ),
            (
                "futex wait/wake round trip",
                self.futex,
                format!("{:.2}x pipe", x(self.futex, pipe)),
            ),
            (
                "reference protocol (parent polls every 50 us)",
                self.reference,
                format!("{:.0}x spin floor", x(self.reference, spin)),
            ),
            (
                "dist-worker, hot child (C API)",
                self.hot,
                format!("{:.1}x spin floor", x(self.hot, spin)),
            ),
            (
                "dist-worker, child woken from sleep (C API)",
                self.sleeping,
                format!(
                    "{:.2}x pipe, {:.2}x pipe after idle",
                    x(self.sleeping, pipe),
                    x(self.sleeping, pipe_cold)
                ),
            ),
        ];
        for (name, l, ratio) in rows {
            println!("{name:<48} {:>10.3} {:>10.3}   {ratio}", l.p50, l.p99);
        }
        println!();
        println!(
            "{:<48} {:>12}   ratio",
            "throughput (no-op tasks, dispatch all + drain; median of 5)", "tasks/s"
        );
        let four = self
            .throughput
            .iter()
            .find(|x| x.0 == 4)
            .expect("4 children measured")
            .1;
        for &(n, r) in &self.throughput {
            println!(
                "{:<48} {:>12.0}   {:.1}x reference, {:.1}x pipe pool, {:.2}x of 4 children",
                format!("dist-worker, {n} children"),
                r,
                r / self.reference_pool_4,
                r / self.pipe_pool_4,
                r / four
            );
        }
        println!(
            "{:<48} {:>12.0}",
            "reference protocol, 4 children", self.reference_pool_4
        );
        println!(
            "{:<48} {:>12.0}",
            "pipe-based process pool, 4 children", self.pipe_pool_4
        );
        println!();
        println!(
            "idle cost, parent + 16 children over 2 s: {:.4}% of one core",
            self.idle_cpu_percent_16_children
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_the_keys_and_their_order() {
        let l = Lat {
            p50: 0.1104,
            p99: 2.0,
            dist: [0.0; 9],
        };
        let r = Report {
            floor_spin: l,
            floor_pipe: l,
            floor_pipe_after_idle: l,
            futex: l,
            reference: l,
            hot: l,
            sleeping: l,
            throughput: vec![(1, 10.4), (4, 20.6), (16, 30.0), (64, 40.0)],
            reference_pool_4: 5.5,
            pipe_pool_4: 6.0,
            idle_cpu_percent_16_children: 0.09514,
        };
        let j = r.to_json();
        let lat = r#"{"p50":0.11,"p99":2.0}"#;
        assert_eq!(
            j,
            format!(
                r#"{{"floor_spin_us":{lat},"floor_pipe_us":{lat},"floor_pipe_after_idle_us":{lat},"futex_us":{lat},"reference_us":{lat},"hot_us":{lat},"sleeping_us":{lat},"throughput_tasks_per_s":{{"1":10,"4":21,"16":30,"64":40}},"reference_pool_4_tasks_per_s":6,"pipe_pool_4_tasks_per_s":6,"idle_cpu_percent_16_children":0.095}}"#
            )
        );
    }
}
