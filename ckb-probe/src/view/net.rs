//! Views of the network layer: the peer table, the recent connection-event log and the status
//! line with churn alerts.

use std::time::Duration;

use super::{Align, Table, bytes, hms, thousands};
use crate::analysis::net::{EventRecord, NetAlert, NetInterval, PeerReport, Reconnecting};

pub struct Header<'a> {
    pub pid: u32,
    pub uptime: Duration,
    pub interval: Duration,
    pub node: &'a str,
    pub path: &'a str,
}

pub(crate) fn rate(b: f64) -> String {
    format!("{}/s", bytes(b))
}

pub(crate) fn remote(p: &PeerReport) -> String {
    if p.remote.contains(':') {
        format!("[{}]:{}", p.remote, p.port)
    } else {
        format!("{}:{}", p.remote, p.port)
    }
}

pub(crate) fn short_id(id: &Option<String>) -> String {
    match id.as_deref() {
        Some(id) if id.chars().count() > 12 => {
            let tail: String = id
                .chars()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        }
        Some(id) if !id.is_empty() => id.to_string(),
        _ => "—".into(),
    }
}

pub(crate) fn age(secs: Option<f64>) -> String {
    secs.map_or("—".into(), |s| hms(Duration::from_secs_f64(s.max(0.0))))
}

/// The peer table: at most `max_rows` peers, open connections first.
pub fn table(h: &Header, iv: &NetInterval, max_rows: usize) -> String {
    let rows: Vec<Vec<String>> = iv
        .peers
        .iter()
        .take(max_rows)
        .map(|p| {
            vec![
                remote(p),
                p.direction.to_string(),
                short_id(&p.node_id),
                p.version
                    .clone()
                    .filter(|v| !v.is_empty())
                    .unwrap_or("—".into()),
                bytes(p.bytes_sent as f64),
                bytes(p.bytes_received as f64),
                rate(p.send_bytes_per_sec),
                rate(p.recv_bytes_per_sec),
                thousands(p.retransmits),
                format!(
                    "{}{}",
                    age(p.age_secs),
                    if p.age_from_attach { "+" } else { "" }
                ),
                p.state.clone(),
            ]
        })
        .collect();
    let t = &iv.totals;
    let mut banner = vec![
        format!(
            "Uptime: {}   Sampling: {}   Node: {}   Path: {}",
            hms(h.uptime),
            fmt_interval(h.interval),
            h.node,
            h.path
        ),
        format!(
            "Total: sent {} ({}), received {} ({}), connects {}, accepts {}, closes {}, retransmits {}",
            bytes(t.bytes_sent as f64),
            rate(t.send_bytes_per_sec),
            bytes(t.bytes_received as f64),
            rate(t.recv_bytes_per_sec),
            thousands(t.connects),
            thousands(t.accepts),
            thousands(t.closes),
            thousands(t.retransmits)
        ),
    ];
    if iv.peers.len() > max_rows {
        banner.push(format!(
            "Showing {max_rows} of {} peers (open connections first, then the busiest)",
            iv.peers.len()
        ));
    }
    let mut out = Table {
        title: format!("CKB Network Monitor (PID: {})", h.pid),
        banner,
        header: [
            "Peer", "Dir", "Node ID", "Version", "Sent", "Recv", "Send/s", "Recv/s", "Retx", "Age",
            "State",
        ]
        .map(String::from)
        .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
        ],
        rows,
    }
    .render();
    if iv.peers.is_empty() {
        out.push_str("  (no TCP peers seen yet)\n");
    } else if iv.peers.iter().any(|p| p.age_from_attach) {
        out.push_str("  Age+: the connection predates ckb-probe; its age counts from attach.\n");
    }
    out
}

fn fmt_interval(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// The most recent connection events.
pub fn event_log(events: &[EventRecord], total_60s: usize) -> String {
    if events.is_empty() {
        return "  Connection events: none in the last 60 s.\n".into();
    }
    let rows = events
        .iter()
        .map(|e| {
            let ep = if e.remote.contains(':') {
                format!("[{}]:{}", e.remote, e.port)
            } else {
                format!("{}:{}", e.remote, e.port)
            };
            let detail = match e.kind {
                "close" => match (e.age_secs, e.bytes_sent, e.bytes_received) {
                    (Some(a), Some(s), Some(r)) => format!(
                        "after {}, sent {}, recv {} (from {})",
                        age(Some(a)),
                        bytes(s as f64),
                        bytes(r as f64),
                        e.old_state
                    ),
                    _ => format!("never established (from {})", e.old_state),
                },
                "adopt" => format!("already open ({})", e.new_state),
                _ => String::new(),
            };
            vec![
                e.time.get(11..23).unwrap_or(&e.time).to_string(),
                e.kind.to_string(),
                ep,
                e.local_port.to_string(),
                e.direction.to_string(),
                detail,
            ]
        })
        .collect();
    let mut out = Table {
        title: "Connection Events".into(),
        banner: vec![],
        header: ["Time", "Event", "Peer", "Local", "Dir", "Detail"]
            .map(String::from)
            .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Left,
            Align::Left,
        ],
        rows,
    }
    .render();
    out.push_str(&format!(
        "  Showing {} of {} connection events in the last 60s.\n",
        events.len(),
        thousands(total_60s as u64)
    ));
    out
}

/// The status line, then each alert, the reconnecting peers and any loss.
pub fn status(
    alerts: &[NetAlert],
    reconnecting: &[Reconnecting],
    warmup_left: Duration,
    lost: u64,
    map_full: u64,
) -> String {
    let mut out = String::new();
    if alerts.is_empty() {
        if warmup_left > Duration::ZERO {
            out.push_str(&format!(
                "  Status: ⏳ Warming up — churn alerts start in {}.\n",
                hms(warmup_left)
            ));
        } else {
            out.push_str("  Status: ✅ Normal — no disconnection storm.\n");
        }
    } else {
        for a in alerts {
            let icon = if a.kind == "disconnection_storm" {
                "⚠️  DISCONNECTION STORM"
            } else {
                "⚠️  RECONNECTING PEER"
            };
            let since = a.since.get(11..19).unwrap_or(&a.since);
            out.push_str(&format!("  {icon} [since {since}]: {}\n", a.message));
        }
    }
    if !reconnecting.is_empty() {
        let list: Vec<String> = reconnecting
            .iter()
            .map(|r| format!("{} ({}×)", r.peer, r.connections))
            .collect();
        out.push_str(&format!(
            "  Reconnecting peers (≥3 connections in 60s): {}\n",
            list.join(", ")
        ));
    }
    if lost > 0 || map_full > 0 {
        out.push_str(&format!(
            "  Lost connection events: {lost}   Unrecorded sockets/peers (maps full): {map_full}\n"
        ));
    }
    out
}
