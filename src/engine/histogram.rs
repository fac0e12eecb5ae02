//! A latency histogram of fixed log-linear buckets: plain counters, so
//! recording a value is an index computation and an increment (no
//! allocation, no lock of its own; the engine records under its lock).
//!
//! Values below 32 have a bucket each; above, every power of two is split
//! into 16 buckets, so a bucket is at most 1/16 (6.25 %) of its values wide.
//! 61 groups of 16 cover every u64.

/// Sub-buckets per power of two (a power of two itself).
const SUB: usize = 16;
/// log2(SUB).
const SUB_BITS: u32 = 4;
/// Buckets in all: exact values 0..32, then 16 per power of two up to 2^64.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of recorded values per bucket.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }
}

/// The bucket of `v`.
fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value that falls in bucket `b`.
fn upper(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let e = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = (b % SUB) as u64;
    let low = (1u64 << e) | (sub << (e - SUB_BITS));
    low.saturating_add((1u64 << (e - SUB_BITS)) - 1)
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (0 when none was).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// For each fraction of `qs` (ascending, each in 0..=1): the value at
    /// or below which that fraction of the recorded values lie, as the
    /// upper edge of its bucket (never above the largest value recorded).
    /// All 0 when nothing was recorded. One pass over the buckets.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [u64; N] {
        let mut out = [0; N];
        if self.total == 0 {
            return out;
        }
        // The rank of each quantile: the ceil(q * total)-th value, from 1.
        let ranks = qs.map(|q| ((q * self.total as f64).ceil() as u64).clamp(1, self.total));
        let mut seen = 0u64;
        let mut next = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            seen += c;
            while next < N && seen >= ranks[next] {
                out[next] = upper(b).min(self.max);
                next += 1;
            }
            if next == N {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..5000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(b >= last, "monotonic at {v}");
            assert!(v <= upper(b), "{v} fits its bucket {b}");
            if b > 0 {
                assert!(v > upper(b - 1), "{v} is above bucket {}", b - 1);
            }
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(upper(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn a_bucket_is_at_most_a_sixteenth_of_its_values_wide() {
        for v in [33u64, 1000, 123_456, 10_000_000_000] {
            let b = bucket(v);
            let width = upper(b) - upper(b - 1);
            assert!(width * 16 <= v, "{v}: width {width}");
        }
    }

    #[test]
    fn quantiles_of_a_known_set() {
        let mut h = Histogram::default();
        assert_eq!(h.quantiles([0.5, 0.99]), [0, 0]);
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let [p50, p99, p999, all] = h.quantiles([0.5, 0.99, 0.999, 1.0]);
        assert!((500_000..=500_000 + 500_000 / 16).contains(&p50), "{p50}");
        assert!((990_000..=990_000 + 990_000 / 16).contains(&p99), "{p99}");
        assert!((999_000..=1_000_000).contains(&p999), "{p999}");
        assert_eq!(all, 1_000_000, "capped at the largest value");
        assert_eq!((h.count(), h.max()), (1000, 1_000_000));
        let mut one = Histogram::default();
        one.record(7);
        assert_eq!(one.quantiles([0.0, 0.5, 1.0]), [7, 7, 7]);
    }
}
