//! Every tab drawn from recorded runs with ratatui's `TestBackend`, asserting on the screen:
//! titles, rows, and numbers in the columns they belong to, at 80x24 and at a large size.
//!
//! The recordings (tests/data) are real runs: `ckb-probe rocksdb --with syscall,net --slow
//! --record` against the RocksDB testbed, and `ckb-probe overview --record` against the TCP
//! netbed (no RocksDB there, so that layer is unavailable with its reason).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend};

use super::*;
use crate::{
    analysis::anomaly::Anomaly,
    model::{Chain, Kind},
    view::{ndjson, syscall as vsys, thousands, us},
};

const TESTBED: &str = include_str!("../../../tests/data/overview-testbed.ndjson");
const NETBED: &str = include_str!("../../../tests/data/overview-netbed.ndjson");

fn reports(text: &str) -> Vec<Report> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| ndjson::parse(l).expect("recorded line parses"))
        .collect()
}

/// The interval reports of a recording, each with the per-syscall histograms a live report
/// carries (NDJSON keeps them for the summary only, so they are taken from it).
fn intervals(text: &str) -> Vec<Report> {
    let all = reports(text);
    let summary = all
        .iter()
        .find(|r| r.header.kind == Kind::Summary)
        .expect("summary line");
    let hists = summary.syscall.as_ref().map(|s| s.histograms.clone());
    all.iter()
        .filter(|r| r.header.kind == Kind::Interval)
        .cloned()
        .map(|mut r| {
            if let (Some(s), Some(h)) = (r.syscall.as_mut(), hists.clone()) {
                s.histograms = h;
            }
            r
        })
        .collect()
}

fn app_from(text: &str) -> App {
    let ivs = intervals(text);
    let first = &ivs[0];
    let mut app = App::new(
        first.header.pid,
        &["attached to PID 1 (test): 23 of 23 functions traced".to_string()],
        &first.unavailable,
    );
    for r in ivs {
        app.update(Msg::Report(Box::new(r)));
    }
    app
}

fn last(text: &str) -> Report {
    intervals(text).pop().expect("an interval")
}

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| draw::view(app, f)).expect("draw");
    let buf = t.backend().buffer();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect()
}

fn key(app: &mut App, code: KeyCode) -> Control {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn has(screen: &[String], text: &str) -> bool {
    screen.iter().any(|l| l.contains(text))
}

#[track_caller]
fn assert_has(screen: &[String], text: &str) {
    assert!(
        has(screen, text),
        "{text:?} not on screen:\n{}",
        screen.join("\n")
    );
}

/// The first line containing all of `parts`, in that order.
#[track_caller]
fn line_with<'a>(screen: &'a [String], parts: &[&str]) -> &'a str {
    screen
        .iter()
        .find(|l| {
            let mut from = 0;
            parts.iter().all(|p| match l[from..].find(p) {
                Some(i) => {
                    from += i + p.len();
                    true
                }
                None => false,
            })
        })
        .unwrap_or_else(|| panic!("no line with {parts:?}:\n{}", screen.join("\n")))
}

/// Column (in characters) where `text` ends in `line`, searching from character `from`.
#[track_caller]
fn end_col(line: &str, text: &str, from: usize) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let pat: Vec<char> = text.chars().collect();
    (from..=chars.len().saturating_sub(pat.len()))
        .find(|&i| chars[i..i + pat.len()] == pat[..])
        .map(|i| i + pat.len())
        .unwrap_or_else(|| panic!("{text:?} not in {line:?} after column {from}"))
}

/// Column (in characters) where `text` starts in `line`.
fn start_col(line: &str, text: &str) -> usize {
    end_col(line, text, 0) - text.chars().count()
}

/// Where the last of `parts` ends, each searched after the one before.
fn chain_end(line: &str, parts: &[&str]) -> usize {
    parts.iter().fold(0, |from, p| end_col(line, p, from))
}

/// A value is right-aligned under its header: the last of `titles` (each found after the one
/// before) and the last of `values` end in the same column.
#[track_caller]
fn assert_under(head: &str, titles: &[&str], row: &str, values: &[&str]) {
    assert_eq!(
        chain_end(head, titles),
        chain_end(row, values),
        "{values:?} is not under {titles:?}:\n{head}\n{row}"
    );
}

