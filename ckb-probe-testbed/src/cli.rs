//! Command-line flags. Every bad value is rejected by clap with a message and exit status 2.

use clap::Parser;
use std::path::PathBuf;

/// Largest accepted `--value-size`; keeps a single value well inside one memtable.
pub const MAX_VALUE_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Drives RocksDB through the C API in CKB's shape and prints its exact per-function ground truth as JSON",
    long_about = None
)]
pub struct Args {
    /// Length of the measured phase, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_secs)]
    pub duration: f64,

    /// Worker threads.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,

    /// Give the worker threads thread ids equal modulo N (a power of two): short-lived threads
    /// are started until one gets the first worker's id plus a multiple of N. With N = 4096 the
    /// workers share ckb-probe's per-thread kernel slot, so all but one take its map path.
    #[arg(long, value_name = "N", value_parser = tid_stride)]
    pub tid_stride: Option<u32>,

    /// Total iterations per second across all threads; 0 = as fast as possible.
    #[arg(long, value_name = "OPS", default_value_t = 0.0, value_parser = non_negative)]
    pub rate: f64,

    /// Key length in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 32, value_parser = clap::value_parser!(u64).range(16..=4096))]
    pub key_size: u64,

    /// Value length in bytes outside the storm.
    #[arg(long, value_name = "BYTES", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=MAX_VALUE_SIZE))]
    pub value_size: u64,

    /// Fraction of reads that look up an existing key (the rest use keys never written).
    #[arg(long, value_name = "F", default_value_t = 0.8, value_parser = ratio)]
    pub hit_ratio: f64,

    /// Commit and write with sync WAL writes.
    #[arg(long)]
    pub sync: bool,

    /// Start a latency storm this many seconds into the measured phase.
    #[arg(long, value_name = "SECS", requires = "storm_secs", value_parser = non_negative)]
    pub storm_after: Option<f64>,

    /// Length of the latency storm (sync WAL, 256 KiB-1 MiB values, manual compactions).
    #[arg(long, value_name = "SECS", requires = "storm_after", value_parser = positive_secs)]
    pub storm_secs: Option<f64>,

    /// Repeat the storm every SECS (start to start), for soak runs with periodic storms.
    #[arg(long, value_name = "SECS", requires = "storm_after", value_parser = positive_secs)]
    pub storm_every: Option<f64>,

    /// Do not keep every call's latency for the percentiles of the ground truth (`latency_ns` is
    /// then empty): memory stays flat on runs of hours, where the samples would take gigabytes.
    #[arg(long)]
    pub no_latency_samples: bool,

    /// Print `READY pid=<pid>`, then wait for this file to exist before the measured phase.
    #[arg(long, value_name = "PATH")]
    pub start_file: Option<PathBuf>,

    /// Write the ground-truth JSON here instead of as the last line of stdout.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Database directory (kept); default: a fresh directory under /tmp, removed at exit.
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,

    /// Each thread stops after this many iterations (the duration still applies).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_iterations: Option<u64>,

    /// Per-second latency summary and a storm/normal comparison on stderr.
    #[arg(long, short)]
    pub verbose: bool,

    /// Leave these iterator calls out of every iteration (comma-separated), e.g. the ones whose
    /// first instruction a uprobe must single-step, for a mix of emulated probe sites only.
    #[arg(long, value_name = "FUNC,...", value_delimiter = ',', value_parser = SKIPPABLE)]
    pub skip: Vec<String>,
}

/// The calls `--skip` accepts: leaving any of them out changes no other call's count.
const SKIPPABLE: [&str; 5] = [
    "rocksdb_iter_seek",
    "rocksdb_iter_seek_for_prev",
    "rocksdb_iter_seek_to_first",
    "rocksdb_iter_seek_to_last",
    "rocksdb_iter_next",
];

