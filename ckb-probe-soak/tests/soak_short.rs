//! `scripts/soak.sh --duration 120` end to end (real BPF programs on a real testbed, as root):
//! the run finishes by itself, the report has every section, and its numbers are the run's own
//! NDJSON and ground truth, recomputed here independently of the report generator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ckb_probe_common::rocksdb::TRACED;
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn thousands(n: u64) -> String {
    ckb_probe::view::thousands(n)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON {e}: {l}")))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[test]
fn short_soak_run_reports_what_the_run_recorded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("soak");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ckb-probe-soak-report"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let run = Command::new(workspace_root().join("scripts/soak.sh"))
        .args(["--duration", "120", "--out"])
        .arg(&out)
        .env("SOAK_NO_BUILD", "1")
        .env("SOAK_BIN_DIR", &bin_dir)
        .output()
        .expect("run scripts/soak.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "soak.sh failed: {stderr}");

    // ---- the files
    for f in [
        "REPORT.md",
        "summary.json",
        "env.txt",
        "samples.csv",
        "machine.csv",
        "phases.csv",
        "kmsg.log",
        "testbed/probe.ndjson",
        "testbed/truth.json",
        "testbed/control-truth.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    for c in [
        "testbed-probe.svg",
        "testbed-target-cpu.svg",
        "testbed-p99.svg",
        "testbed-events.svg",
        "testbed-storm.svg",
        "testbed-hist-get.svg",
        "testbed-hist-write.svg",
    ] {
        let svg = std::fs::read_to_string(out.join("charts").join(c)).expect(c);
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{c} is not an SVG"
        );
    }
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    for section in [
        "## Summary against the thresholds",
        "### Resource consumption",
        "### Event fidelity",
        "### Latency distributions over the whole run",
        "### Storm case",
        "## Kernel log (S-3)",
        "## Reproduction",
        "scripts/soak.sh --duration 120",
    ] {
        assert!(report.contains(section), "REPORT.md lacks {section:?}");
    }

    // ---- the numbers, recomputed from the NDJSON and the ground truth
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let kind = &summary["kinds"][0];
    assert_eq!(kind["kind"], "testbed");
    let nd = lines(&out.join("testbed/probe.ndjson"));
    let (intervals, last) = nd.split_at(nd.len() - 1);
    let last = &last[0];
    assert_eq!(last["type"], "summary");
    assert_eq!(
        last["end"], "target_exited",
        "the probe must outlive the testbed"
    );
    assert!(intervals.iter().all(|l| l["type"] == "interval"));
    assert_eq!(u(&kind["intervals"]), intervals.len() as u64);

    let rocks: u64 = intervals
        .iter()
        .flat_map(|l| l["operations"].as_object().into_iter().flatten())
        .map(|(_, o)| u(&o["count"]))
        .sum();
    let sys: u64 = intervals
        .iter()
        .flat_map(|l| l["syscall"]["syscalls"].as_array().into_iter().flatten())
        .map(|c| u(&c["count"]))
        .sum();
    let lost: u64 = intervals
        .iter()
        .map(|l| u(&l["lost_events"]) + u(&l["net"]["lost_events"]))
        .sum();
    assert_eq!(u(&kind["rocksdb_calls"]), rocks);
    assert_eq!(u(&kind["syscalls"]), sys);
    assert_eq!(u(&kind["lost_events"]), lost);
    assert!(rocks > 100_000, "too few RocksDB calls: {rocks}");
    assert!(
        report.contains(&format!("{} RocksDB calls", thousands(rocks))),
        "REPORT.md does not state the {rocks} RocksDB calls of the NDJSON"
    );

    // Fidelity: the summary line against the testbed's own counts, per operation.
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("testbed/truth.json")).unwrap())
            .unwrap();
    let mut generated: BTreeMap<&str, u64> = BTreeMap::new();
    for f in TRACED.iter() {
        *generated.entry(f.op.name()).or_default() += u(&truth["functions"][f.symbol]["calls"]);
    }
    generated.retain(|_, n| *n > 0);
    for (op, g) in &generated {
        let captured = u(&last["operations"][op]["count"]);
        assert_eq!(u(&kind["generated"][op]), *g, "{op} generated");
        assert_eq!(u(&kind["captured"][op]), captured, "{op} captured");
        assert_eq!(captured, *g, "{op}: ckb-probe captured {captured} of {g}");
        let row = format!("| {op} | {} | {} | 0 |", thousands(*g), thousands(captured));
        assert!(
            report.contains(&row),
            "REPORT.md lacks the fidelity row {row}"
        );
    }

    // The storm was caught, and the run held: no crash, no restart, no loss, RSS within P-2.
    let storms = kind["storms"].as_array().expect("storms");
    assert_eq!(storms.len(), 1, "one storm in a 120 s run");
    assert!(
        storms[0]["alert_epoch"].is_number(),
        "the storm was not alerted: {}",
        storms[0]
    );
    assert!(
        storms[0]["alert_text"]
            .as_str()
            .unwrap_or("")
            .contains("ANOMALY DETECTED")
    );
    let verdict = |id: &str| {
        summary["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id && (c["kind"] == "testbed" || c["kind"] == "machine"))
            .map(|c| c["verdict"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {id} check"))
    };
    for id in ["S-1", "P-2", "P-3", "fidelity", "S-3"] {
        assert_eq!(verdict(id), "pass", "{id}");
    }
    // P-1 was measured in the same run: both kinds of window hold samples.
    assert!(kind["overhead"]["with"]["n"].as_u64().unwrap_or(0) >= 1);
    assert!(kind["overhead"]["without"]["n"].as_u64().unwrap_or(0) >= 1);
    // Nothing it started is left running.
    let left = Command::new("pgrep")
        .args(["-f", &out.join("testbed").display().to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("never");
    let out_s = out.display().to_string();
    for args in [
        vec!["--duration", "30", "--out", &out_s],
        vec!["--duration", "120"],
        vec!["--duration", "120", "--out", &out_s, "--target", "mainnet"],
        vec![
            "--duration",
            "120",
            "--out",
            &out_s,
            "--storm-every",
            "10",
            "--storm-secs",
            "15",
        ],
        vec!["--bogus"],
    ] {
        let o = Command::new(workspace_root().join("scripts/soak.sh"))
            .args(&args)
            .env("SOAK_NO_BUILD", "1")
            .output()
            .expect("run soak.sh");
        assert_eq!(o.status.code(), Some(2), "{args:?} accepted");
        assert!(String::from_utf8_lossy(&o.stderr).contains("soak: error:"));
        assert!(!out.exists(), "{args:?} created the output directory");
    }
    let help = Command::new(workspace_root().join("scripts/soak.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--duration SECS"));
}
