//! The human view of a report: each layer's tables in the order of the run's layers, then the
//! cross-layer alerts; for a summary, each layer's whole-run tables and counts.

use std::time::Duration;

use ckb_probe_common::syscall::Role;

use super::{hms, net as vnet, rocksdb as vrocks, syscall as vsys, thousands};
use crate::model::{
    Kind, LayerName, Lifecycle, LifecycleKind, NetSection, Report, RocksSection, SysSection,
};

/// A followed target's exit or return, as a line between reports.
pub fn lifecycle(e: &Lifecycle) -> String {
    let at = e.timestamp.get(11..19).unwrap_or(&e.timestamp);
    match e.kind {
        LifecycleKind::TargetExited => format!(
            "\n── [{at}] target PID {} exited; waiting for the node to come back ──\n\n",
            e.pid
        ),
        LifecycleKind::TargetAttached => format!(
            "\n── [{at}] attached to PID {} (was {}): {}; counters start again ──\n\n",
            e.pid,
            e.previous_pid.map_or("?".into(), |p| p.to_string()),
            e.node.as_deref().unwrap_or("?")
        ),
    }
}

/// What the RocksDB view shows instead of (or beside) the rate table.
#[derive(Clone, Copy, Debug, Default)]
pub struct RocksShow {
    pub histogram: bool,
    pub slow: bool,
    pub by_cf: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct SysShow {
    pub top: usize,
    pub by_role: bool,
    pub role: Option<Role>,
}

#[derive(Clone, Copy, Debug)]
pub struct NetShow {
    pub rows: usize,
    pub events: usize,
}

/// How each layer is shown when it leads the run; layers that run beside another are shown
/// compactly (syscall top 5, 10 peers, 5 events).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub rocksdb: RocksShow,
    pub syscall: SysShow,
    pub net: NetShow,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rocksdb: RocksShow::default(),
            syscall: SysShow {
                top: 15,
                by_role: false,
                role: None,
            },
            net: NetShow {
                rows: 30,
                events: 10,
            },
        }
    }
}

const SECONDARY_SYS: SysShow = SysShow {
    top: 5,
    by_role: false,
    role: None,
};
const SECONDARY_NET: NetShow = NetShow {
    rows: 10,
    events: 5,
};

/// A report as text.
pub fn render(report: &Report, opts: &Options) -> String {
    let mut out = String::new();
    for (i, &layer) in report.header.layers.iter().enumerate() {
        let primary = i == 0;
        match layer {
            LayerName::Rocksdb => {
                if let Some(r) = &report.rocksdb {
                    out.push_str(&rocksdb(report, r, &opts.rocksdb));
                }
            }
            LayerName::Syscall => {
                if let Some(s) = &report.syscall {
                    let show = if primary { opts.syscall } else { SECONDARY_SYS };
                    out.push_str(&syscall(report, s, &show, primary));
                }
            }
            LayerName::Net => {
                if let Some(n) = &report.net {
                    let show = if primary { opts.net } else { SECONDARY_NET };
                    out.push_str(&net(report, n, &show, primary));
                }
            }
        }
    }
    if let Some(found) = report.correlations.as_ref().filter(|c| !c.is_empty()) {
        out.push_str("\n🔗 CORRELATED ALERTS\n");
        for f in found {
            out.push_str(&format!(
                "  → [{}] {}: {}\n    next: `{}`\n",
                f.time.get(11..19).unwrap_or(&f.time),
                f.summary,
                f.evidence,
                f.next
            ));
        }
    }
    out
}

/// (uptime, sampling) of an interval report, or the run's length twice for a summary.
fn span(report: &Report) -> (Duration, Duration) {
    let h = &report.header;
    match h.kind {
        Kind::Interval => (
            Duration::from_secs(h.uptime_secs),
            Duration::from_secs_f64(h.sampling_secs.max(0.0)),
        ),
        Kind::Summary => {
            let d = Duration::from_secs_f64(h.duration_secs.max(0.0));
            (d, d)
        }
    }
}

fn summary_title(layer: &str, primary: bool, d: Duration, what: &str) -> String {
    format!(
        "\n{}ummary over {} ({what} over the whole run):\n",
        if primary {
            "S".to_string()
        } else {
            format!("{layer} s")
        },
        hms(d)
    )
}

