//! Views of the syscall layer: the top-N table, the I/O-by-role table (which thread role a
//! `pwrite64` or `fdatasync` comes from: compaction, flush or the commit path), the full
//! per-role breakdown, and the derived-metrics lines.

use std::time::Duration;

use ckb_probe_common::syscall::{Role, kind};

use super::{Align, Table, bytes, hms, thousands, us};
use crate::analysis::syscall::{SysInterval, SysReport};

pub struct Header<'a> {
    pub pid: u32,
    pub uptime: Duration,
    pub interval: Duration,
    pub node: &'a str,
}

fn fmt_interval(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

pub(crate) fn rate(v: f64) -> String {
    if v > 0.0 && v < 1.0 {
        format!("{v:.2}")
    } else {
        thousands(v.round() as u64)
    }
}

pub(crate) fn pct(v: f64) -> String {
    format!("{:.1}", v * 100.0)
}

pub(crate) fn per_call(r: &SysReport) -> String {
    match r.bytes {
        Some(b) if r.count > 0 => bytes(b as f64 / r.count as f64),
        _ => "—".into(),
    }
}

/// The main table: the `top` system calls by total time. With `role`, only that role's calls
/// (time share then relative to the role's syscall time).
pub fn table(h: &Header, iv: &SysInterval, top: usize, role: Option<Role>) -> String {
    let (title, rows): (String, Vec<&SysReport>) = match role {
        None => (
            format!("CKB Syscall Monitor (PID: {})", h.pid),
            iv.syscalls.iter().collect(),
        ),
        Some(r) => (
            format!("CKB Syscall Monitor (PID: {}) — role {}", h.pid, r.name()),
            iv.role_rows(r),
        ),
    };
    let role_total: u64 = rows.iter().map(|r| r.total_ns).sum();
    let nthreads: usize = match role {
        None => iv.threads.values().sum(),
        Some(r) => iv.threads.get(r.name()).copied().unwrap_or(0),
    };
    let shown = rows.len().min(top);
    let mut out_rows: Vec<Vec<String>> = rows[..shown]
        .iter()
        .map(|r| {
            let share = match role {
                None => r.time_share,
                Some(_) if role_total > 0 => r.total_ns as f64 / role_total as f64,
                Some(_) => 0.0,
            };
            vec![
                r.name.clone(),
                rate(r.calls_per_sec),
                thousands(r.errors),
                us(r.avg_us),
                us(r.p99_us),
                pct(share),
            ]
        })
        .collect();
    if rows.len() > shown {
        let rest: u64 = rows[shown..].iter().map(|r| r.count).sum();
        out_rows.push(vec![
            format!("({} more)", rows.len() - shown),
            rate(rest as f64 / iv.secs.max(f64::MIN_POSITIVE)),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    if out_rows.is_empty() {
        out_rows.push(vec!["(no system calls)".into()]);
    }
    Table {
        title,
        banner: vec![format!(
            "Uptime: {}   Sampling: {}   Threads: {}   Node: {}",
            hms(h.uptime),
            fmt_interval(h.interval),
            nthreads,
            h.node
        )],
        header: [
            "Syscall", "Calls/s", "Errors", "Avg(μs)", "P99(μs)", "Time%",
        ]
        .map(String::from)
        .to_vec(),
        align: vec![
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows: out_rows,
    }
    .render()
}

/// I/O system calls split by thread role: the answer to "is this pwrite64 compaction or the
/// commit path?". One row per (call, role); calls ordered by total time.
pub fn io_by_role(iv: &SysInterval, top: usize) -> String {
    let io: Vec<&SysReport> = iv
        .syscalls
        .iter()
        .filter(|r| r.kind & kind::ROLE_HIST != 0)
        .take(top)
        .collect();
    let mut rows = Vec::new();
    for call in &io {
        for (i, (role, r)) in iv.by_role_of(&call.name).into_iter().enumerate() {
            rows.push(vec![
                if i == 0 {
                    call.name.clone()
                } else {
                    String::new()
                },
                role.name().to_string(),
                rate(r.calls_per_sec),
                us(r.avg_us),
                us(r.p99_us),
                per_call(r),
                pct(r.time_share),
            ]);
        }
    }
    if rows.is_empty() {
        return "  (no file I/O system calls in this interval)\n".into();
    }
    Table {
        title: "File I/O by thread role".into(),
        banner: vec![],
        header: [
            "Syscall",
            "Role",
            "Calls/s",
            "Avg(μs)",
            "P99(μs)",
            "Bytes/call",
            "Time%",
        ]
        .map(String::from)
        .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows,
    }
    .render()
}

/// Every role's `top` calls, roles ordered by their syscall time.
pub fn by_role(iv: &SysInterval, top: usize) -> String {
    let mut rows = Vec::new();
    for (role, total) in iv.roles_by_time() {
        let calls = iv.role_rows(role);
        let threads = iv.threads.get(role.name()).copied().unwrap_or(0);
        for (i, r) in calls.iter().take(top).enumerate() {
            rows.push(vec![
                if i == 0 {
                    format!("{} ({threads})", role.name())
                } else {
                    String::new()
                },
                r.name.clone(),
                rate(r.calls_per_sec),
                thousands(r.errors),
                us(r.avg_us),
                pct(if total > 0 {
                    r.total_ns as f64 / total as f64
                } else {
                    0.0
                }),
            ]);
        }
    }
    if rows.is_empty() {
        return "  (no system calls in this interval)\n".into();
    }
    Table {
        title: "By thread role (threads)".into(),
        banner: vec![],
        header: ["Role", "Syscall", "Calls/s", "Errors", "Avg(μs)", "Time%"]
            .map(String::from)
            .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows,
    }
    .render()
}

/// The derived metrics, threads per role, and loss counters.
pub fn status(iv: &SysInterval) -> String {
    let d = &iv.derived;
    let opt_pct = |v: Option<f64>| v.map_or("—".into(), |x| format!("{}%", pct(x)));
    let opt_bytes = |v: Option<f64>| v.map_or("—".into(), bytes);
    let mut out = String::new();
    out.push_str(&format!(
        "  Futex: {} calls/s, {} wait, {} of thread time waiting   I/O: {}/read, {}/write\n",
        rate(d.futex_calls as f64 / iv.secs.max(f64::MIN_POSITIVE)),
        opt_pct(d.futex_wait_ratio),
        opt_pct(d.futex_wait_time_share),
        opt_bytes(d.read_bytes_per_call),
        opt_bytes(d.write_bytes_per_call),
    ));
    out.push_str(&format!(
        "  Epoll: {} wakes/s, {} events/wake   fdatasync+fsync: {} calls, avg {}μs, P99 {}μs\n",
        rate(d.epoll_wakes_per_sec),
        d.epoll_events_per_wake
            .map_or("—".into(), |e| format!("{e:.1}")),
        thousands(d.fdatasync_calls),
        us(d.fdatasync_avg_us),
        us(d.fdatasync_p99_us),
    ));
    if !iv.threads.is_empty() {
        let mut t: Vec<(&str, usize)> = iv.threads.iter().map(|(k, v)| (*k, *v)).collect();
        t.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = t.iter().map(|(r, n)| format!("{r} {n}")).collect();
        out.push_str(&format!("  Threads by role: {}\n", list.join(", ")));
    }
    if iv.unpaired > 0 || iv.hist_full > 0 || iv.stats_full > 0 {
        out.push_str(&format!(
            "  Unpaired exits: {} (calls in flight at attach)   Not in histograms: {}   Not counted (map full): {}\n",
            iv.unpaired, iv.hist_full, iv.stats_full
        ));
    }
    out
}
