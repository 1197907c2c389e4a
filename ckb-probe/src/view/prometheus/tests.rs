use std::time::Duration;

use super::*;
use crate::{
    analysis::{
        anomaly::Anomaly,
        correlate::Correlation,
        net::{NetAlert, NetInterval, Totals},
        rocksdb::{CfReport, RocksInterval},
        syscall::{SysInterval, SysReport},
    },
    model::{Header, NetSection, RocksSection, SysSection, Unavailable, rocksdb::Attach},
};

fn header(pid: u32, layers: Vec<LayerName>) -> Header {
    Header {
        kind: Kind::Interval,
        timestamp: "2026-12-01T00:00:00Z".into(),
        pid,
        node: "CKB v0.210.0".into(),
        layers,
        uptime_secs: 1,
        interval_secs: 1.0,
        sampling_secs: 1.0,
        duration_secs: 0.0,
        end: None,
        chain: None,
        kernel: "6.18.0-test".into(),
    }
}

fn op(count: u64, total_ns: u64, bytes: Option<u64>) -> OpReport {
    OpReport {
        count,
        total_ns,
        bytes,
        hits: Some(count / 2),
        misses: Some(count - count / 2),
        errors: Some(1),
        ..OpReport::default()
    }
}

/// A RocksDB interval: `n` GETs through one function into column family "2", and the
/// since-attach histogram `hist`.
fn rocks(n: u64, hist: Vec<Bucket>) -> RocksSection {
    let get = op(n, n * 2_000, Some(n * 100));
    RocksSection {
        stats: RocksInterval {
            secs: 1.0,
            entry_only: false,
            operations: [("GET", get.clone())].into(),
            functions: [("rocksdb_get_pinned_cf", get.clone())].into(),
            column_families: vec![CfReport {
                name: "2".into(),
                column: Some("BLOCK_BODY"),
                operations: [("GET", get)].into(),
            }],
            lost_events: 1,
            unpaired: 2,
            cf_unresolved: 0,
            stats_full: 0,
            histograms: BTreeMap::new(),
        },
        histograms: [("GET", hist)].into(),
        attach: Some(Attach {
            attached: vec!["rocksdb_get_pinned_cf".into(), "rocksdb_write".into()],
            ..Attach::default()
        }),
        ..RocksSection::default()
    }
}

fn report(pid: u32, rocksdb: Option<RocksSection>) -> Report {
    Report {
        header: header(pid, vec![LayerName::Rocksdb]),
        rocksdb,
        syscall: None,
        net: None,
        correlations: None,
        unavailable: Vec::new(),
    }
}

/// The value of the sample `name{labels}` (labels as written, in order), if served.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= b.abs() * 1e-9)
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn bucket(low_ns: u64, count: u64) -> Bucket {
    let i = ckb_probe_common::hist::bucket_of(low_ns) as usize;
    Bucket {
        low_ns: ckb_probe_common::hist::bucket_low(i),
        high_ns: ckb_probe_common::hist::bucket_high(i),
        count,
    }
}

