//! The RocksDB layer on a real CKB node (0.210.0 from crates.io, dev chain, mining): the
//! pipeline works on CKB's statically linked RocksDB 8.5, the hot-path operations show up, column
//! families resolve to CKB's columns, and every count equals an independent count of the same
//! functions taken by bpftrace over exactly the same window.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::Duration,
};

use support::{ckb_node::CkbNode, *};

/// Functions CKB calls on its hot paths, cross-checked one by one.
const CROSS_CHECKED: [&str; 6] = [
    "rocksdb_get_pinned_cf",
    "rocksdb_transaction_get_pinned_cf",
    "rocksdb_transaction_put_cf",
    "rocksdb_transaction_commit",
    "rocksdb_write",
    "rocksdb_iter_seek",
];

#[test]
fn real_node_counts_match_an_independent_probe() {
    let node = CkbNode::start();
    let pid = node.pid.to_string();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("node exe");

    // Freeze the node so both probes see exactly the same calls: attach both, thaw, mine,
    // freeze, read both.
    node.signal(libc::SIGSTOP);
    let script: String = CROSS_CHECKED
        .iter()
        .map(|f| {
            format!(
                "uretprobe:{}:{f} /pid == {pid}/ {{ @[\"{f}\"] = count(); }}\n",
                exe.display()
            )
        })
        .collect();
    let mut bt = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bpftrace (installed by scripts/bootstrap.sh)");
    let mut bt_out = BufReader::new(bt.stdout.take().unwrap());
    let mut first = String::new();
    bt_out.read_line(&mut first).unwrap();
    assert!(first.contains("Attaching"), "bpftrace: {first}");
    std::thread::sleep(Duration::from_millis(500));

    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--json"]);
    node.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(30));
    node.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(500));

    probe.signal(libc::SIGINT);
    let (code, lines, stderr) = probe.wait(Duration::from_secs(20));
    // SAFETY: interrupting our own bpftrace child makes it print its maps and exit.
    unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    bt_out.read_to_string(&mut rest).unwrap();
    let _ = bt.wait();
    node.signal(libc::SIGCONT);

    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    eprintln!("{stderr}");

    // bpftrace prints `@[rocksdb_x]: N`.
    let theirs: BTreeMap<String, u64> = rest
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("@[")?;
            let (name, n) = l.split_once("]: ")?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect();
    for f in CROSS_CHECKED {
        let ours = u(&s["functions"][f]["count"]);
        let want = theirs.get(f).copied().unwrap_or(0);
        eprintln!("{f}: ckb-probe {ours}, bpftrace {want}");
        assert_eq!(ours, want, "{f}: ckb-probe {ours} != bpftrace {want}");
    }
    for op in ["GET", "PUT", "WRITE", "ITER_SEEK"] {
        assert!(
            u(&s["operations"][op]["count"]) > 0,
            "{op} not seen in 30 s of mining"
        );
    }
    assert_eq!(u(&s["unpaired"]), 0);

    // Column families: CKB's columns "0".."18" (or "default" for calls without a CF argument),
    // never "unknown", and they add up to the per-operation totals.
    let cfs = s["column_families"].as_object().expect("column_families");
    assert!(cfs.len() > 3, "too few columns seen: {:?}", cfs.keys());
    let mut per_op: BTreeMap<String, u64> = BTreeMap::new();
    for (name, cf) in cfs {
        let known = name == "default" || name.parse::<u32>().is_ok_and(|n| n <= 18);
        assert!(known, "unexpected column family {name}");
        for (op, r) in cf["operations"].as_object().unwrap() {
            *per_op.entry(op.clone()).or_default() += u(&r["count"]);
        }
    }
    for (op, n) in &per_op {
        assert_eq!(
            *n,
            u(&s["operations"][op]["count"]),
            "{op}: CF sum != total"
        );
    }
    assert_eq!(u(&s["cf_unresolved"]), 0);
    eprintln!(
        "columns seen: {:?}",
        cfs.iter()
            .map(|(k, v)| (k.clone(), v["column"].as_str().unwrap_or("").to_string()))
            .collect::<Vec<_>>()
    );
}