#[test]
fn every_tab_fits_80x24_and_a_large_terminal() {
    for text in [TESTBED, NETBED] {
        let mut app = app_from(text);
        for tab in Tab::ALL {
            app.tab = tab;
            for (w, h) in [(80, 24), (200, 60)] {
                let s = screen(&app, w, h);
                assert_eq!(s.len(), h as usize);
                assert!(s[0].contains("ckb-probe"), "{}", s[0]);
                let tabs = &s[1];
                for t in Tab::ALL {
                    assert!(tabs.contains(t.title()), "{tabs}");
                }
                // The bottom line is the footer with the health counters.
                assert!(
                    s[h as usize - 1].contains("unpaired"),
                    "{}",
                    s[h as usize - 1]
                );
            }
        }
    }
}

#[test]
fn overview_tab_shows_the_four_quadrants() {
    let app = app_from(TESTBED);
    let r = last(TESTBED);
    let s = screen(&app, 80, 24);
    for title in [
        "P2P network",
        "RocksDB",
        "Syscalls: top 5 by time",
        "Events",
    ] {
        assert_has(&s, title);
    }
    // Header: node, PID, uptime of the last report; no RPC for the testbed.
    let h = &r.header;
    let head = line_with(
        &s,
        &[&h.node, &format!("PID {}", h.pid), "no RPC", "up 00:00:0"],
    );
    assert!(head.starts_with(" ckb-probe"), "{head}");
    // The RocksDB quadrant, top right: each operation with its QPS and P99 under the
    // headers.
    let rk = r.rocksdb.as_ref().unwrap();
    let qhead = line_with(&s, &["│Op", "QPS", "P99(μs)", "QPS trend"]);
    for op in ["GET", "PUT", "WRITE", "DELETE", "ITER_SEEK"] {
        let o = rk.stats.operations.get(op).unwrap();
        let qps = thousands(o.qps.round() as u64);
        let p99 = us(o.p99_us);
        let row = line_with(&s, &[&format!("│{op} "), &qps, &p99]);
        assert!(
            start_col(row, op) > 40,
            "RocksDB is the right quadrant: {row}"
        );
        assert_under(qhead, &["Op", "QPS"], row, &[op, &qps]);
        assert_under(qhead, &["Op", "P99(μs)"], row, &[op, &qps, &p99]);
    }
    // The syscall quadrant, bottom left: the top calls by time, in order.
    let sys = &r.syscall.as_ref().unwrap().stats.syscalls;
    let shead = line_with(&s, &["│Syscall", "Calls/s", "Avg(μs)", "Time%"]);
    let mut prev_y = 0;
    for c in sys.iter().take(5) {
        let rate = vsys::rate(c.calls_per_sec);
        let row = line_with(&s, &[&format!("│{}", c.name), &rate]);
        let y = s.iter().position(|l| l == row).unwrap();
        assert!(y > prev_y, "{} out of order", c.name);
        prev_y = y;
        assert_under(shead, &["Calls/s"], row, &[&c.name, &rate]);
        assert_under(
            shead,
            &["Time%"],
            row,
            &[&c.name, &rate, &vsys::pct(c.time_share)],
        );
    }
    // The testbed has no TCP peers; the event log starts with what attaching said.
    assert_has(&s, "(no TCP peers seen yet)");
    assert_has(&s, "INFO  attached to PID 1");
    // Learning the baseline (warm-up 3 s, recorded at 1-3 s) or already normal.
    assert!(has(&s, "Learning baseline") || has(&s, "Normal"));
}