fn rocksdb(report: &Report, r: &RocksSection, show: &RocksShow) -> String {
    let h = &report.header;
    let (uptime, interval) = span(report);
    let header = vrocks::Header {
        pid: h.pid,
        uptime,
        interval,
        node: &h.node,
    };
    let mut out = String::new();
    if h.kind == Kind::Summary {
        out.push_str(&summary_title(
            "RocksDB",
            true,
            uptime,
            "averages and percentiles",
        ));
        out.push_str(&vrocks::table(&header, &r.stats));
        let counts: Vec<String> = r
            .stats
            .operations
            .iter()
            .filter(|(_, o)| o.count > 0)
            .map(|(k, o)| format!("{k} {}", thousands(o.count)))
            .collect();
        out.push_str(&format!("  Operations: {}\n", counts.join(", ")));
        out.push_str(&format!(
            "  Slow operations: {}   Lost slow events: {}   Unpaired returns: {}\n",
            thousands(r.slow.as_ref().map_or(0, |s| s.total)),
            r.stats.lost_events,
            r.stats.unpaired
        ));
        return out;
    }
    if show.histogram {
        out.push_str(&vrocks::histograms(&r.histograms, "since start"));
    } else if let (true, Some(slow)) = (show.slow, &r.slow) {
        let skip = slow.recent.len().saturating_sub(20);
        out.push_str(&vrocks::slow_table(
            slow.threshold_us,
            &slow.recent[skip..],
            slow.last_60s,
        ));
    } else {
        out.push_str(&vrocks::table(&header, &r.stats));
        if show.by_cf {
            out.push_str(&vrocks::cf_table(&r.stats));
        }
    }
    out.push_str(&vrocks::status(
        &r.anomalies,
        Duration::from_secs_f64(r.warmup_left_secs.max(0.0)),
        &r.stats,
    ));
    out
}

fn syscall(report: &Report, s: &SysSection, show: &SysShow, primary: bool) -> String {
    let h = &report.header;
    let (uptime, interval) = span(report);
    let header = vsys::Header {
        pid: h.pid,
        uptime,
        interval,
        node: &h.node,
    };
    let iv = &s.stats;
    let mut out = String::new();
    if h.kind == Kind::Summary {
        out.push_str(&summary_title(
            "Syscall",
            primary,
            uptime,
            "averages and percentiles",
        ));
    }
    out.push_str(&vsys::table(&header, iv, show.top, show.role));
    if show.by_role {
        out.push_str(&vsys::by_role(iv, show.top));
    } else if show.role.is_none() {
        out.push_str(&vsys::io_by_role(iv, show.top));
    }
    out.push_str(&vsys::status(iv));
    if h.kind == Kind::Summary {
        let calls: u64 = iv.syscalls.iter().map(|r| r.count).sum();
        out.push_str(&format!(
            "  System calls: {} ({} distinct)   Unpaired exits: {}\n",
            thousands(calls),
            iv.syscalls.len(),
            iv.unpaired
        ));
    }
    out
}

fn net(report: &Report, n: &NetSection, show: &NetShow, primary: bool) -> String {
    let h = &report.header;
    let (uptime, interval) = span(report);
    let header = vnet::Header {
        pid: h.pid,
        uptime,
        interval,
        node: &h.node,
        path: &n.path,
    };
    let mut out = String::new();
    if let (Kind::Summary, Some(run)) = (h.kind, &n.run) {
        out.push_str(&summary_title("Network", primary, uptime, "rates averaged"));
        out.push_str(&vnet::table(&header, &n.stats, show.rows));
        let counts: Vec<String> = run
            .event_counts
            .iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        let reconnecting: Vec<String> = run.reconnecting_peers.iter().cloned().collect();
        out.push_str(&format!(
            "  Events: {}\n  Most disconnections in 60 s: {}   Storm alerts: {}   Reconnecting peers: {}\n  Lost connection events: {}\n",
            if counts.is_empty() { "none".into() } else { counts.join(", ") },
            run.max_disconnections_60s,
            run.storms,
            if reconnecting.is_empty() { "none".into() } else { reconnecting.join(", ") },
            n.stats.lost_events
        ));
        return out;
    }
    out.push_str(&vnet::table(&header, &n.stats, show.rows));
    if show.events > 0 {
        let skip = n.recent_events.len().saturating_sub(show.events);
        out.push_str(&vnet::event_log(
            &n.recent_events[skip..],
            n.events_60s as usize,
        ));
    }
    out.push_str(&vnet::status(
        &n.alerts,
        &n.reconnecting,
        Duration::from_secs_f64(n.warmup_left_secs.max(0.0)),
        n.stats.lost_events,
        n.stats.map_full,
    ));
    out
}
