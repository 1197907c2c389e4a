//! The network layer's part of a report.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::de::{self, Name};
use crate::analysis::net::{EventRecord, NetAlert, NetInterval, Reconnecting};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetSection {
    /// How the layer is attached: `tracepoints` or `kprobes`.
    pub path: String,
    /// Peers (rates over the report's span), totals and loss counters.
    pub stats: NetInterval,
    /// This interval's connection events, oldest first.
    pub events: Vec<EventRecord>,
    /// Events of this interval beyond the cap of `events`.
    pub events_dropped: u64,
    /// Churn alerts active now.
    pub alerts: Vec<NetAlert>,
    /// Peers that connected repeatedly in the last 60 s.
    pub reconnecting: Vec<Reconnecting>,
    /// Whether the node's RPC answered `get_peers` (node ids and versions).
    pub rpc: bool,
    /// Seconds before churn alerts may fire.
    pub warmup_left_secs: f64,
    /// The most recent connection events of the last 60 s, oldest first.
    pub recent_events: Vec<EventRecord>,
    /// Connection events in the last 60 s.
    pub events_60s: u64,
    /// The whole run (summary).
    pub run: Option<NetRun>,
}

/// What only a summary carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetRun {
    pub programs: Vec<String>,
    pub sock_layout: String,
    pub listen_ports: BTreeSet<u16>,
    pub p2p_ports: Option<BTreeSet<u16>>,
    /// Every event received (P2P or not), by kind.
    #[serde(deserialize_with = "de::name_map")]
    pub event_counts: BTreeMap<Name, u64>,
    pub max_disconnections_60s: u64,
    pub storms: u64,
    pub reconnecting_peers: BTreeSet<String>,
}
