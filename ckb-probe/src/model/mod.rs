//! The run model: one typed value per interval, and one for the whole run, carrying every
//! layer's numbers, alerts and probe health. The session ([`crate::session`]) makes them; every
//! front end (text tables, NDJSON, the TUI, the Prometheus exporter) is a view of them and
//! computes nothing they lack. The types serialize with serde; NDJSON, the public line format,
//! is the view in [`crate::view::ndjson`], which also reads a recorded run back into this model.

pub mod de;
pub mod net;
pub mod rocksdb;
pub mod syscall;

use ckb_probe_common::hist::{BUCKETS, bucket_high, bucket_low};
use serde::{Deserialize, Serialize};

use crate::analysis::correlate::Correlation;

pub use self::{net::NetSection, rocksdb::RocksSection, syscall::SysSection};

/// A tracing layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerName {
    Rocksdb,
    Syscall,
    Net,
}

impl LayerName {
    pub const ALL: [LayerName; 3] = [LayerName::Rocksdb, LayerName::Syscall, LayerName::Net];

    pub fn name(self) -> &'static str {
        match self {
            LayerName::Rocksdb => "rocksdb",
            LayerName::Syscall => "syscall",
            LayerName::Net => "net",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    Signal,
    TargetExited,
    Duration,
    Count,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            End::Signal => "signal",
            End::TargetExited => "target_exited",
            End::Duration => "duration",
            End::Count => "count",
        }
    }
}

/// An interval report, or the whole run's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Interval,
    Summary,
}

/// The chain as the node's RPC tells it (when reachable).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    pub tip_block_number: Option<u64>,
    /// The node's best known header number (from `sync_state`), to tell catching up from in sync.
    pub best_known_block_number: Option<u64>,
    pub peers: Option<u64>,
}

impl Chain {
    /// "synced", "syncing" or "unknown".
    pub fn sync_state(&self) -> &'static str {
        match (self.tip_block_number, self.best_known_block_number) {
            (Some(t), Some(b)) if t + 2 >= b => "synced",
            (Some(_), Some(_)) => "syncing",
            _ => "unknown",
        }
    }
}

/// What every report starts with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub kind: Kind,
    /// When the report was made, RFC 3339 (UTC, seconds).
    pub timestamp: String,
    pub pid: u32,
    /// `CKB v0.210.0`, or the process name and `(not CKB)`.
    pub node: String,
    /// The layers of the run; the first is the primary (its NDJSON fields sit at the top level).
    pub layers: Vec<LayerName>,
    /// Whole seconds since the probes were attached (interval reports).
    pub uptime_secs: u64,
    /// The interval this report covers, measured (interval reports).
    pub interval_secs: f64,
    /// The configured report interval.
    pub sampling_secs: f64,
    /// The run's length and why it ended (summary).
    pub duration_secs: f64,
    pub end: Option<End>,
    pub chain: Option<Chain>,
    /// The running kernel's release (`uname -r`); empty in a report read back from NDJSON,
    /// which does not carry it.
    #[serde(default)]
    pub kernel: String,
}

/// The target's life as a run following it (`--follow`) sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleKind {
    /// The traced process exited; the run waits for its successor.
    TargetExited,
    /// The run attached to the successor.
    TargetAttached,
}

/// A gap in a followed run: counters before it belong to `previous_pid`, after it to `pid`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    #[serde(rename = "type")]
    pub kind: LifecycleKind,
    /// RFC 3339, UTC, seconds.
    pub timestamp: String,
    pub pid: u32,
    /// The process traced before (`target_attached`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_pid: Option<u32>,
    /// The new process's label (`target_attached`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How many times the run has attached to a successor so far.
    pub restarts: u64,
}

/// A layer that was asked for and could not run, with the reason (the others keep working).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    pub layer: LayerName,
    pub reason: String,
}

/// One report of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub header: Header,
    pub rocksdb: Option<RocksSection>,
    pub syscall: Option<SysSection>,
    pub net: Option<NetSection>,
    /// Cross-layer alerts; present when more than one layer runs (interval reports).
    pub correlations: Option<Vec<Correlation>>,
    pub unavailable: Vec<Unavailable>,
}

/// Probe health over the report's span, summed over the layers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    /// Events the kernel could not hand over (ring buffers full).
    pub lost_events: u64,
    /// Returns or exits with no matching entry.
    pub unpaired: u64,
    /// Column-family handles that did not validate.
    pub cf_unresolved: u64,
    /// Updates not recorded because a map was full.
    pub maps_full: u64,
}

impl Report {
    pub fn primary(&self) -> Option<LayerName> {
        self.header.layers.first().copied()
    }

    pub fn health(&self) -> Health {
        let mut h = Health::default();
        if let Some(r) = &self.rocksdb {
            h.lost_events += r.stats.lost_events;
            h.unpaired += r.stats.unpaired;
            h.cf_unresolved += r.stats.cf_unresolved;
            h.maps_full += r.stats.stats_full;
        }
        if let Some(s) = &self.syscall {
            h.unpaired += s.stats.unpaired;
            h.maps_full += s.stats.stats_full + s.stats.hist_full;
        }
        if let Some(n) = &self.net {
            h.lost_events += n.stats.lost_events;
            h.maps_full += n.stats.map_full;
        }
        h
    }
}

/// One bucket of a latency histogram: `count` values in `[low_ns, high_ns)`. Serialized as
/// `[low_ns, high_ns, count]`: reports carry many of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u64; 3]", into = "[u64; 3]")]
pub struct Bucket {
    pub low_ns: u64,
    /// `u64::MAX` for the last, open-ended bucket.
    pub high_ns: u64,
    pub count: u64,
}

impl From<[u64; 3]> for Bucket {
    fn from([low_ns, high_ns, count]: [u64; 3]) -> Self {
        Bucket {
            low_ns,
            high_ns,
            count,
        }
    }
}

impl From<Bucket> for [u64; 3] {
    fn from(b: Bucket) -> Self {
        [b.low_ns, b.high_ns, b.count]
    }
}

/// The non-empty buckets of one of the kernel's histograms (log-linear, see
/// [`ckb_probe_common::hist`]).
pub fn sparse(h: &[u64]) -> Vec<Bucket> {
    h.iter()
        .enumerate()
        .take(BUCKETS)
        .filter(|(_, n)| **n > 0)
        .map(|(i, &count)| Bucket {
            low_ns: bucket_low(i),
            high_ns: bucket_high(i),
            count,
        })
        .collect()
}

/// Number of values in a sparse histogram.
pub fn total(h: &[Bucket]) -> u64 {
    h.iter().map(|b| b.count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_keeps_bounds_and_counts() {
        let mut h = vec![0u64; BUCKETS];
        h[3] = 2;
        h[20] = 5;
        let s = sparse(&h);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            Bucket {
                low_ns: 3,
                high_ns: 4,
                count: 2
            }
        );
        assert_eq!(s[1].low_ns, bucket_low(20));
        assert_eq!(total(&s), 7);
    }

    #[test]
    fn sync_state_from_tip_and_best_known() {
        let c = |t, b| Chain {
            tip_block_number: t,
            best_known_block_number: b,
            peers: None,
        };
        assert_eq!(c(Some(100), Some(101)).sync_state(), "synced");
        assert_eq!(c(Some(10), Some(5000)).sync_state(), "syncing");
        assert_eq!(c(None, None).sync_state(), "unknown");
    }
}
