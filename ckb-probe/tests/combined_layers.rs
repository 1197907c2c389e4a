//! All three layers in one ckb-probe process (`rocksdb --with syscall,net`): nothing is lost,
//! the RocksDB counts stay exact while the other layers run, and the cross-layer rules fire on
//! a real storm.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{ckb_node::CkbNode, *};

fn run_with_all(tb_args: &[&str], extra: &[&str]) -> (Value, Vec<Value>) {
    let mut args = vec!["--json", "--with", "syscall,net"];
    args.extend_from_slice(extra);
    let (truth, lines) = testbed_run("static", tb_args, &args);
    (truth, parse_ndjson(&lines))
}

#[test]
fn three_layers_at_once_on_the_testbed_lose_nothing() {
    let (truth, objs) = run_with_all(&["--threads", "2", "--duration", "5", "--rate", "0"], &[]);
    let s = summary(&objs);
    for (f, t) in truth["functions"].as_object().unwrap() {
        if let Some(p) = s["functions"].get(f) {
            assert_eq!(u(&p["count"]), u(&t["calls"]), "{f}");
            assert_eq!(u(&p["bytes"]), u(&t["bytes"]), "{f} bytes");
        }
    }
    assert!(
        u(&s["operations"]["GET"]["count"]) > 20_000,
        "too little load"
    );
    assert_eq!(u(&s["lost_events"]), 0);
    assert_eq!(u(&s["unpaired"]), 0);
    let sys = &s["syscall"];
    assert!(
        sys["syscalls"].as_array().is_some_and(|a| !a.is_empty()),
        "no syscalls: {sys}"
    );
    assert_eq!(u(&sys["stats_full"]), 0);
    let net = &s["net"];
    assert!(net.is_object(), "no net section");
    assert_eq!(u(&net["lost_events"]), 0);
    for o in &objs[..objs.len() - 1] {
        assert_eq!(o["type"], "interval");
        assert!(o["correlations"].is_array(), "{o}");
        assert!(o["syscall"]["derived"].is_object());
        assert!(o["net"]["totals"].is_object());
    }
}

/// The storm makes RocksDB writes slow because the WAL's writes and syncs are slow: the I/O
/// bottleneck rule sees both at once.
#[test]
fn storm_is_correlated_with_slow_file_io() {
    let (_t, objs) = run_with_all(
        &[
            "--threads",
            "2",
            "--duration",
            "34",
            "--rate",
            "4000",
            "--storm-after",
            "18",
            "--storm-secs",
            "12",
        ],
        &["--warmup", "10"],
    );
    let found: Vec<&Value> = objs
        .iter()
        .filter(|o| o["type"] == "interval")
        .flat_map(|o| o["correlations"].as_array().unwrap().iter())
        .collect();
    let io = found
        .iter()
        .find(|c| c["type"] == "io_bottleneck")
        .unwrap_or_else(|| panic!("no io_bottleneck correlation: {found:?}"));
    eprintln!("{io}");
    assert!(io["evidence"].as_str().unwrap().contains("RocksDB WRITE"));
    assert!(!found.iter().any(|c| c["type"] == "disconnection_storm"));
}

#[test]
fn three_layers_at_once_on_a_real_ckb_node() {
    let node = CkbNode::start();
    let pid = node.pid.to_string();
    let probe = Probe::start(&[
        "rocksdb",
        "--pid",
        &pid,
        "--json",
        "--with",
        "syscall,net",
        "--duration",
        "20",
    ]);
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    for op in ["GET", "PUT", "WRITE", "ITER_SEEK"] {
        assert!(u(&s["operations"][op]["count"]) > 0, "{op} not seen");
    }
    assert_eq!(u(&s["lost_events"]), 0);
    assert_eq!(u(&s["net"]["lost_events"]), 0);
    let roles = s["syscall"]["roles"].as_object().expect("roles");
    assert!(
        roles.contains_key("verify_blocks") || roles.contains_key("chain_service"),
        "{:?}",
        roles.keys()
    );
    assert!(u(&s["syscall"]["stats_full"]) == 0);
    eprintln!(
        "real node, 20 s: GET {} PUT {} WRITE {}; syscall roles {:?}",
        s["operations"]["GET"]["count"],
        s["operations"]["PUT"]["count"],
        s["operations"]["WRITE"]["count"],
        roles.keys().collect::<Vec<_>>()
    );
}