#[test]
fn rocksdb_tab_shows_operations_histogram_history_slow_log_and_column_families() {
    let mut app = app_from(TESTBED);
    let r = last(TESTBED);
    let rk = r.rocksdb.as_ref().unwrap();
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.tab, Tab::Rocksdb);
    for (w, h) in [(80, 24), (160, 48)] {
        let s = screen(&app, w, h);
        let head = line_with(
            &s,
            &["Op", "QPS", "Avg(μs)", "P50(μs)", "P99(μs)", "Bytes/s"],
        );
        for op in ["GET", "PUT", "WRITE", "DELETE", "ITER_SEEK", "ITER_NEXT"] {
            let o = rk.stats.operations.get(op).unwrap();
            let cells = [
                ("QPS", thousands(o.qps.round() as u64)),
                ("Avg(μs)", us(o.avg_us)),
                ("P50(μs)", us(o.p50_us)),
                ("P99(μs)", us(o.p99_us)),
            ];
            let row = line_with(&s, &[&format!("{op} "), &cells[0].1, &cells[1].1]);
            let mut values = vec![op];
            for (title, v) in &cells {
                values.push(v);
                assert_under(head, &["Op", title], row, &values);
            }
        }
        // Each operation's QPS and P99 over the last intervals, as sparklines.
        line_with(&s, &["Errors", "QPS trend", "P99 trend"]);
        // GET is selected: marked, and the histogram and history follow it.
        assert!(line_with(&s, &["GET "]).contains("│›GET"));
        let total: u64 = rk.histograms["GET"].iter().map(|b| b.count).sum();
        assert_has(&s, "GET latency");
        assert_has(&s, &format!(" {} since start ", thousands(total)));
        assert_has(&s, "GET history (last 00:00:03)");
        let get = rk.stats.operations.get("GET").unwrap();
        assert_has(&s, &format!("QPS {}", thousands(get.qps.round() as u64)));
        assert_has(&s, &format!("P99 {}μs", us(get.p99_us)));
        // The slow log, newest first.
        let slow = rk.slow.as_ref().unwrap();
        assert_has(
            &s,
            &format!("Slow ops ≥1,000μs: {} in 60s", thousands(slow.last_60s)),
        );
        let newest = slow.recent.last().unwrap();
        let time = crate::view::clock_ms(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(newest.time_ms),
        );
        let row = line_with(&s, &[&time, newest.op().name()]);
        assert!(
            row.contains(&crate::view::latency(newest.latency_us())),
            "{row}"
        );
        // GET by column family: the first family with GETs, its CKB column and QPS.
        assert_has(&s, "GET by column family");
        let cf = rk
            .stats
            .column_families
            .iter()
            .find(|c| c.operations.contains_key("GET"))
            .unwrap();
        let qps = thousands(cf.operations["GET"].qps.round() as u64);
        line_with(
            &s,
            &[&format!("│{} ", cf.name), cf.column.unwrap_or(""), &qps],
        );
    }
    // Down selects PUT: histogram, history and column families follow.
    key(&mut app, KeyCode::Down);
    let s = screen(&app, 80, 24);
    assert!(line_with(&s, &["PUT "]).contains("│›PUT"));
    assert_has(&s, "PUT latency");
    assert_has(&s, "PUT history");
    assert_has(&s, "PUT by column family");
    // End selects the last row, Home the first; the selection never leaves the table.
    key(&mut app, KeyCode::End);
    assert_eq!(app.selected_op(), Op::IterNext);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected_op(), Op::IterNext);
    key(&mut app, KeyCode::Home);
    assert_eq!(app.selected_op(), Op::Get);
}

#[test]
fn network_tab_lists_peers_sortable_and_connection_events() {
    let mut app = app_from(NETBED);
    let r = last(NETBED);
    let n = r.net.as_ref().unwrap();
    assert!(!n.stats.peers.is_empty(), "the netbed recording has peers");
    key(&mut app, KeyCode::Char('3'));
    let s = screen(&app, 80, 24);
    assert_has(
        &s,
        &format!(
            "Peers {} (open {})",
            n.stats.totals.peers, n.stats.totals.open_connections
        ),
    );
    let head = line_with(
        &s,
        &[
            "Peer", "Dir", "Recv/s", "Send/s", "Recv", "Sent", "Retx", "Age",
        ],
    );
    for p in n.stats.peers.iter().take(3) {
        let ep = crate::view::net::remote(p);
        let recv_rate = crate::view::net::rate(p.recv_bytes_per_sec);
        let send_rate = crate::view::net::rate(p.send_bytes_per_sec);
        let recv = crate::view::bytes(p.bytes_received as f64);
        let row = line_with(&s, &[&format!("{ep} "), p.direction]);
        assert_under(
            head,
            &["Send/s", "Recv"],
            row,
            &[p.direction, &recv_rate, &send_rate, &recv],
        );
    }
    // The connection events, newest first, with the storm the netbed's churn caused.
    assert_has(
        &s,
        &format!("Connection events: {} in the last 60s", n.events_60s),
    );
    let newest = n.recent_events.last().unwrap();
    line_with(&s, &[newest.time.get(11..23).unwrap(), newest.kind]);
    // Sorting: s moves to the next column (marked in the header), r reverses it.
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.peer_sort, PeerSort::RecvRate);
    let s = screen(&app, 80, 24);
    line_with(&s, &["Recv/s▼"]);
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('s'));
    }
    assert_eq!(app.peer_sort, PeerSort::Sent);
    let sent: Vec<u64> = app.peers().iter().map(|p| p.bytes_sent).collect();
    assert!(sent.windows(2).all(|w| w[0] >= w[1]), "{sent:?}");
    key(&mut app, KeyCode::Char('r'));
    let sent: Vec<u64> = app.peers().iter().map(|p| p.bytes_sent).collect();
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "{sent:?}");
    line_with(&screen(&app, 80, 24), &["Sent▲"]);
    // The selected peer's details under the table; wide terminals add node id, version,
    // state.
    key(&mut app, KeyCode::Down);
    let p = app.peers()[1];
    let s = screen(&app, 160, 48);
    line_with(&s, &[&format!(" {} · node ", crate::view::net::remote(p))]);
    line_with(
        &s,
        &["Peer", "Dir", "Node ID", "Version", "Recv/s", "State"],
    );
}

