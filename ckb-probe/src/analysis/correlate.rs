//! Correlation alerts across layers (spec 5.7), each with its evidence:
//! - lock contention: the futex call rate exceeds 3x its baseline while more than 70 % of
//!   futex calls are waits;
//! - I/O bottleneck: the latency of write/pwrite64 or fdatasync/fsync spikes (5x its baseline) while
//!   the RocksDB layer reports a WRITE latency spike;
//! - disconnection storm: the net layer's churn detector reports more than 10 peer
//!   disconnections in the last minute; shown with the peers that keep reconnecting.
//!
//! Nothing fires during the warm-up, when baselines are still being learnt.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use crate::model::de::Name;
use serde::{Deserialize, Serialize};

use super::{
    anomaly::Anomaly,
    baseline::{BaselineConfig, WindowedBaseline},
    syscall::SysInterval,
};

/// One correlated alert.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Correlation {
    /// When the condition started (RFC 3339).
    pub time: String,
    #[serde(rename = "type", deserialize_with = "crate::model::de::name")]
    pub kind: Name,
    pub summary: String,
    pub evidence: String,
    pub next: String,
}

/// What the net layer's churn detector concluded this interval (it owns the threshold and
/// its warm-up: more than 10 disconnections in a minute).
#[derive(Clone, Debug, Default)]
pub struct Disconnects {
    /// Disconnections in the last minute when a storm is on.
    pub storm: Option<u64>,
    /// Peers with repeated connections in the window.
    pub reconnecting: Vec<String>,
}

/// RocksDB appends its WAL and SST files with `write` (PosixWritableFile) and positions with
/// `pwrite64` elsewhere; `fdatasync`/`fsync` are its durability barriers.
const WATCHED_IO: [&str; 4] = ["write", "pwrite64", "fdatasync", "fsync"];
pub const FUTEX_RATE_FACTOR: f64 = 3.0;
pub const FUTEX_WAIT_SHARE: f64 = 0.7;
pub const IO_FACTOR: f64 = 5.0;

pub struct Correlator {
    start: Instant,
    warmup: Duration,
    futex_rate: WindowedBaseline,
    futex_waits: WindowedBaseline,
    io: BTreeMap<&'static str, WindowedBaseline>,
    active: BTreeMap<&'static str, SystemTime>,
}

impl Correlator {
    pub fn new(start: Instant, warmup: Duration) -> Self {
        let window = Duration::from_secs(10);
        let base = |factor, min_den| BaselineConfig {
            alpha: 0.3,
            factor,
            window,
            min_den,
        };
        Correlator {
            start,
            warmup,
            // Calls per second: numerator calls, denominator seconds.
            futex_rate: WindowedBaseline::new(base(FUTEX_RATE_FACTOR, 1.0)),
            // Only its current value (waits / calls) is used.
            futex_waits: WindowedBaseline::new(base(f64::INFINITY, 10.0)),
            io: WATCHED_IO
                .iter()
                .map(|n| (*n, WindowedBaseline::new(base(IO_FACTOR, 5.0))))
                .collect(),
            active: BTreeMap::new(),
        }
    }

