//! `ckb-probe export` against the testbeds and a real Prometheus server: the scrape passes
//! `promtool check metrics`, its counters equal the workloads' ground truth, PromQL over the
//! scraped series gives the expected rates and quantiles, every expression of the Grafana
//! dashboard and of the rules file runs on that server, two exporters stay apart, and bad
//! input fails cleanly. Needs root, `promtool` and `prometheus` (Debian package `prometheus`,
//! installed by scripts/bootstrap.sh); run with `--test-threads=1` (probes are global state).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use support::{exporter::Exporter, *};

/// A tool the tests cannot do without: its absence is a failure, not a skip.
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{tool}` is required (Debian package `prometheus`; scripts/bootstrap.sh installs it)"
    );
}

/// Samples of a text-format scrape: series (name and labels as written) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

/// Functions the testbed calls that ckb-probe traces, with their operation.
const TRACED: [(&str, &str); 23] = [
    ("rocksdb_get_pinned_cf", "GET"),
    ("rocksdb_transaction_get_pinned_cf", "GET"),
    ("rocksdb_transaction_get_for_update_cf", "GET"),
    ("rocksdb_get_pinned", "GET"),
    ("rocksdb_get", "GET"),
    ("rocksdb_get_cf", "GET"),
    ("rocksdb_transaction_put_cf", "PUT"),
    ("rocksdb_put", "PUT"),
    ("rocksdb_put_cf", "PUT"),
    ("rocksdb_writebatch_put_cf", "PUT"),
    ("rocksdb_writebatch_put", "PUT"),
    ("rocksdb_transaction_delete_cf", "DELETE"),
    ("rocksdb_delete", "DELETE"),
    ("rocksdb_delete_cf", "DELETE"),
    ("rocksdb_writebatch_delete_cf", "DELETE"),
    ("rocksdb_writebatch_delete", "DELETE"),
    ("rocksdb_transaction_commit", "WRITE"),
    ("rocksdb_write", "WRITE"),
    ("rocksdb_iter_seek", "ITER_SEEK"),
    ("rocksdb_iter_seek_for_prev", "ITER_SEEK"),
    ("rocksdb_iter_seek_to_first", "ITER_SEEK"),
    ("rocksdb_iter_seek_to_last", "ITER_SEEK"),
    ("rocksdb_iter_next", "ITER_NEXT"),
];

/// Truth per (column family, operation).
fn truth_per_cf(truth: &Value) -> BTreeMap<(String, &'static str), u64> {
    let mut m = BTreeMap::new();
    for (f, op) in TRACED {
        if let Some(per_cf) = truth["functions"][f]["per_cf"].as_object() {
            for (cf, t) in per_cf {
                *m.entry((cf.clone(), op)).or_default() += u(&t["calls"]);
            }
        }
    }
    m
}

fn truth_per_op(truth: &Value) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for (f, op) in TRACED {
        *m.entry(op).or_default() += u(&truth["functions"][f]["calls"]);
    }
    m
}

/// Ids of the loaded BPF programs.
fn programs() -> BTreeSet<u64> {
    let out = Command::new("bpftool")
        .args(["prog", "list", "--json"])
        .output()
        .expect("bpftool");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// Ids of the programs process `pid` holds a file descriptor of.
fn programs_of(pid: &str) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeSet::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let info = std::fs::read_to_string(fd.path()).ok()?;
            info.lines().find_map(|l| {
                l.strip_prefix("prog_id:")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
        .collect()
}

/// Ids of the programs some live process holds a file descriptor of.
fn programs_held() -> BTreeSet<u64> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str().map(str::to_string))
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .flat_map(|pid| programs_of(&pid))
        .collect()
}

/// No program loaded since `before` outlives its process: every new one still loaded belongs
/// to a live process (other ckb-probe runs may share this machine). A leftover would be loaded
/// with no process holding it.
fn assert_no_program_left(before: &BTreeSet<u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = programs_held();
        let orphans: Vec<u64> = programs()
            .into_iter()
            .filter(|id| !before.contains(id) && !held.contains(id))
            .collect();
        if orphans.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs left loaded with no process: {orphans:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The scrape of an exporter on the testbed passes promtool, its counters equal the testbed's
/// ground truth after the workload, a hung client stalls nothing, `/healthz` and
/// `ckb_probe_target_up` say when the target exited, and SIGINT detaches everything.
#[test]
fn scrape_passes_promtool_and_counters_equal_ground_truth() {
    require("promtool");
    let before = programs();
    let tb = Testbed::spawn(
        "static",
        &["--threads", "2", "--duration", "5", "--rate", "0"],
    );
    let pid = tb.pid.to_string();
    let exp = Exporter::start(&["--pid", &pid, "--listen", "127.0.0.1:0", "--warmup", "0"]);
    assert!(
        exp.wait_health(200, Duration::from_secs(5))
            .contains(&format!("PID {pid}"))
    );
    // A client that asks for the metrics and never reads, and one that never asks.
    let mut hung = TcpStream::connect(&exp.addr).unwrap();
    hung.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let _silent = TcpStream::connect(&exp.addr).unwrap();
    tb.start();
    thread::sleep(Duration::from_secs(2));
    let polls = |e: &Exporter| samples(&e.get("/metrics", None).2)["ckb_probe_polls_total"];
    let p0 = polls(&exp);
    thread::sleep(Duration::from_millis(2_500));
    assert!(polls(&exp) >= p0 + 2.0, "the poll loop stalled");
    let truth = tb.finish();

    // The exit is visible at once; the counters are final.
    let body = exp.wait_health(503, Duration::from_secs(5));
    assert!(body.contains("target exited"), "{body}");
    let (status, head, text) = exp.get("/metrics", None);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    promtool_check_metrics(&text);
    let m = samples(&text);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} not served"))
    };
    assert_eq!(get("ckb_probe_target_up"), 0.0);
    assert_eq!(get(r#"ckb_probe_layer_up{layer="rocksdb"}"#), 0.0);
    assert_eq!(get("ckb_probe_rocksdb_functions_attached"), 0.0);
    for (f, op) in TRACED {
        let t = &truth["functions"][f];
        assert!(u(&t["calls"]) > 0, "{f}: the testbed made no calls");
        let l = format!(r#"{{op="{op}",function="{f}"}}"#);
        for (field, metric) in [
            ("calls", "calls"),
            ("errors", "errors"),
            ("hits", "hits"),
            ("misses", "misses"),
            ("bytes", "bytes"),
        ] {
            let want = u(&t[field]);
            let got = m
                .get(&format!("ckb_probe_rocksdb_{metric}_total{l}"))
                .copied()
                .unwrap_or(0.0) as u64;
            assert_eq!(got, want, "{f} {field}: exported {got} != truth {want}");
        }
    }
    for ((cf, op), want) in truth_per_cf(&truth) {
        let prefix = format!(r#"ckb_probe_rocksdb_cf_calls_total{{op="{op}",cf="{cf}","#);
        let got: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(got as u64, want, "cf {cf} {op}");
    }
    assert!(
        text.contains(r#"ckb_probe_rocksdb_cf_calls_total{op="GET",cf="2",column="BLOCK_BODY"}"#)
    );
    // The histograms hold every call.
    for (op, n) in truth_per_op(&truth) {
        let count = get(&format!(
            r#"ckb_probe_rocksdb_latency_seconds_count{{op="{op}"}}"#
        ));
        let inf = get(&format!(
            r#"ckb_probe_rocksdb_latency_seconds_bucket{{op="{op}",le="+Inf"}}"#
        ));
        assert_eq!((count as u64, inf as u64), (n, n), "{op} histogram");
    }
    for layer in ["rocksdb", "syscall", "net"] {
        for k in ["lost_events", "map_full"] {
            assert_eq!(
                get(&format!(r#"ckb_probe_{k}_total{{layer="{layer}"}}"#)),
                0.0,
                "{layer} {k}"
            );
        }
    }
    // (The syscall layer's unpaired exits are calls that were in flight at attach.)
    assert_eq!(get(r#"ckb_probe_unpaired_total{layer="rocksdb"}"#), 0.0);
    assert_eq!(get("ckb_probe_rocksdb_cf_unresolved_total"), 0.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("ckb_probe_syscall_calls_total{") && k.contains("role=")),
        "no syscall series"
    );
    assert!(text.contains(&format!(r#"ckb_probe_target_info{{pid="{pid}""#)));

    // OpenMetrics on request.
    let (_, head, om) = exp.get(
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# UNIT ckb_probe_rocksdb_latency_seconds seconds"));

    drop(hung);
    let ours = programs_of(&exp.child.id().to_string());
    assert!(
        ours.len() >= 46,
        "the exporter holds {} programs",
        ours.len()
    );
    assert_eq!(exp.stop(), 0);
    assert_no_program_left(&before);
    let left: Vec<u64> = programs().intersection(&ours).copied().collect();
    assert!(
        left.is_empty(),
        "the exporter's programs outlived it: {left:?}"
    );
}

/// A Prometheus server on loopback, scraping every second.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

impl Prometheus {
    fn start(targets: &[&str]) -> Prometheus {
        require("prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = deploy("prometheus/ckb-probe.rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: ckb-probe\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !TcpStream::connect(&p.addr)
            .is_ok_and(|_| http_get(&p.addr, "/-/ready", None).0 == 200)
        {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// Runs a PromQL query (at `at`, Unix seconds, or now); panics unless the server accepts it.
    fn query(&self, expr: &str, at: Option<f64>) -> Vec<Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-G", "--max-time", "20"])
            .arg(format!("http://{}/api/v1/query", self.addr))
            .arg("--data-urlencode")
            .arg(format!("query={expr}"));
        if let Some(t) = at {
            cmd.arg("--data-urlencode").arg(format!("time={t:.3}"));
        }
        let out = cmd.output().expect("curl");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{expr}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(v["status"], "success", "{expr}: {v}");
        match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            // A scalar result (e.g. `time()`): one value.
            other => vec![serde_json::json!({ "metric": {}, "value": other })],
        }
    }

    fn api(&self, path: &str) -> Value {
        let (status, _, body) = http_get(&self.addr, path, None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("api json")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The exporter's latency bucket bounds (s): [lo, hi) holding `v`.
fn prom_bucket(v: f64) -> (f64, f64) {
    let mut bounds = vec![0.0];
    for k in 9..35 {
        bounds.push((1u64 << k) as f64 / 1e9);
        bounds.push((3u64 << (k - 1)) as f64 / 1e9);
    }
    bounds.push((1u64 << 35) as f64 / 1e9);
    bounds.push(f64::INFINITY);
    let i = bounds.iter().rposition(|b| *b <= v).unwrap_or(0);
    (bounds[i], bounds[i + 1])
}

struct Netbed {
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
}

impl Netbed {
    fn spawn(args: &[&str]) -> Netbed {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(testbed_bin("ckb-probe-netbed"))
            .args(args)
            .arg("--start-file")
            .arg(dir.path().join("start"))
            .arg("--output")
            .arg(dir.path().join("truth.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn netbed");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().expect("READY").expect("netbed stdout");
        let pid = ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("pid="))
            .and_then(|v| v.parse().ok())
            .expect("pid");
        thread::spawn(move || for _ in lines {});
        Netbed { child, pid, dir }
    }

    fn start(&self) {
        std::fs::write(self.dir.path().join("start"), b"go").unwrap();
    }

    fn finish(mut self) -> Value {
        assert!(self.child.wait().unwrap().success(), "netbed failed");
        let text = std::fs::read_to_string(self.dir.path().join("truth.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Netbed {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every PromQL expression of the Grafana dashboard, with its panel title, and the variables
/// replaced as Grafana would (all instances, a rate window of 10 s).
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/ckb-probe.json")).expect("dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$instance", ".*")
                .replace("$__rate_interval", "10s");
            assert!(!expr.contains('$'), "unreplaced variable: {expr}");
            out.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    let rows: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "RocksDB",
            "Column families",
            "Syscalls by thread role",
            "Network peers",
            "Alerts",
            "Probe health"
        ]
    );
    out
}

/// Every `expr:` of the rules file, with the rule's name.
fn rule_exprs() -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(deploy("prometheus/ckb-probe.rules.yml")).unwrap();
    let mut out = Vec::new();
    let mut name = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(n) = t
            .strip_prefix("- record: ")
            .or_else(|| t.strip_prefix("- alert: "))
        {
            name = n.to_string();
        } else if let Some(e) = t.strip_prefix("expr:") {
            let e = e.trim();
            let expr = if e == "|" {
                // A block: the more-indented lines that follow.
                let indent = line.len() - t.len();
                let mut block = Vec::new();
                while let Some(next) = lines.peek() {
                    if next.len() - next.trim_start().len() <= indent || next.trim().is_empty() {
                        break;
                    }
                    block.push(next.trim().to_string());
                    lines.next();
                }
                block.join(" ")
            } else {
                e.to_string()
            };
            out.push((name.clone(), expr, name.contains(':')));
        }
    }
    out
}

/// Two exporters (the RocksDB testbed with every layer; the TCP netbed with the net and syscall
/// layers) scraped every second by a real Prometheus: both instances are there and apart; the
/// scraped counters equal both workloads' ground truth; per-operation rates during the run and
/// `histogram_quantile` of WRITE latency agree with the testbed's own figures; every dashboard
/// and rule expression is accepted and the panels that should have data have it; the rules load
/// and evaluate, and the target-down alert follows both exits.
#[test]
fn prometheus_scrapes_two_exporters_rates_quantiles_dashboard_and_rules() {
    require("promtool");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/ckb-probe.rules.yml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let unit = Command::new("promtool")
        .args(["test", "rules", "ckb-probe.rules.test.yml"])
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    assert!(
        unit.status.success(),
        "promtool test rules: {}",
        String::from_utf8_lossy(&unit.stdout)
    );

    const SECS: f64 = 8.0;
    let tb = Testbed::spawn(
        "static",
        &[
            "--threads",
            "2",
            "--duration",
            &SECS.to_string(),
            "--rate",
            "300",
            "--sync",
        ],
    );
    let nb = Netbed::spawn(&[
        "--conns", "8", "--send", "200000", "--reply", "5000", "--linger", "2",
    ]);
    let (tb_pid, nb_pid) = (tb.pid.to_string(), nb.pid.to_string());
    let a = Exporter::start(&["--pid", &tb_pid, "--listen", "127.0.0.1:0", "--warmup", "0"]);
    let b = Exporter::start(&[
        "--pid",
        &nb_pid,
        "--listen",
        "127.0.0.1:0",
        "--layers",
        "net,syscall",
        "--top-peers",
        "3",
        "--warmup",
        "0",
    ]);
    let prom = Prometheus::start(&[&a.addr, &b.addr]);
    // Let Prometheus see both before the workloads start.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom.query("up == 1", None).len() < 2 {
        assert!(Instant::now() < deadline, "Prometheus does not scrape both");
        thread::sleep(Duration::from_millis(300));
    }
    let t0 = now_unix();
    tb.start();
    nb.start();
    let nb_truth = nb.finish();
    let truth = tb.finish();
    let t1 = now_unix();
    a.wait_health(503, Duration::from_secs(10));
    b.wait_health(503, Duration::from_secs(10));
    // A few scrapes of the final values, and rule evaluations.
    thread::sleep(Duration::from_secs(4));

    // Both instances, each with its own target and nothing of the other's.
    let info = prom.query("ckb_probe_target_info", None);
    let pids: BTreeMap<&str, &str> = info
        .iter()
        .map(|s| (label(s, "instance"), label(s, "pid")))
        .collect();
    assert_eq!(
        pids,
        BTreeMap::from([
            (a.addr.as_str(), tb_pid.as_str()),
            (b.addr.as_str(), nb_pid.as_str())
        ])
    );
    assert!(
        prom.query(
            &format!(r#"ckb_probe_rocksdb_calls_total{{instance="{}"}}"#, b.addr),
            None
        )
        .is_empty(),
        "RocksDB series on the netbed's exporter"
    );
    let layers = prom.query(
        &format!(r#"ckb_probe_layer_up{{instance="{}"}}"#, b.addr),
        None,
    );
    let b_layers: BTreeSet<&str> = layers.iter().map(|s| label(s, "layer")).collect();
    assert_eq!(b_layers, BTreeSet::from(["net", "syscall"]));

    // Exact counters through Prometheus, per function.
    let ia = format!(r#"instance="{}""#, a.addr);
    let calls = prom.query(&format!("ckb_probe_rocksdb_calls_total{{{ia}}}"), None);
    let got: BTreeMap<&str, u64> = calls
        .iter()
        .map(|s| (label(s, "function"), value(s) as u64))
        .collect();
    for (f, _) in TRACED {
        assert_eq!(
            got.get(f).copied(),
            Some(u(&truth["functions"][f]["calls"])),
            "{f} via Prometheus"
        );
    }

    // Per-operation rates in the middle of the run, against the testbed's average rate.
    let per_op = truth_per_op(&truth);
    let secs = truth["duration_secs"].as_f64().unwrap();
    let mid = t0 + (t1 - t0) / 2.0;
    let rates = prom.query(
        &format!("sum by (op) (rate(ckb_probe_rocksdb_calls_total{{{ia}}}[4s]))"),
        Some(mid),
    );
    // The rate at one moment follows the disk (the commits are synced): it may differ from the
    // run's average by a fair margin, but each operation's share of the calls is the workload's.
    let all_rate: f64 = rates.iter().map(value).sum();
    let all_truth: u64 = per_op.values().sum();
    for s in &rates {
        let op = label(s, "op");
        let want = per_op[op] as f64 / secs;
        let got = value(s);
        eprintln!("{op}: {got:.0}/s in Prometheus, testbed {want:.0}/s on average");
        assert!(
            (got - want).abs() <= want * 0.35,
            "{op} rate {got:.1}/s vs testbed {want:.1}/s"
        );
        let (share, truth_share) = (got / all_rate, per_op[op] as f64 / all_truth as f64);
        assert!(
            (share - truth_share).abs() <= truth_share * 0.02,
            "{op}: {share:.4} of the calls in Prometheus, {truth_share:.4} in the testbed"
        );
    }
    assert_eq!(rates.len(), per_op.len(), "{rates:?}");

    // WRITE quantiles: the op mixes commits and batch writes, so its true quantile lies between
    // theirs; histogram_quantile lands in the bucket holding the true quantile.
    for (q, tq) in [(0.5, "p50"), (0.99, "p99")] {
        let r = prom.query(
            &format!(
                r#"histogram_quantile({q}, sum by (le) (ckb_probe_rocksdb_latency_seconds_bucket{{{ia}, op="WRITE"}}))"#
            ),
            None,
        );
        let got = value(&r[0]);
        let t: Vec<f64> = ["rocksdb_transaction_commit", "rocksdb_write"]
            .iter()
            .map(|f| truth["latency_ns"][f][tq].as_f64().unwrap() / 1e9)
            .collect();
        let lo = prom_bucket(t[0].min(t[1])).0;
        let hi = prom_bucket(t[0].max(t[1])).1;
        // The testbed's clock also sees the uprobe trap (a few µs).
        let slack = 3e-6;
        eprintln!(
            "WRITE {tq}: histogram_quantile {:.1} µs, testbed commit {:.1} µs / write {:.1} µs",
            got * 1e6,
            t[0] * 1e6,
            t[1] * 1e6
        );
        assert!(
            got >= lo - slack && got <= hi + slack,
            "WRITE {tq}: {got} outside [{lo}, {hi}]"
        );
    }

    // The netbed's exporter: totals and per-peer bytes equal the truth; peers beyond the top 3
    // are summed as "other".
    let ib = format!(r#"instance="{}""#, b.addr);
    let conns = |side: &str| nb_truth[side].as_array().unwrap().clone();
    let (out, inb) = (conns("outbound"), conns("inbound"));
    let sum = |f: &str| -> u64 { out.iter().chain(inb.iter()).map(|c| u(&c[f])).sum() };
    for (dir, field) in [("sent", "sent"), ("received", "received")] {
        let total = prom.query(
            &format!(r#"ckb_probe_net_bytes_total{{{ib}, direction="{dir}"}}"#),
            None,
        );
        assert_eq!(value(&total[0]) as u64, sum(field), "net bytes {dir}");
        let peers = prom.query(
            &format!(r#"sum(ckb_probe_net_peer_bytes_total{{{ib}, direction="{dir}"}})"#),
            None,
        );
        assert_eq!(value(&peers[0]) as u64, sum(field), "peer bytes {dir}");
    }
    let peer_series = prom.query(
        &format!(r#"ckb_probe_net_peer_bytes_total{{{ib}, direction="sent"}}"#),
        None,
    );
    let names: BTreeSet<&str> = peer_series.iter().map(|s| label(s, "peer")).collect();
    assert!(names.contains("other") && names.len() == 4, "{names:?}");
    let mut per_endpoint: BTreeMap<String, u64> = BTreeMap::new();
    for c in out.iter().chain(inb.iter()) {
        let r = c["remote"].as_str().unwrap();
        let key = if r.contains(':') {
            format!("[{r}]:{}", c["port"])
        } else {
            format!("{r}:{}", c["port"])
        };
        *per_endpoint.entry(key).or_default() += u(&c["sent"]);
    }
    for s in &peer_series {
        let p = label(s, "peer");
        if p != "other" {
            assert_eq!(
                Some(value(s) as u64),
                per_endpoint.get(p).copied(),
                "peer {p}"
            );
        }
    }
    let connects = prom.query(
        &format!(r#"ckb_probe_net_connection_events_total{{{ib}, event="connect"}}"#),
        None,
    );
    assert_eq!(value(&connects[0]) as u64, out.len() as u64);
    // The testbed's exporter ran the net layer too: no traffic of the netbed reached it.
    let a_net = prom.query(&format!("sum(ckb_probe_net_bytes_total{{{ia}}})"), None);
    assert_eq!(value(&a_net[0]), 0.0);

    // Every dashboard expression is accepted; the panels that should have data have it.
    let may_be_empty = ["Prometheus alerts firing"];
    let at = Some(now_unix());
    let mut empty = Vec::new();
    for (title, expr) in dashboard_exprs() {
        let r = prom.query(&expr, at);
        if r.is_empty() && !may_be_empty.contains(&title.as_str()) {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // Every rule expression is accepted, every recording rule has data, and the rule groups
    // loaded and evaluate without error.
    for (name, expr, recording) in rule_exprs() {
        let r = prom.query(&expr, at);
        if recording {
            assert!(!r.is_empty(), "recording rule {name} has no data: {expr}");
            assert!(!prom.query(&name, at).is_empty(), "{name} was not recorded");
        }
    }
    let rules = prom.api("/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{rules}");
    let mut n = 0;
    for g in groups {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
            n += 1;
        }
    }
    assert_eq!(n, rule_exprs().len());
    // Both targets exited: the target-down alert is pending (or firing) for both instances.
    let down = prom.query(r#"ALERTS{alertname="CkbProbeTargetDown"}"#, None);
    let inst: BTreeSet<&str> = down.iter().map(|s| label(s, "instance")).collect();
    assert_eq!(inst, BTreeSet::from([a.addr.as_str(), b.addr.as_str()]));

    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
}

/// Bad input: a port in use, a bad address, a bad layer name, a missing target. One line on
/// stderr, exit 2, and no program left loaded.
#[test]
fn bad_input_one_line_error_and_no_probe_left() {
    let before = programs();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let me = std::process::id().to_string();
    for (args, says) in [
        (vec!["--pid", &me, "--listen", &busy_addr], "in use"),
        (vec!["--pid", &me, "--listen", "nonsense"], "not an address"),
        (
            vec!["--pid", &me, "--listen", "127.0.0.1:99999"],
            "not an address",
        ),
        (
            vec!["--pid", &me, "--listen", "192.0.2.1:9190"],
            "not an address of this machine",
        ),
        (
            vec!["--pid", &me, "--layers", "rocksdb,disk"],
            "unknown layer",
        ),
        (vec!["--pid", &me, "--interval", "0"], "--interval"),
        (vec!["--pid", &me, "--p2p-port", "0"], "--p2p-port"),
        (vec!["--pid", "999999999"], "999999999"),
    ] {
        let out = Command::new(ckb_probe())
            .arg("export")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(err.starts_with("ckb-probe: error: "), "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    drop(busy);
    assert_no_program_left(&before);
}

/// The exporter on a real CKB dev-chain node, scraped by Prometheus: the scrape passes
/// promtool, RocksDB operations arrive per CKB column, the node's thread roles and version are
/// named, every dashboard panel that a live node feeds has data, and the node's exit shows.
#[test]
fn real_ckb_node_is_exported_and_scraped() {
    require("promtool");
    let node = support::ckb_node::CkbNode::start();
    let pid = node.pid.to_string();
    let p2p = node.p2p_port.to_string();
    let exp = Exporter::start(&[
        "--pid",
        &pid,
        "--listen",
        "127.0.0.1:0",
        "--p2p-port",
        &p2p,
        "--warmup",
        "0",
    ]);
    let prom = Prometheus::start(&[&exp.addr]);
    thread::sleep(Duration::from_secs(15));
    let (status, _, text) = exp.get("/metrics", None);
    assert_eq!(status, 200);
    promtool_check_metrics(&text);
    let m = samples(&text);
    let sum = |prefix: &str| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    for op in ["GET", "PUT", "WRITE", "ITER_SEEK"] {
        let n = sum(&format!(r#"ckb_probe_rocksdb_calls_total{{op="{op}","#));
        assert!(n > 0.0, "{op} not seen");
        // Per column family, the same calls.
        assert_eq!(
            sum(&format!(r#"ckb_probe_rocksdb_cf_calls_total{{op="{op}","#)),
            n,
            "{op}: CF sum"
        );
    }
    for k in m
        .keys()
        .filter(|k| k.starts_with("ckb_probe_rocksdb_cf_calls_total{"))
    {
        let cf = k.split("cf=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(
            cf == "default" || cf.parse::<u32>().is_ok_and(|n| n <= 18),
            "unexpected column family {cf}"
        );
    }
    assert!(
        text.contains(&format!(
            r#"ckb_probe_target_info{{pid="{pid}",node="CKB v0.210"#
        )),
        "node not named: {}",
        text.lines()
            .find(|l| l.starts_with("ckb_probe_target_info"))
            .unwrap_or("")
    );
    for layer in ["rocksdb", "syscall", "net"] {
        assert_eq!(m[&format!(r#"ckb_probe_layer_up{{layer="{layer}"}}"#)], 1.0);
    }
    assert!(m["ckb_probe_rocksdb_functions_attached"] > 0.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("ckb_probe_syscall_calls_total{")
                && (k.contains(r#"role="verify_blocks""#)
                    || k.contains(r#"role="chain_service""#))),
        "CKB's thread roles not seen"
    );
    assert_eq!(m[r#"ckb_probe_lost_events_total{layer="rocksdb"}"#], 0.0);
    assert_eq!(m[r#"ckb_probe_unpaired_total{layer="rocksdb"}"#], 0.0);
    let rate = prom.query(
        "sum by (op) (rate(ckb_probe_rocksdb_calls_total[10s]))",
        None,
    );
    assert!(
        rate.iter()
            .any(|s| label(s, "op") == "WRITE" && value(s) > 0.0),
        "{rate:?}"
    );
    // A live node with no peers and no alerts: only peer traffic, alerts firing and the
    // lost/unpaired increases may be empty or zero; every panel has data.
    let mut empty = Vec::new();
    for (title, expr) in dashboard_exprs() {
        if prom.query(&expr, None).is_empty() && title != "Prometheus alerts firing" {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    eprintln!(
        "real node, 15 s: GET {} PUT {} WRITE {} calls; {} series",
        sum(r#"ckb_probe_rocksdb_calls_total{op="GET","#),
        sum(r#"ckb_probe_rocksdb_calls_total{op="PUT","#),
        sum(r#"ckb_probe_rocksdb_calls_total{op="WRITE","#),
        m.len()
    );
    drop(node);
    exp.wait_health(503, Duration::from_secs(30));
    assert_eq!(
        samples(&exp.get("/metrics", None).2)["ckb_probe_target_up"],
        0.0
    );
    assert_eq!(exp.stop(), 0);
}

/// `export --follow`: the node exits and a new one starts at the same path. `/healthz` goes
/// 503 then back to 200, `target_info` names the new PID, `target_restarts_total` is 1, and
/// every counter only ever grows across the gap (scraped every 200 ms throughout): at the
/// end each function's calls are the two processes' ground truths added up.
#[test]
fn export_follow_across_a_restart_counters_never_step_back() {
    let work = tempfile::tempdir().unwrap();
    let exe = testbed_copy(work.path());
    let args = ["--threads", "1", "--duration", "2", "--rate", "1000"];
    let a = Testbed::spawn_exe(&exe, &args);
    let pid_a = a.pid;
    let exp = Exporter::start(&[
        "--pid",
        &pid_a.to_string(),
        "--listen",
        "127.0.0.1:0",
        "--warmup",
        "0",
        "--interval",
        "0.5",
        "--follow",
    ]);
    exp.wait_health(200, Duration::from_secs(5));
    // Every scrape, in order, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (addr, stop) = (exp.addr.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut all = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                all.push(samples(&http_get(&addr, "/metrics", None).2));
                thread::sleep(Duration::from_millis(200));
            }
            all
        })
    };
    a.start();
    let truth_a = a.finish();
    let body = exp.wait_health(503, Duration::from_secs(10));
    assert!(body.contains("target exited"), "{body}");
    let b = Testbed::successor_at(&exe, &testbed("static"), &args);
    let pid_b = b.pid;
    let body = exp.wait_health(200, Duration::from_secs(30));
    assert!(body.contains(&format!("PID {pid_b}")), "{body}");
    let m = samples(&exp.get("/metrics", None).2);
    assert!(
        m.keys()
            .any(|k| k.starts_with(&format!(r#"ckb_probe_target_info{{pid="{pid_b}""#))),
        "target_info does not name PID {pid_b}"
    );
    assert_eq!(m["ckb_probe_target_restarts_total"], 1.0);
    b.start();
    let truth_b = b.finish();
    exp.wait_health(503, Duration::from_secs(10));
    let (_, _, text) = exp.get("/metrics", None);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    let stderr = exp.stderr();
    assert_eq!(exp.stop(), 0, "{stderr}");
    promtool_check_metrics(&text);
    let last = samples(&text);
    for (f, op) in TRACED {
        let key = format!(r#"ckb_probe_rocksdb_calls_total{{op="{op}",function="{f}"}}"#);
        let want = u(&truth_a["functions"][f]["calls"]) + u(&truth_b["functions"][f]["calls"]);
        assert_eq!(last.get(&key).copied().unwrap_or(0.0) as u64, want, "{f}");
    }
    assert_eq!(last["ckb_probe_target_restarts_total"], 1.0);
    // No counter series ever went down between two scrapes.
    assert!(scrapes.len() > 10, "only {} scrapes", scrapes.len());
    let counter = |k: &str| {
        let name = k.split('{').next().unwrap_or(k);
        ["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s))
    };
    for pair in scrapes.windows(2) {
        for (k, v) in &pair[1] {
            if let Some(before) = pair[0].get(k)
                && counter(k)
            {
                assert!(v >= before, "{k} stepped back: {before} -> {v}");
            }
        }
    }
}
