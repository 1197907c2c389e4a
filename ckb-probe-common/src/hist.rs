//! Log-linear latency histogram buckets, computed in the kernel, read by user space.
//!
//! Each power of two is split into `SUB_BUCKETS` equal sub-buckets, so a bucket is at most
//! 1/8 = 12.5 % wide relative to its lower bound, and a percentile estimated at a bucket's
//! midpoint is within about 6.5 % of the true value (a plain log2 histogram is off by up to 2x).

/// log2 of the number of sub-buckets per power of two.
pub const SUB_BITS: u32 = 3;
/// Sub-buckets per power of two.
pub const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// The last power of two with its own sub-buckets: [2^36, 2^37) ns, about 69 to 137 s; slower
/// values land in the last bucket.
pub const MAX_POW: u32 = 36;
/// Number of buckets: values below `SUB_BUCKETS` get one bucket each, then `SUB_BUCKETS` per power.
pub const BUCKETS: usize = ((MAX_POW - SUB_BITS + 2) as usize) * SUB_BUCKETS as usize;

/// Bucket index of `value` (nanoseconds). Branch-light and loop-free for the BPF verifier.
#[inline(always)]
pub fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let sub = (value >> (msb - SUB_BITS)) & (SUB_BUCKETS - 1);
    let idx = ((msb - SUB_BITS + 1) as u64) * SUB_BUCKETS + sub;
    if idx >= BUCKETS as u64 {
        BUCKETS - 1
    } else {
        idx as usize
    }
}

/// Inclusive lower bound of bucket `idx`.
pub fn bucket_low(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < SUB_BUCKETS {
        return idx;
    }
    let power = idx / SUB_BUCKETS - 1 + SUB_BITS as u64;
    let sub = idx % SUB_BUCKETS;
    (1u64 << power) + (sub << (power - SUB_BITS as u64))
}

/// Exclusive upper bound of bucket `idx` (`u64::MAX` for the last, open-ended bucket).
pub fn bucket_high(idx: usize) -> u64 {
    if idx + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_low(idx + 1)
    }
}

/// One histogram: a count per bucket.
pub type Histogram = [u64; BUCKETS];

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        for idx in 0..BUCKETS - 1 {
            assert!(bucket_low(idx) < bucket_high(idx), "bucket {idx}");
            assert_eq!(bucket_of(bucket_low(idx)), idx, "low bound of {idx}");
            assert_eq!(bucket_of(bucket_high(idx) - 1), idx, "high bound of {idx}");
        }
    }

    #[test]
    fn relative_width_is_bounded() {
        for idx in SUB_BUCKETS as usize..BUCKETS - 1 {
            let (lo, hi) = (bucket_low(idx), bucket_high(idx));
            assert!((hi - lo) as f64 / lo as f64 <= 1.0 / SUB_BUCKETS as f64 + 1e-12);
        }
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << 40), BUCKETS - 1);
        assert_eq!(bucket_of(0), 0);
    }
}