#[test]
fn lightweight_mode_is_said_and_serves_no_absent_series() {
    let light = |n: u64| {
        let mut s = rocks(n, vec![]);
        s.stats.entry_only = true;
        let put = OpReport {
            count: n,
            bytes: Some(n * 10),
            ..OpReport::default()
        };
        s.stats.functions = [("rocksdb_put", put)].into();
        s
    };
    let mut e = Exporter::new(Options::default());
    e.observe(&report(7, Some(light(10))), t(1));
    e.observe(&report(7, Some(light(5))), t(2));
    let m = e.render(Format::Prometheus);
    assert_eq!(
        sample(&m, r#"ckb_probe_rocksdb_mode{mode="lightweight"}"#),
        Some(1.0)
    );
    let put = r#"{op="PUT",function="rocksdb_put"}"#;
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_calls_total{put}")),
        Some(15.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_bytes_total{put}")),
        Some(150.0)
    );
    for absent in [
        "ckb_probe_rocksdb_errors_total",
        "ckb_probe_rocksdb_hits_total",
        "ckb_probe_rocksdb_misses_total",
        "ckb_probe_rocksdb_time_seconds_total",
        "ckb_probe_rocksdb_latency_seconds",
        "ckb_probe_rocksdb_cf_errors_total",
        "ckb_probe_rocksdb_cf_hits_total",
        "ckb_probe_rocksdb_cf_time_seconds_total",
    ] {
        assert!(
            !m.contains(absent),
            "{absent} served in lightweight mode:\n{m}"
        );
    }
    let mut e = Exporter::new(Options::default());
    e.observe(&report(7, Some(rocks(10, vec![]))), t(1));
    let m = e.render(Format::Prometheus);
    assert_eq!(
        sample(&m, r#"ckb_probe_rocksdb_mode{mode="full"}"#),
        Some(1.0)
    );
}

#[test]
fn counters_are_the_sums_of_the_interval_deltas() {
    let mut e = Exporter::new(Options::default());
    e.observe(&report(7, Some(rocks(10, vec![]))), t(1));
    e.observe(&report(7, Some(rocks(5, vec![]))), t(2));
    let m = e.render(Format::Prometheus);
    let fn_labels = r#"{op="GET",function="rocksdb_get_pinned_cf"}"#;
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_calls_total{fn_labels}")),
        Some(15.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_bytes_total{fn_labels}")),
        Some(1500.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_errors_total{fn_labels}")),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_hits_total{fn_labels}")),
        Some(7.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_misses_total{fn_labels}")),
        Some(8.0)
    );
    assert!(close(
        sample(
            &m,
            &format!("ckb_probe_rocksdb_time_seconds_total{fn_labels}")
        ),
        15.0 * 2e-6
    ));
    let cf = r#"{op="GET",cf="2",column="BLOCK_BODY"}"#;
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_cf_calls_total{cf}")),
        Some(15.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_rocksdb_cf_bytes_total{cf}")),
        Some(1500.0)
    );
    assert_eq!(
        sample(&m, r#"ckb_probe_lost_events_total{layer="rocksdb"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, r#"ckb_probe_unpaired_total{layer="rocksdb"}"#),
        Some(4.0)
    );
    assert_eq!(
        sample(&m, "ckb_probe_rocksdb_functions_attached"),
        Some(2.0)
    );
    assert_eq!(sample(&m, "ckb_probe_polls_total"), Some(2.0));
    assert_eq!(sample(&m, "ckb_probe_target_up"), Some(1.0));
    assert_eq!(
        sample(&m, "ckb_probe_last_poll_timestamp_seconds"),
        Some(1_800_000_002.0)
    );
    assert!(m.contains(
        r#"ckb_probe_target_info{pid="7",node="CKB v0.210.0",kernel="6.18.0-test",version=""#
    ));
    assert!(m.contains("# TYPE ckb_probe_rocksdb_calls_total counter"));
    // Operations without a payload size have no bytes series.
    assert!(!m.contains("ckb_probe_rocksdb_bytes_total{op=\"DELETE\""));
}

#[test]
fn histogram_buckets_are_exact_and_cumulative() {
    let bounds = latency_bounds_ns();
    assert_eq!(bounds.len(), 53);
    assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    // Every bound is a boundary of the kernel's buckets.
    for b in &bounds {
        let i = ckb_probe_common::hist::bucket_of(*b) as usize;
        assert_eq!(ckb_probe_common::hist::bucket_low(i), *b);
    }
    let mut e = Exporter::new(Options::default());
    // Since attach: 3 calls near 1 µs, 1 near 5 ms; then 2 more near 1 µs.
    e.observe(
        &report(
            1,
            Some(rocks(4, vec![bucket(1_000, 3), bucket(5_000_000, 1)])),
        ),
        t(1),
    );
    e.observe(
        &report(
            1,
            Some(rocks(2, vec![bucket(1_000, 5), bucket(5_000_000, 1)])),
        ),
        t(2),
    );
    let m = e.render(Format::Prometheus);
    let le = |ns: u64| {
        let want = ns as f64 / 1e9;
        m.lines().find_map(|l| {
            let rest =
                l.strip_prefix(r#"ckb_probe_rocksdb_latency_seconds_bucket{op="GET",le=""#)?;
            let (bound, value) = rest.split_once("\"} ")?;
            let bound: f64 = bound.parse().ok()?;
            ((bound - want).abs() <= want * 1e-12).then(|| value.parse::<f64>().unwrap())
        })
    };
    assert_eq!(le(512), Some(0.0));
    assert_eq!(le(1024), Some(5.0));
    // The 5 ms call is in the bucket [4.19, 6.29) ms.
    assert_eq!(le(1 << 22), Some(5.0));
    assert_eq!(le(3 << 21), Some(6.0));
    assert_eq!(le(1 << 35), Some(6.0));
    assert_eq!(
        sample(
            &m,
            r#"ckb_probe_rocksdb_latency_seconds_bucket{op="GET",le="+Inf"}"#
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(&m, r#"ckb_probe_rocksdb_latency_seconds_count{op="GET"}"#),
        Some(6.0)
    );
    assert!(close(
        sample(&m, r#"ckb_probe_rocksdb_latency_seconds_sum{op="GET"}"#),
        6.0 * 2e-6
    ));
    // A new session (another PID) starts its histograms at zero: the series continue.
    e.observe(&report(2, Some(rocks(1, vec![bucket(1_000, 1)]))), t(3));
    let m = e.render(Format::Prometheus);
    assert_eq!(
        sample(&m, r#"ckb_probe_rocksdb_latency_seconds_count{op="GET"}"#),
        Some(7.0)
    );
}

#[test]
fn openmetrics_has_units_types_and_eof() {
    let mut e = Exporter::new(Options::default());
    e.observe(&report(1, Some(rocks(3, vec![bucket(2_000, 3)]))), t(1));
    let om = e.render(Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# UNIT ckb_probe_rocksdb_latency_seconds seconds"));
    assert!(om.contains("# TYPE ckb_probe_target info"));
    assert!(om.contains("ckb_probe_target_info{pid=\"1\""));
    let text = e.render(Format::Prometheus);
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE ckb_probe_target_info gauge"));
}

fn peer(remote: &str, port: u16, sent: u64, open: u64) -> PeerReport {
    PeerReport {
        remote: remote.into(),
        port,
        family: if remote.contains(':') { "ipv6" } else { "ipv4" },
        direction: "outbound",
        local_port: 40_000,
        p2p: true,
        node_id: None,
        version: None,
        bytes_sent: sent,
        bytes_received: sent / 2,
        send_bytes_per_sec: 0.0,
        recv_bytes_per_sec: 0.0,
        sends: 1,
        recvs: 1,
        retransmits: sent / 1000,
        age_secs: None,
        age_from_attach: false,
        state: "established".into(),
        connects: 1,
        accepts: 0,
        adopted: 0,
        closes: 0,
        disconnects: 0,
        open,
    }
}

fn net_report(pid: u32, peers: Vec<PeerReport>, totals: Totals) -> Report {
    Report {
        header: header(pid, vec![LayerName::Net]),
        rocksdb: None,
        syscall: None,
        net: Some(NetSection {
            stats: NetInterval {
                secs: 1.0,
                peers,
                totals,
                lost_events: 0,
                map_full: 0,
            },
            ..NetSection::default()
        }),
        correlations: None,
        unavailable: Vec::new(),
    }
}

fn peer_bytes(m: &str, peer: &str, dir: &str) -> Option<f64> {
    sample(
        m,
        &format!("ckb_probe_net_peer_bytes_total{{peer=\"{peer}\",direction=\"{dir}\"}}"),
    )
}

#[test]
fn top_peers_get_labels_and_the_rest_sum_to_other() {
    let mut e = Exporter::new(Options { top_peers: 2 });
    let totals = |sent| Totals {
        bytes_sent: sent,
        connects: 3,
        ..Totals::default()
    };
    e.observe(
        &net_report(
            1,
            vec![
                peer("10.0.0.1", 8115, 5_000, 1),
                peer("10.0.0.2", 8115, 9_000, 1),
                peer("::1", 8115, 1_000, 1),
            ],
            totals(15_000),
        ),
        t(1),
    );
    let m = e.render(Format::Prometheus);
    assert_eq!(peer_bytes(&m, "10.0.0.2:8115", "sent"), Some(9_000.0));
    assert_eq!(peer_bytes(&m, "10.0.0.1:8115", "sent"), Some(5_000.0));
    assert_eq!(peer_bytes(&m, "[::1]:8115", "sent"), None);
    assert_eq!(peer_bytes(&m, "other", "sent"), Some(1_000.0));
    assert_eq!(
        sample(&m, r#"ckb_probe_net_bytes_total{direction="sent"}"#),
        Some(15_000.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"ckb_probe_net_connection_events_total{event="connect"}"#
        ),
        Some(3.0)
    );

    // A labelled peer keeps its label while connected, even when another grows past it;
    // a peer whose kernel entry was made again (its value dropped) counts from its new value.
    e.observe(
        &net_report(
            1,
            vec![
                peer("10.0.0.1", 8115, 6_000, 1),
                peer("10.0.0.2", 8115, 500, 1),
                peer("::1", 8115, 50_000, 1),
            ],
            totals(65_000),
        ),
        t(2),
    );
    let m = e.render(Format::Prometheus);
    assert_eq!(peer_bytes(&m, "10.0.0.1:8115", "sent"), Some(6_000.0));
    assert_eq!(peer_bytes(&m, "10.0.0.2:8115", "sent"), Some(9_500.0));
    assert_eq!(peer_bytes(&m, "other", "sent"), Some(50_000.0));
    assert_eq!(
        sample(&m, r#"ckb_probe_net_bytes_total{direction="sent"}"#),
        Some(65_000.0)
    );

    // 10.0.0.2 closes and stays quiet for the grace period: its slot goes to the busiest
    // other peer, whose traffic from then on is its own.
    let mut closed = peer("10.0.0.2", 8115, 500, 0);
    closed.state = "closed".into();
    for s in [3, 30, 63] {
        e.observe(
            &net_report(
                1,
                vec![
                    peer("10.0.0.1", 8115, 6_000, 1),
                    closed.clone(),
                    peer("::1", 8115, 50_000 + s, 1),
                ],
                totals(65_000 + s),
            ),
            t(s),
        );
    }
    let m = e.render(Format::Prometheus);
    assert_eq!(peer_bytes(&m, "10.0.0.2:8115", "sent"), None);
    assert_eq!(peer_bytes(&m, "[::1]:8115", "sent"), Some(33.0));
    assert_eq!(peer_bytes(&m, "other", "sent"), Some(50_030.0));
    // Labelled and other together: every byte of every peer, once.
    let sum: f64 = ["10.0.0.1:8115", "[::1]:8115", "other"]
        .iter()
        .filter_map(|p| peer_bytes(&m, p, "sent"))
        .sum::<f64>()
        + 9_500.0;
    // 10.0.0.2 sent 9,000 then 500 on a new connection (its kernel entry made again).
    assert_eq!(sum, 6_000.0 + 9_500.0 + 50_063.0);
}

#[test]
fn top_zero_puts_every_peer_in_other() {
    let mut e = Exporter::new(Options { top_peers: 0 });
    e.observe(
        &net_report(
            1,
            vec![peer("10.0.0.1", 1, 10, 1), peer("10.0.0.2", 1, 20, 1)],
            Totals::default(),
        ),
        t(1),
    );
    let m = e.render(Format::Prometheus);
    assert_eq!(peer_bytes(&m, "other", "sent"), Some(30.0));
    assert_eq!(m.matches("ckb_probe_net_peer_bytes_total{").count(), 2);
}

fn anomaly(op: &'static str, time: &str) -> Anomaly {
    Anomaly {
        time: time.into(),
        kind: "latency_spike",
        operation: op,
        current_avg_us: 50.0,
        baseline_avg_us: 5.0,
        multiplier: 10.0,
        cause: String::new(),
        evidence: String::new(),
        next: String::new(),
    }
}

#[test]
fn alerts_count_starts_and_show_the_current_state() {
    let mut e = Exporter::new(Options::default());
    let with = |anoms: Vec<Anomaly>, corr: Vec<Correlation>, net_alerts: Vec<NetAlert>| {
        let mut r = report(
            1,
            Some(RocksSection {
                anomalies: anoms,
                ..rocks(1, vec![])
            }),
        );
        r.header.layers = vec![LayerName::Rocksdb, LayerName::Net];
        r.correlations = Some(corr);
        r.net = Some(NetSection {
            alerts: net_alerts,
            ..NetSection::default()
        });
        r
    };
    let storm = NetAlert {
        kind: "disconnection_storm",
        since: "t0".into(),
        message: String::new(),
        count: 12,
        threshold: 10,
        peer: None,
    };
    let io = Correlation {
        time: "t0".into(),
        kind: "io_bottleneck",
        summary: String::new(),
        evidence: String::new(),
        next: String::new(),
    };
    e.observe(&with(vec![], vec![], vec![]), t(1));
    let m = e.render(Format::Prometheus);
    let active = |m: &str, src: &str, ty: &str, subj: &str| {
        sample(
            m,
            &format!(
                "ckb_probe_alerts_active{{source=\"{src}\",type=\"{ty}\",subject=\"{subj}\"}}"
            ),
        )
    };
    let total = |m: &str, src: &str, ty: &str, subj: &str| {
        sample(
            m,
            &format!("ckb_probe_alerts_total{{source=\"{src}\",type=\"{ty}\",subject=\"{subj}\"}}"),
        )
    };
    // Known alerts are served as 0 before any fires.
    assert_eq!(active(&m, "rocksdb", "latency_spike", "WRITE"), Some(0.0));
    assert_eq!(total(&m, "correlation", "io_bottleneck", ""), Some(0.0));
    assert_eq!(active(&m, "net", "disconnection_storm", ""), Some(0.0));

    // One WRITE spike lasting two intervals is one alert; a second start is another.
    for (s, start) in [(2, "a"), (3, "a"), (5, "b")] {
        e.observe(
            &with(
                vec![anomaly("WRITE", start)],
                vec![io.clone()],
                vec![storm.clone()],
            ),
            t(s),
        );
    }
    let m = e.render(Format::Prometheus);
    assert_eq!(active(&m, "rocksdb", "latency_spike", "WRITE"), Some(1.0));
    assert_eq!(total(&m, "rocksdb", "latency_spike", "WRITE"), Some(2.0));
    assert_eq!(total(&m, "correlation", "io_bottleneck", ""), Some(1.0));
    assert_eq!(total(&m, "net", "disconnection_storm", ""), Some(1.0));
    e.observe(&with(vec![], vec![], vec![]), t(6));
    let m = e.render(Format::Prometheus);
    assert_eq!(active(&m, "rocksdb", "latency_spike", "WRITE"), Some(0.0));
    assert_eq!(total(&m, "rocksdb", "latency_spike", "WRITE"), Some(2.0));
}

#[test]
fn syscalls_by_role_and_layer_health() {
    let mut e = Exporter::new(Options::default());
    let sys = |n: u64| SysSection {
        stats: SysInterval {
            secs: 1.0,
            roles: [(
                "compaction",
                [(
                    "pwrite64".to_string(),
                    SysReport {
                        name: "pwrite64".into(),
                        count: n,
                        errors: 1,
                        total_ns: n * 10_000,
                        bytes: Some(n * 4096),
                        ..SysReport::default()
                    },
                )]
                .into(),
            )]
            .into(),
            threads: [("compaction", 4usize)].into(),
            unpaired: 1,
            ..SysInterval::default()
        },
        ..SysSection::default()
    };
    let r = |n| Report {
        header: header(3, vec![LayerName::Syscall]),
        rocksdb: None,
        syscall: Some(sys(n)),
        net: None,
        correlations: None,
        unavailable: vec![Unavailable {
            layer: LayerName::Net,
            reason: "no tracefs".into(),
        }],
    };
    e.observe(&r(3), t(1));
    e.observe(&r(4), t(2));
    let m = e.render(Format::Prometheus);
    let l = r#"{syscall="pwrite64",role="compaction"}"#;
    assert_eq!(
        sample(&m, &format!("ckb_probe_syscall_calls_total{l}")),
        Some(7.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_syscall_errors_total{l}")),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_syscall_bytes_total{l}")),
        Some(7.0 * 4096.0)
    );
    assert!(close(
        sample(&m, &format!("ckb_probe_syscall_time_seconds_total{l}")),
        7e-5
    ));
    assert_eq!(
        sample(&m, r#"ckb_probe_threads{role="compaction"}"#),
        Some(4.0)
    );
    assert_eq!(
        sample(&m, r#"ckb_probe_layer_up{layer="syscall"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&m, r#"ckb_probe_layer_up{layer="net"}"#), Some(0.0));
    assert_eq!(
        sample(&m, r#"ckb_probe_unpaired_total{layer="syscall"}"#),
        Some(2.0)
    );

    // After the target's exit: counters stay, the state gauges say it is gone.
    e.target_exited();
    e.poll_failed();
    let m = e.render(Format::Prometheus);
    assert_eq!(sample(&m, "ckb_probe_target_up"), Some(0.0));
    assert_eq!(
        sample(&m, r#"ckb_probe_layer_up{layer="syscall"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, &format!("ckb_probe_syscall_calls_total{l}")),
        Some(7.0)
    );
    assert_eq!(sample(&m, "ckb_probe_poll_errors_total"), Some(1.0));
}

#[test]
fn summaries_are_not_counted_twice() {
    let mut e = Exporter::new(Options::default());
    e.observe(&report(1, Some(rocks(10, vec![]))), t(1));
    let mut s = report(1, Some(rocks(10, vec![])));
    s.header.kind = Kind::Summary;
    e.observe(&s, t(2));
    let m = e.render(Format::Prometheus);
    assert_eq!(
        sample(
            &m,
            r#"ckb_probe_rocksdb_calls_total{op="GET",function="rocksdb_get_pinned_cf"}"#
        ),
        Some(10.0)
    );
}

#[test]
fn every_served_family_is_listed() {
    let mut e = Exporter::new(Options::default());
    let mut r = report(1, Some(rocks(3, vec![bucket(2_000, 3)])));
    r.header.layers = LayerName::ALL.to_vec();
    r.syscall = Some(SysSection::default());
    r.net = Some(NetSection {
        stats: NetInterval {
            peers: vec![peer("10.0.0.1", 1, 10, 1)],
            ..NetInterval::default()
        },
        ..NetSection::default()
    });
    r.correlations = Some(vec![]);
    e.observe(&r, t(1));
    let m = e.render(Format::Prometheus);
    let listed: BTreeSet<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
    for l in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = l.split(' ').next().unwrap();
        assert!(listed.contains(name), "{name} is served but not in METRICS");
    }
}

#[test]
fn content_negotiation() {
    use Format::*;
    assert_eq!(Format::negotiate(None), Prometheus);
    assert_eq!(Format::negotiate(Some("*/*")), Prometheus);
    assert_eq!(Format::negotiate(Some("text/plain")), Prometheus);
    // What Prometheus 2.x sends.
    assert_eq!(
        Format::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )),
        OpenMetrics
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain")),
        Prometheus
    );
}
