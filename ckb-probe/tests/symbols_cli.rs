//! `ckb-probe symbols` end to end: the testbed (RocksDB static and dynamic), stripped and
//! damaged copies, bad paths and PIDs, and the real CKB binary.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use serde_json::Value;
use support::tier1;

const BIN: &str = env!("CARGO_BIN_EXE_ckb-probe");

/// Hot-path functions a CKB node calls (see docs and the notes on CKB's RocksDB use).
const CKB_HOT: [&str; 8] = [
    "rocksdb_get_pinned_cf",
    "rocksdb_transaction_get_pinned_cf",
    "rocksdb_transaction_put_cf",
    "rocksdb_transaction_delete_cf",
    "rocksdb_transaction_commit",
    "rocksdb_write",
    "rocksdb_iter_seek",
    "rocksdb_iter_next",
];

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run ckb-probe")
}

fn json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.trim_end().lines().count(), 1, "one JSON line: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Asserts exit code 2 and a one-line error that names `needle`.
fn assert_bad_input(args: &[&str], needle: &str) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(out.stdout.is_empty());
    err
}

/// `target/` of this build.
fn target_dir() -> PathBuf {
    let bin = Path::new(BIN);
    bin.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/ckb-probe")
        .to_path_buf()
}

/// The testbed binary `name` (static or `-dylib`): an existing build, or one made now in a
/// separate target directory (the outer `cargo test` may hold the main one's lock).
fn testbed(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let target = target_dir();
    for profile in ["debug", "release"] {
        let p = target.join(profile).join(name);
        if p.is_file() {
            return p;
        }
    }
    let dir = BUILT.get_or_init(|| {
        let own = target.join("ckb-probe-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "ckb-probe-testbed",
                "--bins",
                "--manifest-path",
            ])
            .arg(manifest)
            .arg("--target-dir")
            .arg(&own)
            .status()
            .expect("run cargo build -p ckb-probe-testbed");
        assert!(status.success(), "building the testbed failed");
        own.join("debug")
    });
    let p = dir.join(name);
    assert!(p.is_file(), "{} missing after the build", p.display());
    p
}

fn ckb_binary() -> Option<PathBuf> {
    let which = Command::new("which").arg("ckb").output().ok();
    let from_path = which
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/ckb"));
    from_path.into_iter().chain(home).find(|p| p.is_file())
}

fn assert_documented_fields(r: &Value) {
    for f in [
        "path",
        "pid",
        "size_bytes",
        "build_id",
        "stripped",
        "arch",
        "rocksdb_linkage",
        "rocksdb_library",
        "ckb_version",
        "tier1",
        "tier1_missing_traced",
        "tier2",
        "tier2_count",
        "tier3_count",
        "tier3",
        "hint",
    ] {
        assert!(r.get(f).is_some(), "field {f} missing: {r}");
    }
    for t in r["tier1"].as_array().expect("tier1") {
        for f in [
            "name",
            "present",
            "traced",
            "file_offset",
            "probe_cost",
            "first_insn",
            "op",
        ] {
            assert!(t.get(f).is_some(), "tier1 field {f} missing: {t}");
        }
    }
    assert_eq!(
        r["tier2_count"].as_u64(),
        Some(r["tier2"].as_array().expect("tier2").len() as u64)
    );
}

#[test]
fn static_testbed() {
    let tb = testbed("ckb-probe-testbed");
    let r = json(&["symbols", "--json", tb.to_str().expect("path")]);
    assert_documented_fields(&r);
    assert_eq!(r["rocksdb_linkage"], "static");
    assert_eq!(r["rocksdb_library"], Value::Null);
    assert_eq!(r["stripped"], false);
    assert_eq!(r["arch"], "x86_64");
    assert_eq!(r["build_id"].as_str().map(str::len), Some(40));
    assert_eq!(r["tier1_missing_traced"], Value::Array(vec![]));
    assert_eq!(r["tier3"], Value::Null, "tier3 is listed with --all only");
    let get = tier1(&r, "rocksdb_get_pinned_cf");
    assert_eq!(get["present"], true);
    assert_eq!(get["traced"], true);
    assert_eq!(get["op"], "GET");
    assert!(get["file_offset"].as_u64().is_some_and(|o| o > 0));
    assert!(["emulated", "single-step"].contains(&get["probe_cost"].as_str().expect("cost")));
    let all = json(&["symbols", "--json", "--all", tb.to_str().expect("path")]);
    assert!(all["tier3"].is_array());

    let human = run(&["symbols", tb.to_str().expect("path")]);
    assert!(human.status.success());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("Tier 1") && text.contains("rocksdb_transaction_commit"),
        "{text}"
    );
    assert!(text.contains("static"), "{text}");
}