impl Args {
    /// The storm schedule, after checking that storms do not overlap.
    pub fn storms(&self) -> Result<Option<Storms>, String> {
        let Some((from, to)) = self.storm_window() else {
            return Ok(None);
        };
        if let Some(every) = self.storm_every
            && every <= to - from
        {
            return Err(format!(
                "--storm-every {every} must be longer than --storm-secs {}",
                to - from
            ));
        }
        Ok(Some(Storms {
            after: from,
            secs: to - from,
            every: self.storm_every,
        }))
    }

    /// The (first) storm window `[start, end)` in seconds since the start of the measured phase.
    pub fn storm_window(&self) -> Option<(f64, f64)> {
        match (self.storm_after, self.storm_secs) {
            (Some(after), Some(secs)) => Some((after, after + secs)),
            _ => None,
        }
    }
}

/// When storms happen, in seconds since the start of the measured phase: `[after, after + secs)`,
/// repeated every `every` seconds when set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Storms {
    pub after: f64,
    pub secs: f64,
    pub every: Option<f64>,
}

impl Storms {
    /// Whether second `t` of the measured phase is inside a storm.
    pub fn contains(&self, t: f64) -> bool {
        if t < self.after {
            return false;
        }
        let into = match self.every {
            Some(every) => (t - self.after) % every,
            None => t - self.after,
        };
        into < self.secs
    }

    /// The end of the last storm (never, for periodic storms).
    pub fn last_end(&self) -> f64 {
        match self.every {
            Some(_) => f64::INFINITY,
            None => self.after + self.secs,
        }
    }
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(v)
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v <= 0.0 || v > 1e6 {
        return Err(format!("`{s}` must be > 0 and at most 1000000 seconds"));
    }
    Ok(v)
}

fn tid_stride(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (2..=1 << 22).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` must be a power of two from 2 to 4194304")),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v < 0.0 {
        return Err(format!("`{s}` must not be negative"));
    }
    Ok(v)
}

fn ratio(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("`{s}` must be between 0 and 1"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_rejections() {
        let a = Args::try_parse_from(["t"]).unwrap();
        assert_eq!(
            (a.duration, a.threads, a.rate, a.key_size, a.value_size),
            (10.0, 2, 0.0, 32, 100)
        );
        assert_eq!(a.hit_ratio, 0.8);
        assert!(a.skip.is_empty());
        let a =
            Args::try_parse_from(["t", "--skip", "rocksdb_iter_next,rocksdb_iter_seek"]).unwrap();
        assert_eq!(a.skip, ["rocksdb_iter_next", "rocksdb_iter_seek"]);
        assert!(a.storm_window().is_none());
        let a = Args::try_parse_from(["t", "--storm-after", "2", "--storm-secs", "3"]).unwrap();
        assert_eq!(a.storm_window(), Some((2.0, 5.0)));
        let s = a.storms().unwrap().unwrap();
        assert!(!s.contains(1.9) && s.contains(2.0) && s.contains(4.9) && !s.contains(5.0));
        assert!(!s.contains(12.5));
        let a = Args::try_parse_from([
            "t",
            "--storm-after",
            "2",
            "--storm-secs",
            "3",
            "--storm-every",
            "10",
        ])
        .unwrap();
        let s = a.storms().unwrap().unwrap();
        assert!(s.contains(2.0) && !s.contains(5.0) && s.contains(12.5) && !s.contains(15.5));
        assert!(s.contains(1002.0) && s.last_end().is_infinite());
        let a = Args::try_parse_from([
            "t",
            "--storm-after",
            "2",
            "--storm-secs",
            "3",
            "--storm-every",
            "3",
        ])
        .unwrap();
        assert!(a.storms().is_err(), "overlapping storms accepted");
        for bad in [
            &["t", "--threads", "0"][..],
            &["t", "--hit-ratio", "1.5"],
            &["t", "--duration", "0"],
            &["t", "--duration", "nan"],
            &["t", "--rate", "-1"],
            &["t", "--key-size", "4"],
            &["t", "--storm-after", "1"],
            &["t", "--storm-secs", "1"],
            &["t", "--storm-every", "10"],
            &["t", "--max-iterations", "0"],
            &["t", "--skip", "rocksdb_get"],
            &["t", "--bogus"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
    }
}