#[test]
fn a_missing_layer_says_why_and_the_others_keep_working() {
    let app = app_from(NETBED);
    let r = last(NETBED);
    let why = &r.unavailable[0];
    assert_eq!(why.layer, LayerName::Rocksdb);
    let s = screen(&app, 80, 24);
    // The RocksDB quadrant says why; network and syscall quadrants have their numbers.
    assert_has(&s, "rocksdb layer unavailable: PID");
    assert_has(&s, "contains no RocksDB");
    assert!(!has(&s, "waiting for the first report"));
    let n = &r.net.as_ref().unwrap().stats.totals;
    assert_has(
        &s,
        &format!("Peers {}  open {}", n.peers, n.open_connections),
    );
    // The event log says it once, with the alerts the netbed's churn caused.
    let warn = app
        .data()
        .log
        .entries
        .iter()
        .filter(|e| e.text.starts_with("rocksdb layer unavailable"))
        .count();
    assert_eq!(warn, 1);
    let mut app = app;
    key(&mut app, KeyCode::Char('2'));
    let s = screen(&app, 80, 24);
    assert_has(&s, "rocksdb layer unavailable: PID");
}

#[test]
fn syscall_tab_ranks_by_time_with_roles_and_the_selected_histogram() {
    let mut app = app_from(TESTBED);
    let r = last(TESTBED);
    let iv = &r.syscall.as_ref().unwrap().stats;
    key(&mut app, KeyCode::Char('4'));
    for (w, h) in [(80, 24), (160, 48)] {
        let s = screen(&app, w, h);
        let head = line_with(
            &s,
            &[
                "Syscall", "Calls/s", "Errors", "Avg(μs)", "P99(μs)", "Time%",
            ],
        );
        let top = &iv.syscalls[0];
        let row = line_with(&s, &[&format!("│›{}", top.name)]);
        let (rate, errors, avg, p99, pct) = (
            vsys::rate(top.calls_per_sec),
            thousands(top.errors),
            us(top.avg_us),
            us(top.p99_us),
            vsys::pct(top.time_share),
        );
        assert_under(head, &["Calls/s"], row, &[&top.name, &rate]);
        assert_under(head, &["Avg(μs)"], row, &[&top.name, &rate, &errors, &avg]);
        assert_under(
            head,
            &["Time%"],
            row,
            &[&top.name, &rate, &errors, &avg, &p99, &pct],
        );
        // The top call's thread roles and histogram.
        assert_has(&s, &format!("{} by thread role", top.name));
        for (role, rr) in iv.by_role_of(&top.name).iter().take(2) {
            line_with(
                &s,
                &[&format!("{} (", role.name()), &vsys::rate(rr.calls_per_sec)],
            );
        }
        let total: u64 = r.syscall.as_ref().unwrap().histograms[&top.name]
            .iter()
            .map(|b| b.count)
            .sum();
        assert_has(&s, &format!("{} latency", top.name));
        assert_has(&s, &format!(" {} since start ", thousands(total)));
        if w >= 160 {
            line_with(&s, &["Bytes/call", "Max(μs)"]);
        }
    }
    // Down follows the ranking to the second call.
    key(&mut app, KeyCode::Down);
    let second = &iv.syscalls[1];
    assert_eq!(app.selected_syscall().unwrap().1.name, second.name);
    let s = screen(&app, 80, 24);
    assert_has(&s, &format!("{} by thread role", second.name));
}

