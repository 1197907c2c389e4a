//! Entry-only probes moved off a single-stepped first instruction (`symbols` entry sites), on
//! the synthetic `ckb-probe-sitebed`: the site `symbols` reports, and exact results with the
//! probe there. Timings are printed, not asserted (`cargo bench --bench sites` compares them).
//! Run as root, one test at a time.

mod support;

use std::{os::unix::fs::FileExt as _, path::Path, process::Command, time::Duration};

use serde_json::Value;
use support::{Probe, Testbed, ckb_probe, parse_ndjson, summary, testbed_bin, tier1, u};

/// `ckb-probe symbols --json EXE`.
fn symbols_json(exe: &Path) -> Value {
    let out = Command::new(ckb_probe())
        .args(["symbols", "--json"])
        .arg(exe)
        .output()
        .expect("run symbols");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn symbols_reports_the_entry_sites() {
    let exe = testbed_bin("ckb-probe-sitebed");
    let r = symbols_json(&exe);
    let clear = tier1(&r, "rocksdb_writebatch_clear");
    assert_eq!(clear["first_insn"], "sub $0x18,%rsp");
    assert_eq!(clear["probe_cost"], "single-step");
    assert_eq!(clear["entry_offset"], 4);
    assert_eq!(clear["entry_insn"], "push %rbx");
    assert_eq!(clear["entry_cost"], "emulated");
    assert_eq!(clear["entry_sp_delta"], 0x18);
    assert_eq!(clear["entry_note"], Value::Null);
    // The kernel's 6-byte nop: emulated from Linux 6.16 on.
    let destroy = tier1(&r, "rocksdb_transaction_destroy");
    let release = ckb_probe::check::kernel_release();
    if ckb_probe::check::parse_release(&release).is_some_and(|v| v >= (6, 16)) {
        assert_eq!(destroy["entry_offset"], 4, "{destroy}");
        assert_eq!(destroy["entry_sp_delta"], 0x28);
    } else {
        assert_eq!(destroy["entry_offset"], 0, "{destroy}");
        assert!(destroy["entry_note"].is_string());
    }
    let put = tier1(&r, "rocksdb_writebatch_put");
    assert_eq!(put["entry_offset"], 0);
    assert_eq!(put["entry_note"], "first instruction is emulated");

    let out = Command::new(ckb_probe())
        .arg("symbols")
        .arg(&exe)
        .output()
        .expect("run symbols");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("entry-only probe at +0x4 `push %rbx` (emulated, %rsp 0x18 below entry)"),
        "{text}"
    );
}

/// The byte at file offset `file_offset` of `exe` as mapped in process `pid` (an `int3`, 0xcc,
/// where a uprobe is placed).
fn mapped_byte(pid: u32, exe: &Path, file_offset: u64) -> u8 {
    let exe = exe.canonicalize().expect("exe path");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let addr = maps
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || Path::new(f[5]) != exe {
                return None;
            }
            let (start, end) = f[0].split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            let off = u64::from_str_radix(f[2], 16).ok()?;
            (off..off + (end - start))
                .contains(&file_offset)
                .then(|| start + file_offset - off)
        })
        .expect("offset mapped");
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    let mut b = [0u8; 1];
    mem.read_exact_at(&mut b, addr).expect("read mem");
    b[0]
}

/// `rocksdb_writebatch_clear`'s entry-only program, moved past `sub $0x18,%rsp`, has its
/// breakpoint at +4 (not on the first instruction) and runs once per call with the right batch
/// pointer: each write then reports exactly the bytes put after the clear (a missed or misread
/// clear would add the 8 bytes put before it). Pairs stay on their first instruction.
#[test]
fn moved_entry_probe_keeps_results_exact() {
    let exe = testbed_bin("ckb-probe-sitebed");
    let report = symbols_json(&exe);
    let tb = Testbed::spawn_exe(&exe, &["--calls", "20000", "--batches", "3000"]);
    let pid = tb.pid.to_string();
    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--json"]);
    for (f, moved) in [
        ("rocksdb_writebatch_clear", true),
        ("rocksdb_writebatch_put", false),
    ] {
        let r = tier1(&report, f);
        let at = u(&r["file_offset"]);
        let site = at + u(&r["entry_offset"]);
        assert_eq!(site != at, moved, "{r}");
        assert_eq!(
            mapped_byte(tb.pid, &exe, site),
            0xcc,
            "{f}: no breakpoint at its site"
        );
        if moved {
            assert_ne!(
                mapped_byte(tb.pid, &exe, at),
                0xcc,
                "{f}: breakpoint left on entry"
            );
        }
    }
    tb.start();
    let truth = tb.finish();
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&parse_ndjson(&lines)).clone();
    for f in ["rocksdb_writebatch_put", "rocksdb_write"] {
        assert_eq!(
            u(&s["functions"][f]["count"]),
            u(&truth["functions"][f]["calls"]),
            "{f}: {s}"
        );
        assert_eq!(
            u(&s["functions"][f]["bytes"]),
            u(&truth["functions"][f]["bytes"]),
            "{f}: {s}"
        );
    }
    assert_eq!(u(&s["unpaired"]), 0, "{s}");
    for (f, ns) in truth["ns_per_call"].as_object().expect("ns_per_call") {
        println!(
            "{f}: {:.0} ns per call with its entry-only probe at its entry site",
            ns.as_f64().unwrap_or(0.0)
        );
    }
}