#[test]
fn dynamic_testbed() {
    let tb = testbed("ckb-probe-testbed-dylib");
    let r = json(&["symbols", "--json", tb.to_str().expect("path")]);
    assert_documented_fields(&r);
    assert_eq!(r["rocksdb_linkage"], "dynamic");
    let lib = r["rocksdb_library"].as_str().expect("library path");
    assert!(lib.contains("librocksdb.so"), "{lib}");
    assert_eq!(tier1(&r, "rocksdb_transaction_commit")["present"], true);
}

#[test]
fn stripped_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, linkage) in [
        ("ckb-probe-testbed", "none"),
        // .dynsym survives stripping: the shared library case keeps working.
        ("ckb-probe-testbed-dylib", "dynamic"),
    ] {
        let stripped = dir.path().join(name);
        let st = Command::new("objcopy")
            .arg("--strip-all")
            .arg(testbed(name))
            .arg(&stripped)
            .status()
            .expect("objcopy");
        assert!(st.success());
        let p = stripped.to_str().expect("path");
        let r = json(&["symbols", "--json", p]);
        assert_documented_fields(&r);
        assert_eq!(r["stripped"], true, "{name}");
        assert_eq!(r["rocksdb_linkage"], linkage, "{name}");
        let hint = r["hint"].as_str().expect("hint");
        assert!(hint.contains("stripped"), "{hint}");
        let human = run(&["symbols", p]);
        assert_eq!(human.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&human.stdout).contains("hint: "));
    }
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-ckb");
    assert_bad_input(
        &["symbols", missing.to_str().expect("path")],
        "no such file",
    );
    assert_bad_input(
        &["symbols", dir.path().to_str().expect("path")],
        "is a directory",
    );
    assert_bad_input(&["symbols", "/etc/passwd"], "not an ELF file");
    assert_bad_input(&["symbols", "--json", "/etc/passwd"], "/etc/passwd");

    let tb = std::fs::read(testbed("ckb-probe-testbed")).expect("read testbed");
    for (i, len) in [10, 64, 4096, tb.len() / 2, tb.len() - 1]
        .into_iter()
        .enumerate()
    {
        let cut = dir.path().join(format!("cut{i}"));
        std::fs::write(&cut, &tb[..len]).expect("write");
        assert_bad_input(
            &["symbols", cut.to_str().expect("path")],
            "truncated or malformed",
        );
    }
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("write");
    assert_bad_input(
        &["symbols", empty.to_str().expect("path")],
        "not an ELF file",
    );

    assert_bad_input(&["symbols", "--pid", "999999999"], "999999999");
}

