//! Percentiles from the kernel's log-linear histograms.

use ckb_probe_common::hist::{bucket_high, bucket_low};

/// Adds `b` into `a` bucket by bucket.
pub fn add(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `a - b` bucket by bucket (counts only grow, so this is the interval's histogram).
pub fn delta(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.saturating_sub(*y)).collect()
}

/// The `q` quantile (0..=1) in the same unit as the buckets, by nearest rank: the midpoint of
/// the bucket holding the rank, clamped to `max` when the exact maximum is known. Buckets are
/// at most 12.5 % wide, so the estimate is within about 6.5 % of the true value.
pub fn quantile(h: &[u64], q: f64, max: Option<u64>) -> Option<f64> {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (idx, &n) in h.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let lo = bucket_low(idx);
            let hi = bucket_high(idx);
            let mid = if hi == u64::MAX || hi - lo <= 1 {
                lo as f64
            } else {
                (lo as f64 + hi as f64 - 1.0) / 2.0
            };
            return Some(match max {
                Some(m) => mid.min(m as f64),
                None => mid,
            });
        }
    }
    None
}

/// Upper bound of the highest non-empty bucket (an estimate of the maximum).
pub fn max_estimate(h: &[u64]) -> Option<u64> {
    h.iter()
        .rposition(|&n| n > 0)
        .map(|idx| bucket_high(idx).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckb_probe_common::hist::{BUCKETS, bucket_of};

    fn hist_of(values: &[u64]) -> Vec<u64> {
        let mut h = vec![0; BUCKETS];
        for &v in values {
            h[bucket_of(v)] += 1;
        }
        h
    }

    #[test]
    fn quantiles_within_bucket_error() {
        // A spread of latencies from 1 us to 10 ms.
        let values: Vec<u64> = (0..10_000u64)
            .map(|i| 1_000 + i * i * 100 / 1_000)
            .collect();
        let mut sorted = values.clone();
        sorted.sort();
        let h = hist_of(&values);
        for q in [0.5, 0.9, 0.99] {
            let truth = sorted[((q * sorted.len() as f64).ceil() as usize) - 1] as f64;
            let est = quantile(&h, q, None).unwrap();
            assert!(
                (est - truth).abs() / truth < 0.07,
                "q={q} est={est} truth={truth}"
            );
        }
    }

    #[test]
    fn empty_and_clamped() {
        assert_eq!(quantile(&vec![0; BUCKETS], 0.5, None), None);
        let h = hist_of(&[1_000_000]);
        assert_eq!(quantile(&h, 0.99, Some(1_000_000)), Some(1_000_000.0));
        assert!(max_estimate(&h).unwrap() >= 1_000_000);
    }
}