#[test]
fn keys_switch_tabs_pause_help_and_quit() {
    let mut app = app_from(TESTBED);
    assert_eq!(app.tab, Tab::Overview);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Rocksdb);
    key(&mut app, KeyCode::BackTab);
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.tab, Tab::Syscall);
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.tab, Tab::Network);
    key(&mut app, KeyCode::Char('?'));
    assert!(app.help);
    assert_has(&screen(&app, 80, 24), "pause the screen");
    // Esc closes the help first; only then does it quit.
    assert_eq!(key(&mut app, KeyCode::Esc), Control::Continue);
    assert!(!app.help);
    assert_eq!(key(&mut app, KeyCode::Esc), Control::Quit);
    assert_eq!(key(&mut app, KeyCode::Char('q')), Control::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.update(Msg::Key(ctrl_c)), Control::Quit);

    // Paused, the screen keeps what it showed while reports keep coming in.
    let mut app = app_from(TESTBED);
    key(&mut app, KeyCode::Char('p'));
    assert!(app.paused);
    let shown = app.report().unwrap().header.timestamp.clone();
    let mut newer = last(TESTBED);
    newer.header.timestamp = "2099-01-01T00:00:00Z".into();
    newer.header.uptime_secs = 4242;
    app.update(Msg::Report(Box::new(newer)));
    assert_eq!(app.report().unwrap().header.timestamp, shown);
    let s = screen(&app, 80, 24);
    assert_has(&s, "PAUSED");
    assert!(!has(&s, "up 01:10:42"));
    key(&mut app, KeyCode::Char('p'));
    assert_has(&screen(&app, 80, 24), "up 01:10:42");
}

#[test]
fn alerts_are_logged_when_they_start_and_end() {
    let mut app = app_from(TESTBED);
    let mut r = last(TESTBED);
    r.rocksdb.as_mut().unwrap().anomalies.push(Anomaly {
        time: "2026-12-01T03:30:00Z".into(),
        kind: "latency_spike",
        operation: "WRITE",
        current_avg_us: 2_000.0,
        baseline_avg_us: 100.0,
        multiplier: 20.0,
        cause: "Compaction storm or write stall".into(),
        evidence: String::new(),
        next: "ckb-probe rocksdb --slow".into(),
    });
    app.update(Msg::Report(Box::new(r.clone())));
    app.update(Msg::Report(Box::new(r)));
    let alerts: Vec<&str> = app
        .data()
        .log
        .entries
        .iter()
        .filter(|e| e.level == Level::Alert)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].starts_with("WRITE avg latency 2,000μs is ×20.0"));
    let s = screen(&app, 80, 24);
    assert_has(&s, "ANOMALY since 03:30:00: WRITE ×20.0");
    assert_has(&s, "03:30:00 ALERT WRITE avg");
    app.update(Msg::Report(Box::new(last(TESTBED))));
    let ended = &app.data().log.entries.back().unwrap();
    assert_eq!(
        (ended.level, ended.text.as_str()),
        (Level::Clear, "WRITE latency anomaly ended")
    );
    assert_has(&screen(&app, 80, 24), "OK    WRITE latency anomaly");
}

#[test]
fn the_header_shows_the_chain_from_the_node_rpc() {
    let mut r = last(TESTBED);
    r.header.node = "CKB v0.210.0".into();
    r.header.chain = Some(Chain {
        tip_block_number: Some(12_345),
        best_known_block_number: Some(12_346),
        peers: Some(2),
    });
    let mut app = App::new(r.header.pid, &[], &[]);
    app.update(Msg::Report(Box::new(r.clone())));
    line_with(
        &screen(&app, 80, 24),
        &["CKB v0.210.0", "tip 12,345 synced", "up 00:00:0"],
    );
    r.header.chain = Some(Chain {
        tip_block_number: Some(100),
        best_known_block_number: Some(90_000),
        peers: Some(2),
    });
    app.update(Msg::Report(Box::new(r)));
    assert_has(&screen(&app, 80, 24), "tip 100 syncing");
}