#[test]
fn by_pid() {
    // A process with nothing to do with RocksDB.
    let mut sleep = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = sleep.id().to_string();
    let r = json(&["symbols", "--json", "--pid", &pid]);
    assert_eq!(r["pid"].as_u64(), Some(u64::from(sleep.id())));
    assert_eq!(r["rocksdb_linkage"], "none");
    sleep.kill().expect("kill");
    sleep.wait().expect("wait");
    assert_bad_input(&["symbols", "--pid", &pid], &pid);

    // The dynamic testbed, parked before its workload: the library comes from its maps.
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let mut tb = Command::new(testbed("ckb-probe-testbed-dylib"))
        .args(["--duration", "0.2", "--threads", "1", "--start-file"])
        .arg(&go)
        .arg("--db")
        .arg(dir.path().join("db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("testbed");
    let mut line = String::new();
    let stdout = tb.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut line).expect("READY line");
    assert!(line.starts_with("READY"), "{line}");
    let r = json(&["symbols", "--json", "--pid", &tb.id().to_string()]);
    std::fs::write(&go, b"").expect("start file");
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    let _ = tb.wait();
    assert_eq!(r["rocksdb_linkage"], "dynamic", "{r}");
    assert!(
        r["rocksdb_library"]
            .as_str()
            .is_some_and(|l| l.contains("librocksdb"))
    );
    assert_eq!(tier1(&r, "rocksdb_get_pinned_cf")["present"], true);
}

#[test]
fn real_ckb_binary() {
    let Some(ckb) = ckb_binary() else {
        eprintln!(
            "SKIPPED: no `ckb` on PATH or in ~/.cargo/bin (cargo install ckb --locked --version 0.210.0)"
        );
        return;
    };
    let p = ckb.to_str().expect("path");
    let r = json(&["symbols", "--json", p]);
    assert_documented_fields(&r);
    assert_eq!(r["rocksdb_linkage"], "static");
    assert_eq!(r["stripped"], false);
    assert_eq!(r["ckb_version"], "0.210.0");
    for f in CKB_HOT {
        let t = tier1(&r, f);
        assert_eq!(t["present"], true, "{f}");
        assert!(t["file_offset"].as_u64().is_some(), "{f}");
    }
    assert!(r["tier2_count"].as_u64().is_some_and(|n| n > 0));
    assert!(r["tier3_count"].as_u64().is_some_and(|n| n > 0));
    // Facts checked by hand on CKB 0.205/0.210 (ebpf-toolchain notes).
    assert_eq!(
        tier1(&r, "rocksdb_get_pinned_cf")["first_insn"],
        "push %r15"
    );
    assert_eq!(
        tier1(&r, "rocksdb_iter_seek")["first_insn"],
        "sub $0x18,%rsp"
    );
    assert_eq!(tier1(&r, "rocksdb_iter_seek")["probe_cost"], "single-step");
    let present = r["tier1"]
        .as_array()
        .expect("tier1")
        .iter()
        .filter(|t| t["present"] == true)
        .count();
    assert!(present >= 100, "{present} rocksdb_* functions");
}

/// `(file offset, first instruction)` of `symbol` according to binutils' objdump.
fn objdump_entry(binary: &Path, symbol: &str) -> Option<(u64, String)> {
    let out = Command::new("objdump")
        .args(["-d", "-F", &format!("--disassemble={symbol}")])
        .arg(binary)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = format!("<{symbol}> (File Offset: 0x");
    let off = lines.by_ref().find_map(|l| {
        let rest = &l[l.find(&header)? + header.len()..];
        u64::from_str_radix(rest.trim_end_matches("):"), 16).ok()
    })?;
    // "  43c880:\t48 8b 3f             \tmov    (%rdi),%rdi"
    let insn = lines.next()?.split('\t').nth(2)?;
    Some((off, insn.split_whitespace().collect::<Vec<_>>().join(" ")))
}

/// Our offsets and instruction names agree with objdump for every traced function.
fn assert_matches_objdump(binary: &Path, report: &Value) {
    if Command::new("objdump").arg("--version").output().is_err() {
        panic!("objdump (binutils) is needed to cross-check offsets");
    }
    let mut checked = 0;
    for t in report["tier1"].as_array().expect("tier1") {
        if t["traced"] != true || t["present"] != true {
            continue;
        }
        let name = t["name"].as_str().expect("name");
        let (off, insn) = objdump_entry(binary, name).unwrap_or_else(|| panic!("objdump {name}"));
        assert_eq!(t["file_offset"].as_u64(), Some(off), "{name}");
        let ours = t["first_insn"].as_str().expect("insn");
        let mnemonic = |s: &str| s.split(' ').next().unwrap_or("").to_string();
        if ["push", "sub", "add", "mov", "lea", "test", "endbr64"]
            .contains(&mnemonic(ours).as_str())
        {
            assert_eq!(ours, insn, "{name}");
        } else if !ours.contains(' ') || ours.starts_with("jmp") || ours.starts_with("call") {
            assert_eq!(mnemonic(ours), mnemonic(&insn), "{name}: {insn}");
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn offsets_match_objdump() {
    let tb = testbed("ckb-probe-testbed");
    let r = json(&["symbols", "--json", tb.to_str().expect("path")]);
    assert_matches_objdump(&tb, &r);
    if let Some(ckb) = ckb_binary() {
        let r = json(&["symbols", "--json", ckb.to_str().expect("path")]);
        assert_matches_objdump(&ckb, &r);
    }
}
