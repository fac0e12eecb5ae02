//! The results of a run, as a text table or as one JSON object.

use crate::Lat;

/// Everything one run measures. Round trips in µs; rates in tasks/s.
pub struct Report {
    pub floor_spin: Lat,
    pub floor_pipe: Lat,
    pub floor_pipe_after_idle: Lat,
    pub futex: Lat,
    pub reference: Lat,
    pub hot: Lat,
    pub sleeping: Lat,
    /// (children, tasks/s), in the order measured.
    pub throughput: Vec<(usize, f64)>,
    pub reference_pool_4: f64,
    pub pipe_pool_4: f64,
    pub idle_cpu_percent_16_children: f64,
}

impl Report {
    /// One line of JSON.
    pub fn to_json(&self) -> String {
        let lat = |l: Lat| format!("{{\"p50\": {:.3}, \"p99\": {:.3}}}", l.p50, l.p99);
        let tp: Vec<String> = self
            .throughput
            .iter()
            .map(|(n, r)| format!("\"{n}\": {r:.0}"))
            .collect();
        format!(
            "{{\"floor_spin_us\": {}, \"floor_pipe_us\": {}, \"floor_pipe_after_idle_us\": {}, \
             \"futex_us\": {}, \"reference_us\": {}, \"hot_us\": {}, \"sleeping_us\": {}, \
             \"throughput_tasks_per_s\": {{{}}}, \"reference_pool_4_tasks_per_s\": {:.0}, \
             \"pipe_pool_4_tasks_per_s\": {:.0}, \"idle_cpu_percent_16_children\": {:.3}}}",
            lat(self.floor_spin),
            lat(self.floor_pipe),
            lat(self.floor_pipe_after_idle),
            lat(self.futex),
            lat(self.reference),
            lat(self.hot),
            lat(self.sleeping),
            tp.join(", "),
            self.reference_pool_4,
            self.pipe_pool_4,
            self.idle_cpu_percent_16_children
        )
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