#[test]
fn the_end_of_the_run_is_said_and_waits_for_q() {
    let mut app = app_from(TESTBED);
    key(&mut app, KeyCode::Char('p'));
    app.update(Msg::Ended(End::TargetExited));
    assert!(!app.paused, "the final state is shown");
    let s = screen(&app, 80, 24);
    assert_has(&s, "ENDED");
    assert_has(&s, "Target exited");
    assert_has(&s, "detaching probes…");
    app.update(Msg::Detached);
    let s = screen(&app, 80, 24);
    assert_has(&s, "probes detached; q quits");
    let log: Vec<&str> = app
        .data()
        .log
        .entries
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    let exited = format!("target PID {} exited", app.pid);
    assert!(
        log.ends_with(&[exited.as_str(), "probes detached"]),
        "{log:?}"
    );
    // p does nothing any more; q still quits.
    key(&mut app, KeyCode::Char('p'));
    assert!(!app.paused);
    assert_eq!(key(&mut app, KeyCode::Char('q')), Control::Quit);
}

#[test]
fn before_the_first_report_and_on_a_small_terminal() {
    let app = App::new(77, &["attached".into()], &[]);
    let s = screen(&app, 80, 24);
    assert_has(&s, "PID 77 │ attached, waiting for the first report");
    assert_has(&s, "waiting for the first report…");
    let s = screen(&app, 79, 24);
    assert_has(&s, "needs a terminal of at least 80x24; this one is");
    let s = screen(&app, 100, 20);
    assert_has(&s, "this one is 100x20");
}

#[test]
fn history_keeps_the_last_intervals_per_operation() {
    let ivs = intervals(TESTBED);
    let mut h = history::History::default();
    for _ in 0..(history::HISTORY / ivs.len() + 1) {
        for r in &ivs {
            h.push(r);
        }
    }
    let get = h.series("GET").unwrap();
    assert_eq!(get.qps.len(), history::HISTORY);
    let last = ivs.last().unwrap().rocksdb.as_ref().unwrap();
    assert_eq!(*get.qps.back().unwrap(), last.stats.operations["GET"].qps);
    assert_eq!(
        *get.p99_us.back().unwrap(),
        last.stats.operations["GET"].p99_us
    );
    assert_eq!(h.span_secs(), history::HISTORY as f64);
}

#[test]
fn alerts_wrap_at_word_boundaries() {
    let rows = draw::word_wrap("I/O bottleneck: RocksDB writes wait on the disk", 12, 11);
    assert_eq!(
        rows,
        [
            "I/O",
            "bottleneck:",
            "RocksDB",
            "writes wait",
            "on the disk"
        ]
    );
    assert!(rows[0].chars().count() <= 12 && rows[1..].iter().all(|r| r.chars().count() <= 11));
    assert_eq!(
        draw::word_wrap("abcdefghijkl", 5, 4),
        ["abcde", "fghi", "jkl"]
    );
    assert_eq!(draw::word_wrap("short", 20, 10), ["short"]);
}

/// `--follow`: the target's exit turns the header and tab bar to waiting (the last numbers
/// stay); the successor's attach empties every pane (its counters start from zero) and the
/// header names the restart; the event log keeps both events.
#[test]
fn following_a_restart_waits_then_starts_again() {
    let mut app = app_from(TESTBED);
    let old = app.pid;
    assert!(app.report().is_some());
    let event = |kind, pid, previous_pid: Option<u32>| {
        Msg::Lifecycle(crate::model::Lifecycle {
            kind,
            timestamp: "2026-12-01T06:00:07Z".into(),
            pid,
            previous_pid,
            node: previous_pid.map(|_| "node (not CKB)".to_string()),
            restarts: u64::from(previous_pid.is_some()),
        })
    };
    app.update(event(LifecycleKind::TargetExited, old, None));
    let s = screen(&app, 160, 40);
    assert_has(
        &s,
        &format!("PID {old} exited 06:00:07 │ waiting for the node to come back (--follow)"),
    );
    assert_has(&s, "WAITING");
    assert_has(&s, &format!("target_exited: PID {old} exited"));
    assert!(
        app.report().is_some(),
        "the last numbers stay while waiting"
    );

    app.update(event(LifecycleKind::TargetAttached, 4242, Some(old)));
    assert!(app.report().is_none(), "the old process's report is gone");
    assert_eq!(app.data().health, Health::default());
    let s = screen(&app, 160, 40);
    assert_has(
        &s,
        &format!("PID 4242 (restart 1, was {old}) │ attached, waiting for the first report"),
    );
    assert_has(&s, "LIVE");
    assert_has(&s, &format!("target_attached: PID 4242 (was {old})"));
    assert_has(&s, &format!("target_exited: PID {old} exited"));
}