    /// Feeds one interval of whatever layers run; returns the correlations active after it.
    pub fn observe(
        &mut self,
        now: Instant,
        rocks_anomalies: &[Anomaly],
        sys: Option<&SysInterval>,
        net: Option<&Disconnects>,
    ) -> Vec<Correlation> {
        let warm = now.duration_since(self.start) >= self.warmup;
        let mut found: Vec<(&'static str, String, String, String)> = Vec::new();

        if let Some(sys) = sys {
            let d = &sys.derived;
            let rate = self.futex_rate.observe(now, d.futex_calls as f64, sys.secs);
            let waits = self
                .futex_waits
                .observe(now, d.futex_waits as f64, d.futex_calls as f64);
            if let (true, Some(share)) = (rate.spike, waits.current)
                && share > FUTEX_WAIT_SHARE
            {
                let top = sys
                    .by_role_of("futex")
                    .first()
                    .map_or(String::new(), |(role, r)| {
                        format!(
                            "; most futex time in {} threads ({:.0}%)",
                            role.name(),
                            r.time_share * 100.0
                        )
                    });
                found.push((
                    "lock_contention",
                    "Lock contention: threads are queueing on futexes".into(),
                    format!(
                        "futex {:.0}/s vs baseline {:.0}/s (×{:.1}), {:.0}% of futex calls wait{top}",
                        rate.current.unwrap_or(0.0),
                        rate.baseline.unwrap_or(0.0),
                        rate.multiplier().unwrap_or(0.0),
                        share * 100.0
                    ),
                    "ckb-probe syscall --by-role".into(),
                ));
            }

            let write_spike = rocks_anomalies.iter().any(|a| a.operation == "WRITE");
            let mut io_evidence = Vec::new();
            let mut io_role: Option<&'static str> = None;
            for name in WATCHED_IO {
                let r = sys.syscall(name);
                let reading = self.io.get_mut(name).map(|b| {
                    b.observe(
                        now,
                        r.map_or(0.0, |r| r.total_ns as f64),
                        r.map_or(0.0, |r| r.count as f64),
                    )
                });
                if let Some(reading) = reading
                    && reading.spike
                {
                    let top = sys
                        .by_role_of(name)
                        .first()
                        .map(|(role, r)| (role.name(), r.time_share));
                    io_role = io_role.or(top.map(|t| t.0));
                    let role = top.map_or(String::new(), |(role, share)| {
                        format!(", {:.0}% of it from {role} threads", share * 100.0)
                    });
                    io_evidence.push(format!(
                        "{name} avg {:.1} µs vs baseline {:.1} µs (×{:.1}){role}",
                        reading.current.unwrap_or(0.0) / 1_000.0,
                        reading.baseline.unwrap_or(0.0) / 1_000.0,
                        reading.multiplier().unwrap_or(0.0)
                    ));
                }
            }
            if write_spike && !io_evidence.is_empty() {
                let rocks = rocks_anomalies
                    .iter()
                    .find(|a| a.operation == "WRITE")
                    .map_or(String::new(), |a| {
                        format!(
                            "RocksDB WRITE avg {:.1} µs vs baseline {:.1} µs; ",
                            a.current_avg_us, a.baseline_avg_us
                        )
                    });
                found.push((
                    "io_bottleneck",
                    "I/O bottleneck: RocksDB writes wait on the disk".into(),
                    format!("{rocks}{}", io_evidence.join("; ")),
                    io_role.map_or("ckb-probe syscall".into(), |r| {
                        format!("ckb-probe syscall --role {r}")
                    }),
                ));
            }
        }

        if let Some(n) = net
            && let Some(count) = n.storm
        {
            let again = if n.reconnecting.is_empty() {
                String::new()
            } else {
                format!("; reconnecting repeatedly: {}", n.reconnecting.join(", "))
            };
            found.push((
                "disconnection_storm",
                "Disconnection storm: peers keep dropping".into(),
                format!("{count} disconnections in the last minute{again}"),
                "ckb-probe net".into(),
            ));
        }

        if !warm {
            self.active.clear();
            return Vec::new();
        }
        let kinds: Vec<&'static str> = found.iter().map(|f| f.0).collect();
        self.active.retain(|k, _| kinds.contains(k));
        found
            .into_iter()
            .map(|(kind, summary, evidence, next)| {
                let since = *self.active.entry(kind).or_insert_with(SystemTime::now);
                Correlation {
                    time: crate::view::rfc3339(since),
                    kind,
                    summary,
                    evidence,
                    next,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::syscall::{Derived, SysReport};

    fn sys(futex_calls: u64, futex_waits: u64, fdatasync_ns: u64) -> SysInterval {
        let fdatasync = SysReport {
            name: "fdatasync".into(),
            count: 10,
            total_ns: 10 * fdatasync_ns,
            ..SysReport::default()
        };
        SysInterval {
            secs: 1.0,
            syscalls: vec![fdatasync],
            roles: BTreeMap::new(),
            derived: Derived {
                futex_calls,
                futex_waits,
                ..Derived::default()
            },
            threads: BTreeMap::new(),
            unpaired: 0,
            threads_started: 0,
            hist_full: 0,
            stats_full: 0,
            total_ns: 0,
        }
    }

    fn write_spike() -> Anomaly {
        Anomaly {
            time: String::new(),
            kind: "latency_spike",
            operation: "WRITE",
            current_avg_us: 900.0,
            baseline_avg_us: 40.0,
            multiplier: 22.5,
            cause: String::new(),
            evidence: String::new(),
            next: String::new(),
        }
    }

    fn kinds(c: &[Correlation]) -> Vec<&'static str> {
        c.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn quiet_baseline_then_lock_contention_and_io_bottleneck() {
        let t0 = Instant::now();
        let mut c = Correlator::new(t0, Duration::from_secs(20));
        let at = |s| t0 + Duration::from_secs(s);
        for s in 0..30 {
            let out = c.observe(at(s), &[], Some(&sys(100, 40, 50_000)), None);
            assert!(out.is_empty(), "alert on a steady load at {s}: {out:?}");
        }
        // Futexes 10x more often, 90 % waits; fdatasync 20x slower while WRITE spikes.
        let mut seen = Vec::new();
        for s in 30..40 {
            let out = c.observe(
                at(s),
                &[write_spike()],
                Some(&sys(1_000, 900, 1_000_000)),
                None,
            );
            seen.extend(kinds(&out));
        }
        assert!(seen.contains(&"lock_contention"), "{seen:?}");
        assert!(seen.contains(&"io_bottleneck"), "{seen:?}");
    }

    #[test]
    fn io_spike_without_rocksdb_write_spike_is_not_a_bottleneck() {
        let t0 = Instant::now();
        let mut c = Correlator::new(t0, Duration::ZERO);
        let at = |s| t0 + Duration::from_secs(s);
        for s in 0..30 {
            c.observe(at(s), &[], Some(&sys(100, 40, 50_000)), None);
        }
        for s in 30..40 {
            let out = c.observe(at(s), &[], Some(&sys(100, 40, 1_000_000)), None);
            assert!(!kinds(&out).contains(&"io_bottleneck"));
        }
    }

    #[test]
    fn disconnection_storm_after_warmup_only() {
        let t0 = Instant::now();
        let mut c = Correlator::new(t0, Duration::from_secs(60));
        let storm = Disconnects {
            storm: Some(12),
            reconnecting: vec!["127.0.0.1:8125".into()],
        };
        assert!(
            c.observe(t0 + Duration::from_secs(5), &[], None, Some(&storm))
                .is_empty()
        );
        let out = c.observe(t0 + Duration::from_secs(61), &[], None, Some(&storm));
        assert_eq!(kinds(&out), vec!["disconnection_storm"]);
        assert!(out[0].evidence.contains("127.0.0.1:8125"));
        let calm = Disconnects::default();
        assert!(
            c.observe(t0 + Duration::from_secs(62), &[], None, Some(&calm))
                .is_empty()
        );
    }
}
