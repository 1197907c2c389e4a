//! What ckb-probe adds to every traced RocksDB call, side by side with the floor (empty uprobe
//! programs on the same functions) and with bpftrace, in one run; plus ckb-probe's own CPU, RSS
//! and allocations. Prints Markdown that BENCHMARKS.md takes as is:
//!   cargo bench -p ckb-probe --bench overhead [-- SECTION...]
//! Sections (default: all): `per-call` (testbed mix and emulated-only mix), `profile` (kernel
//! run time per program), `lifecycle` (attach and detach time per uprobe mechanism), `user`
//! (ckb-probe's CPU and RSS), `alloc` (allocations in the poll loop). Environment: OVERHEAD_REPS (repetitions, default 3), OVERHEAD_SECS (seconds per run,
//! default 5), OVERHEAD_USER_SECS (the `user` run, default 20; 600 for the 10-minute figure).
//!
//! Every run is the static testbed, 1 worker thread, `--rate 0` (as fast as it goes). The cost
//! per traced call is the worker thread's CPU time (user + kernel, so uprobe traps and programs
//! included) divided by the calls of the 23 traced functions; "added" is that minus the median
//! without probes. CPU time rather than wall time: other load on the machine delays the thread
//! but does not add to its CPU time. Configurations alternate within each repetition, so a
//! change of load hits them all alike.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    num::NonZeroU32,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::programs::{
    UProbe,
    uprobe::{UProbeAttachLocation, UProbeScope},
};
use ckb_probe::{
    model::LayerName,
    probe::{Engine, Uprobes},
    session::{self, Session, rocksdb::RocksOptions},
    symbols::{self, ProbeCost},
    target,
    view::ndjson,
};
use ckb_probe_common::{config::Config, rocksdb::TRACED};
use serde_json::Value;
use support::{
    Probe, Testbed,
    bench::{env_u64, median, range, sections},
    parse_ndjson, summary, u,
};

// ---------------------------------------------------------------- allocation counting

thread_local! {
    /// Allocations made by this thread (const-initialised: touching it never allocates).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting each thread's allocations (the `alloc` section reads the
/// main thread's count around each call of the session).
struct Counting;

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// ---------------------------------------------------------------- settings

struct Settings {
    reps: u64,
    secs: u64,
    user_secs: u64,
    lightweight: bool,
    bpftrace: bool,
}

// ---------------------------------------------------------------- configurations

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tool {
    None,
    Floor,
    Rocksdb,
    /// `ckb-probe rocksdb` with perf-event uprobes instead of uprobe_multi links.
    PerfEvent,
    AllLayers,
    Bpftrace,
    Lightweight,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::None => "no probe",
            Tool::Floor => "floor: empty uprobe + uretprobe (ckb-probe's own, same sites)",
            Tool::Rocksdb => "`ckb-probe rocksdb`",
            Tool::PerfEvent => {
                "`ckb-probe rocksdb`, perf-event uprobes (`CKB_PROBE_UPROBES=perf_event`)"
            }
            Tool::AllLayers => "`ckb-probe rocksdb --with syscall,net`",
            Tool::Bpftrace => "bpftrace, per-function latency histograms",
            Tool::Lightweight => "`ckb-probe rocksdb --lightweight`",
        }
    }

    fn probe_args(self) -> Option<&'static [&'static str]> {
        match self {
            Tool::Rocksdb | Tool::PerfEvent => Some(&[]),
            Tool::AllLayers => Some(&["--with", "syscall,net"]),
            Tool::Lightweight => Some(&["--lightweight"]),
            _ => None,
        }
    }

    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Tool::PerfEvent => &[("CKB_PROBE_UPROBES", "perf_event")],
            _ => &[],
        }
    }
}

fn tools(s: &Settings) -> Vec<Tool> {
    let mut t = vec![
        Tool::None,
        Tool::Floor,
        Tool::Rocksdb,
        Tool::PerfEvent,
        Tool::AllLayers,
    ];
    if s.bpftrace {
        t.push(Tool::Bpftrace);
    }
    if s.lightweight {
        t.push(Tool::Lightweight);
    }
    t
}

/// One measured run.
struct Sample {
    calls: u64,
    /// Worker CPU time and wall time per traced call, ns.
    cpu_ns: f64,
    wall_ns: f64,
    /// What the tool counted against the truth, when it says: (counted, lost events).
    counted: Option<(u64, u64)>,
}

/// Something attached to the testbed for one run; detached on drop or [`Attached::finish`].
enum Attached {
    Nothing,
    /// Holds the floor's links: dropping it detaches them.
    Floor {
        _engine: Box<Engine>,
    },
    Probe(Probe),
    Bpftrace(Bpftrace),
}

impl Attached {
    fn pid(&self) -> u32 {
        match self {
            Attached::Nothing | Attached::Floor { .. } => std::process::id(),
            Attached::Probe(p) => p.child.id(),
            Attached::Bpftrace(b) => b.child.id(),
        }
    }

    /// After the testbed's run: what the tool counted, and detaching.
    fn finish(self) -> Option<(u64, u64)> {
        match self {
            Attached::Nothing | Attached::Floor { .. } => None,
            Attached::Probe(p) => {
                let (code, lines, stderr) = p.wait(Duration::from_secs(60));
                assert_eq!(code, 0, "ckb-probe failed: {stderr}");
                let objs = parse_ndjson(&lines);
                let s = summary(&objs);
                let counted = TRACED
                    .iter()
                    .map(|f| u(&s["functions"][f.symbol]["count"]))
                    .sum();
                Some((counted, u(&s["lost_events"])))
            }
            Attached::Bpftrace(b) => Some((b.finish(), 0)),
        }
    }
}

fn testbed_args(secs: u64, skip: &[String]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--threads",
        "1",
        "--rate",
        "0",
        "--no-latency-samples",
        "--duration",
    ]
    .map(String::from)
    .to_vec();
    a.push(secs.to_string());
    if !skip.is_empty() {
        a.push("--skip".into());
        a.push(skip.join(","));
    }
    a
}

/// The testbed for one run, waiting on its start file.
fn spawn_testbed(secs: u64, skip: &[String]) -> Testbed {
    let args = testbed_args(secs, skip);
    Testbed::spawn(
        "static",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// The attach sites ckb-probe's RocksDB layer picks in the testbed.
fn testbed_sites() -> symbols::RocksDbSites {
    let tb = spawn_testbed(1, &[]);
    symbols::rocksdb_sites(&target::process(tb.pid).expect("testbed process"))
        .expect("testbed sites")
}

fn attach(tool: Tool, tb: &Testbed) -> Attached {
    let pid = tb.pid.to_string();
    match tool {
        Tool::None => Attached::Nothing,
        Tool::Floor => Attached::Floor {
            _engine: Box::new(attach_floor(tb.pid)),
        },
        Tool::Bpftrace => Attached::Bpftrace(Bpftrace::start(tb)),
        t => {
            let mut args = vec!["rocksdb", "--pid", &pid, "--json"];
            args.extend_from_slice(t.probe_args().unwrap_or_default());
            Attached::Probe(Probe::start_env(&args, t.env()))
        }
    }
}

/// One run of `tool` on the testbed; `during` is called (with the attached tool's process id)
/// shortly before the testbed's measured phase ends, while everything is still attached.
fn run_once(tool: Tool, secs: u64, skip: &[String], during: Option<&mut dyn FnMut(u32)>) -> Sample {
    let tb = spawn_testbed(secs, skip);
    let attached = attach(tool, &tb);
    tb.start();
    if let Some(f) = during {
        std::thread::sleep(Duration::from_secs(secs).saturating_sub(Duration::from_millis(700)));
        f(attached.pid());
    }
    let truth = tb.finish();
    let counted = attached.finish();
    let calls = traced_calls(&truth);
    let per_call = |secs: f64| secs * 1e9 / calls.max(1) as f64;
    Sample {
        calls,
        cpu_ns: per_call(truth["worker_cpu_secs"].as_f64().unwrap_or(0.0)),
        wall_ns: per_call(truth["duration_secs"].as_f64().unwrap_or(0.0)),
        counted,
    }
}

/// Calls of the traced functions in a ground truth.
fn traced_calls(truth: &Value) -> u64 {
    TRACED
        .iter()
        .map(|f| u(&truth["functions"][f.symbol]["calls"]))
        .sum()
}

// ---------------------------------------------------------------- the floor

/// ckb-probe's empty `floor_enter`/`floor_exit` on every traced function of `pid`, where the
/// RocksDB layer attaches (the same sites, the same kind of link), through the library's engine.
fn attach_floor(pid: u32) -> Engine {
    let process = target::process(pid).expect("testbed process");
    let sites = symbols::rocksdb_sites(&process).expect("testbed sites");
    let mut engine = Engine::load(Config {
        tgid: pid,
        flags: 0,
        slow_threshold_ns: u64::MAX,
    })
    .expect("loading ckb-probe's eBPF object");
    let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).expect("pid"));
    for name in ["floor_exit", "floor_enter"] {
        // The same mechanism as ckb-probe's own probes (uprobe_multi links where the kernel
        // has them), so the floor stays comparable.
        if engine.uprobes() == Uprobes::Multi {
            for f in &TRACED {
                let site = &sites.sites[f.symbol];
                engine
                    .attach_multi(name, &sites.object, site.file_offset, pid)
                    .expect("attaching the floor program")
                    .expect("uprobe_multi links");
            }
            continue;
        }
        let prog: &mut UProbe = engine
            .ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{name} missing from the eBPF object"))
            .try_into()
            .expect("a uprobe program");
        prog.load().expect("loading the floor program");
        for f in &TRACED {
            let site = sites
                .sites
                .get(f.symbol)
                .expect("traced function in testbed");
            prog.attach(
                UProbeAttachLocation::AbsoluteOffset(site.file_offset),
                &sites.object,
                scope,
            )
            .expect("attaching the floor program");
        }
    }
    engine
}

// ---------------------------------------------------------------- bpftrace

/// bpftrace timing each traced function into a per-function log2 histogram, the way an
/// operator would write it: entry time in a hash keyed by (thread, function), a histogram update
/// and a delete on return.
struct Bpftrace {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
}

impl Bpftrace {
    fn script(exe: &str) -> String {
        let mut s = String::from("BEGIN { printf(\"READY\\n\"); }\n");
        for (i, f) in TRACED.iter().enumerate() {
            let sym = f.symbol;
            s.push_str(&format!(
                "uprobe:{exe}:{sym} {{ @s[tid, {i}] = nsecs; }}\n\
                 uretprobe:{exe}:{sym} /@s[tid, {i}]/ {{ @h[{i}] = hist(nsecs - @s[tid, {i}]); delete(@s[tid, {i}]); }}\n"
            ));
        }
        s
    }

    fn start(tb: &Testbed) -> Bpftrace {
        let exe = support::testbed("static");
        let script = Bpftrace::script(&exe.to_string_lossy());
        let mut child = Command::new("bpftrace")
            .args(["-B", "none", "-p", &tb.pid.to_string(), "-e", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bpftrace");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // BEGIN fires once every probe is attached.
        loop {
            match lines.next() {
                Some(Ok(l)) if l.trim() == "READY" => break,
                Some(Ok(_)) => {}
                _ => panic!("bpftrace exited before attaching"),
            }
        }
        let out =
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        Bpftrace {
            child,
            out: Some(out),
        }
    }

    /// Stops bpftrace; returns the calls its histograms hold.
    fn finish(mut self) -> u64 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let out = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        // Histogram rows: "[4K, 8K)   123 |@@@@   |"
        out.lines()
            .filter(|l| l.starts_with('['))
            .filter_map(|l| {
                let rest = &l[l.find([')', ']'])? + 1..];
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- statistics

/// 12345.6 -> "12,346".
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

// ---------------------------------------------------------------- per-call section

/// The traced functions the testbed's probe sites single-step (what the emulated-only mix
/// leaves out), as ckb-probe's own site selection reports them.
fn single_stepped_sites() -> Vec<String> {
    let sites = testbed_sites();
    TRACED
        .iter()
        .filter(|f| {
            sites
                .sites
                .get(f.symbol)
                .is_some_and(|s| s.probe_cost == ProbeCost::SingleStep)
        })
        .map(|f| f.symbol.to_string())
        .collect()
}

struct MixResult {
    /// Per tool, one sample per repetition.
    samples: BTreeMap<Tool, Vec<Sample>>,
}

impl MixResult {
    fn base(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(&self.samples[&Tool::None].iter().map(f).collect::<Vec<_>>())
    }

    /// Added ns per call (CPU) of `tool`, one per repetition.
    fn added(&self, tool: Tool) -> Vec<f64> {
        let base = self.base(|s| s.cpu_ns);
        self.samples[&tool]
            .iter()
            .map(|s| s.cpu_ns - base)
            .collect()
    }
}

fn measure_mix(s: &Settings, skip: &[String]) -> MixResult {
    let tools = tools(s);
    let mut samples: BTreeMap<Tool, Vec<Sample>> = BTreeMap::new();
    for rep in 0..s.reps {
        // Rotating the order too: no configuration always runs right after the same other one.
        let n = tools.len();
        for k in 0..n {
            let tool = tools[(k + rep as usize) % n];
            eprintln!(
                "[overhead] repetition {}/{}: {}",
                rep + 1,
                s.reps,
                tool.label()
            );
            let sample = run_once(tool, s.secs, skip, None);
            samples.entry(tool).or_default().push(sample);
        }
    }
    MixResult { samples }
}

fn print_mix(s: &Settings, title: &str, r: &MixResult) {
    let base_cpu = r.base(|x| x.cpu_ns);
    let base_wall = r.base(|x| x.wall_ns);
    println!("#### {title}\n");
    println!(
        "| configuration | traced calls/s | added ns per call (CPU, median) | spread (min..max) | added ns per call (wall, median) | counted / lost |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (&tool, samples) in &r.samples {
        let secs = s.secs as f64;
        let rate = median(
            &samples
                .iter()
                .map(|x| x.calls as f64 / secs)
                .collect::<Vec<_>>(),
        );
        let wall = median(
            &samples
                .iter()
                .map(|x| x.wall_ns - base_wall)
                .collect::<Vec<_>>(),
        );
        let checked = samples
            .iter()
            .filter_map(|x| {
                x.counted.map(|(c, lost)| {
                    if c == x.calls {
                        format!("exact, {lost} lost")
                    } else {
                        format!("{c} of {}, {lost} lost", x.calls)
                    }
                })
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("; ");
        if tool == Tool::None {
            println!(
                "| {} | {} | 0 (base: {} ns per call) | | 0 (base: {} ns) | |",
                tool.label(),
                thousands(rate),
                thousands(base_cpu),
                thousands(base_wall)
            );
            continue;
        }
        let added = r.added(tool);
        let (lo, hi) = range(&added);
        println!(
            "| {} | {} | {} | {}..{} | {} | {} |",
            tool.label(),
            thousands(rate),
            thousands(median(&added)),
            thousands(lo),
            thousands(hi),
            thousands(wall),
            if checked.is_empty() {
                "-".into()
            } else {
                checked
            }
        );
    }
    if !s.lightweight {
        println!(
            "| {} | not available in this build | | | | |",
            Tool::Lightweight.label()
        );
    }
    if !s.bpftrace {
        println!(
            "| {} | not run: no `bpftrace` on this machine | | | | |",
            Tool::Bpftrace.label()
        );
    }
    println!();
}

/// Ratios of added cost, from the medians, with the range of the per-repetition ratios.
fn ratio_cell(r: &MixResult, a: Tool, b: Tool) -> String {
    if !(r.samples.contains_key(&a) && r.samples.contains_key(&b)) {
        return "-".into();
    }
    let (va, vb) = (r.added(a), r.added(b));
    let per_rep: Vec<f64> = va.iter().zip(&vb).map(|(x, y)| x / y).collect();
    let (lo, hi) = range(&per_rep);
    format!("{:.2} ({:.2}..{:.2})", median(&va) / median(&vb), lo, hi)
}

fn print_ratios(mixes: &[(&str, &MixResult)]) {
    println!("#### Ratios of added cost per call (median; per-repetition range in brackets)\n");
    let head: Vec<&str> = mixes.iter().map(|(n, _)| *n).collect();
    println!("| ratio | {} | goal |", head.join(" | "));
    println!("|---|{}---|", "---:|".repeat(mixes.len()));
    for (label, a, b, goal) in [
        ("ckb-probe / floor", Tool::Rocksdb, Tool::Floor, "≤ 1.15"),
        (
            "ckb-probe / bpftrace",
            Tool::Rocksdb,
            Tool::Bpftrace,
            "≤ 0.8",
        ),
        (
            "ckb-probe: uprobe_multi / perf-event uprobes",
            Tool::Rocksdb,
            Tool::PerfEvent,
            "",
        ),
        ("all layers / floor", Tool::AllLayers, Tool::Floor, ""),
        (
            "lightweight / floor",
            Tool::Lightweight,
            Tool::Floor,
            "≤ 0.6",
        ),
        ("bpftrace / floor", Tool::Bpftrace, Tool::Floor, ""),
    ] {
        let cells: Vec<String> = mixes.iter().map(|(_, r)| ratio_cell(r, a, b)).collect();
        println!("| {label} | {} | {goal} |", cells.join(" | "));
    }
    println!();
}

fn per_call(s: &Settings) {
    println!(
        "### Cost per traced call\n\nStatic testbed, 1 worker thread, `--rate 0`, {} s per run, {} repetitions; configurations alternate within each repetition.\n",
        s.secs, s.reps
    );
    let mix = measure_mix(s, &[]);
    print_mix(s, "Testbed mix (all 23 traced functions)", &mix);
    let stepped = single_stepped_sites();
    let skippable = stepped.iter().all(|f| f.starts_with("rocksdb_iter_"));
    let emulated = if stepped.is_empty() {
        println!(
            "(every traced site of the testbed is emulated: the testbed mix is the emulated-only mix)\n"
        );
        None
    } else if !skippable {
        println!(
            "(emulated-only mix not run: the testbed cannot leave out {})\n",
            stepped.join(", ")
        );
        None
    } else {
        let r = measure_mix(s, &stepped);
        print_mix(
            s,
            &format!("Emulated-only mix (testbed `--skip {}`)", stepped.join(",")),
            &r,
        );
        Some(r)
    };
    let mut mixes = vec![("testbed mix", &mix)];
    if let Some(r) = &emulated {
        mixes.push(("emulated-only mix", r));
    }
    print_ratios(&mixes);
}

// ---------------------------------------------------------------- profile section

/// `kernel.bpf_stats_enabled` on while it lives, the old value back on drop.
struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let old = std::fs::read_to_string(Self::PATH).unwrap_or_else(|_| "0".into());
        std::fs::write(Self::PATH, "1").expect("enabling kernel.bpf_stats_enabled");
        BpfStats(old.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

fn bpftool_json(args: &[&str]) -> Value {
    let out = Command::new("bpftool")
        .args(args)
        .arg("--json")
        .output()
        .expect("bpftool");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// One program's kernel statistics: who it runs for.
#[derive(Debug, Clone)]
struct ProgStat {
    name: String,
    /// (traced function, "entry" or "return") when attached as a uprobe to one function.
    site: Option<(String, &'static str)>,
    runs: u64,
    ns: u64,
}

/// The statistics of every program process `holder` holds. A program is labelled with its
/// traced function from its name (ckb-probe's `<stem>_enter` / `<stem>_exit`) or, for other
/// tools' uprobes attached to exactly one function, from `bpftool perf` (offset in the testbed).
fn snapshot(holder: u32, offsets: &BTreeMap<u64, &'static str>) -> Vec<ProgStat> {
    let ids = support::prog_ids_of(holder);
    let mut sites: BTreeMap<u64, BTreeSet<(String, &'static str)>> = BTreeMap::new();
    for p in bpftool_json(&["perf", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(kind), Some(off)) = (
            p["prog_id"].as_u64(),
            p["fd_type"].as_str(),
            p["offset"].as_u64(),
        ) else {
            continue;
        };
        let kind = match kind {
            "uprobe" => "entry",
            "uretprobe" => "return",
            _ => continue,
        };
        if let Some(f) = offsets.get(&off) {
            sites.entry(id).or_default().insert((f.to_string(), kind));
        }
    }
    let by_name = |name: &str| {
        TRACED.iter().find_map(|f| {
            let kind = match name.strip_prefix(f.stem)? {
                "_enter" => "entry",
                "_exit" => "return",
                _ => return None,
            };
            Some((f.symbol.to_string(), kind))
        })
    };
    bpftool_json(&["prog", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let id = p["id"].as_u64()?;
            if !ids.contains(&id) {
                return None;
            }
            let name = p["name"].as_str().unwrap_or("?").to_string();
            let site = by_name(&name).or_else(|| {
                sites
                    .get(&id)
                    .filter(|s| s.len() == 1)
                    .and_then(|s| s.iter().next().cloned())
            });
            Some(ProgStat {
                name,
                site,
                runs: u(&p["run_cnt"]),
                ns: u(&p["run_time_ns"]),
            })
        })
        .collect()
}

fn per_run(ns: u64, runs: u64) -> String {
    if runs == 0 {
        "-".into()
    } else {
        thousands(ns as f64 / runs as f64)
    }
}

fn profile(s: &Settings) {
    println!(
        "### Kernel time per program run\n\n`kernel.bpf_stats_enabled=1`, then `bpftool prog show`: `run_time_ns / run_cnt` of each program over one {} s testbed run (testbed mix). Measured in a separate pass: the statistics themselves add two clock reads per run.\n",
        s.secs
    );
    let offsets: BTreeMap<u64, &'static str> = {
        let sites = testbed_sites();
        TRACED
            .iter()
            .filter_map(|f| Some((sites.sites.get(f.symbol)?.file_offset, f.symbol)))
            .collect()
    };
    let stats = BpfStats::enable();
    let mut profiles: Vec<(Tool, Vec<ProgStat>)> = Vec::new();
    // The perf-event variant runs the same programs: its profile would repeat ckb-probe's.
    for tool in tools(s)
        .into_iter()
        .filter(|&t| t != Tool::None && t != Tool::PerfEvent)
    {
        eprintln!("[overhead] profile: {}", tool.label());
        let mut snap = Vec::new();
        let mut grab = |pid: u32| snap = snapshot(pid, &offsets);
        run_once(tool, s.secs, &[], Some(&mut grab));
        profiles.push((tool, snap));
    }
    drop(stats);

    println!(
        "| configuration | entry programs: ns per run | return programs: ns per run | other programs: ns per run | runs |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (tool, snap) in &profiles {
        let sum = |pred: &dyn Fn(&ProgStat) -> bool| {
            snap.iter()
                .filter(|p| pred(p))
                .fold((0, 0), |(n, r), p| (n + p.ns, r + p.runs))
        };
        let is_floor = |p: &ProgStat, k: &str| p.name == format!("floor_{k}");
        let entry =
            sum(&|p| p.site.as_ref().is_some_and(|s| s.1 == "entry") || is_floor(p, "enter"));
        let ret = sum(&|p| p.site.as_ref().is_some_and(|s| s.1 == "return") || is_floor(p, "exit"));
        let all = sum(&|_| true);
        let other = (all.0 - entry.0 - ret.0, all.1 - entry.1 - ret.1);
        println!(
            "| {} | {} | {} | {} | {} |",
            tool.label(),
            per_run(entry.0, entry.1),
            per_run(ret.0, ret.1),
            per_run(other.0, other.1),
            thousands(all.1 as f64)
        );
    }
    println!();

    // Per function: the tools with one program per function and site.
    let per_fn: Vec<&(Tool, Vec<ProgStat>)> = profiles
        .iter()
        .filter(|(_, snap)| snap.iter().any(|p| p.site.is_some()))
        .collect();
    if !per_fn.is_empty() {
        let heads: Vec<String> = per_fn
            .iter()
            .map(|(t, _)| format!("{} entry | return", short(*t)))
            .collect();
        println!("| function | {} |", heads.join(" | "));
        println!("|---|{}", "---:|---:|".repeat(per_fn.len()));
        for f in &TRACED {
            let cells: Vec<String> = per_fn
                .iter()
                .map(|(_, snap)| {
                    let cell = |kind: &str| {
                        snap.iter()
                            .find(|p| {
                                p.site
                                    .as_ref()
                                    .is_some_and(|(n, k)| n == f.symbol && *k == kind)
                            })
                            .map_or("-".into(), |p| per_run(p.ns, p.runs))
                    };
                    format!("{} | {}", cell("entry"), cell("return"))
                })
                .collect();
            println!("| {} | {} |", f.symbol, cells.join(" | "));
        }
        println!();
    }
    // Programs that are not per-function uprobes (other layers, helpers), by name.
    for (tool, snap) in &profiles {
        let mut rest: Vec<&ProgStat> = snap
            .iter()
            .filter(|p| p.site.is_none() && p.runs > 0 && !p.name.starts_with("floor_"))
            .collect();
        if rest.is_empty() {
            continue;
        }
        rest.sort_by_key(|p| std::cmp::Reverse(p.ns));
        let list: Vec<String> = rest
            .iter()
            .map(|p| format!("{} {} ns ({} runs)", p.name, per_run(p.ns, p.runs), p.runs))
            .collect();
        println!("{}, other programs: {}\n", short(*tool), list.join("; "));
    }
}

fn short(t: Tool) -> &'static str {
    match t {
        Tool::None => "none",
        Tool::Floor => "floor",
        Tool::Rocksdb => "ckb-probe",
        Tool::PerfEvent => "ckb-probe perf-event",
        Tool::AllLayers => "all layers",
        Tool::Bpftrace => "bpftrace",
        Tool::Lightweight => "lightweight",
    }
}

// ---------------------------------------------------------------- user side

fn user_side(s: &Settings) {
    let secs = s.user_secs;
    println!(
        "### ckb-probe's own CPU and memory\n\n`ckb-probe rocksdb --with syscall,net --json` (1 s interval) on the testbed at its maximum rate (1 thread) for {secs} s; ckb-probe's CPU time (from /proc) over the testbed's run, its RSS at the end of the run and its peak RSS (the kernel's high-water mark `VmHWM`, attaching included). For the 10-minute figure: `OVERHEAD_USER_SECS=600 cargo bench -p ckb-probe --bench overhead -- user`.\n"
    );
    let tb = spawn_testbed(secs, &[]);
    let pid = tb.pid.to_string();
    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--json", "--with", "syscall,net"]);
    let id = probe.child.id();
    tb.start();
    let (cpu0, _) = support::proc_usage(id).unwrap_or((0.0, 0));
    let t0 = Instant::now();
    let truth = tb.finish();
    // The run's own figures: attaching and detaching are left out.
    let (cpu1, rss_end) = support::proc_usage(id).unwrap_or((cpu0, 0));
    // Sampling from outside missed the peak: it is while attaching, before the probe says so.
    let peak_rss = std::fs::read_to_string(format!("/proc/{id}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    let elapsed = t0.elapsed().as_secs_f64();
    let (_code, lines, _err) = probe.wait(Duration::from_secs(120));
    let objs = parse_ndjson(&lines);
    let sm = summary(&objs);
    println!(
        "| run | ckb-probe CPU (% of one core) | RSS at the end | peak RSS (attaching included) | traced calls | lost events |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| {secs} s, all layers, 1 s interval | {:.2} % | {:.1} MiB | {:.1} MiB | {} | {} |\n",
        100.0 * (cpu1 - cpu0) / elapsed.max(1e-9),
        rss_end as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        thousands(traced_calls(&truth) as f64),
        u(&sm["lost_events"]) + u(&sm["net"]["lost_events"]),
    );
}

// ---------------------------------------------------------------- allocations

/// Drives a session (all layers) in this process, as the CLI's loop does, and counts the
/// allocations of `poll` (per event drained) and of `tick` + the NDJSON line (per interval).
fn alloc_check(s: &Settings) {
    println!(
        "### Allocations in the poll loop\n\nThe library's session (rocksdb + syscall + net) driven in the benchmark's process as the CLI drives it (poll every 10 ms, a report every 1 s), on the testbed at its maximum rate for {} s, with a counting global allocator. `--threshold 0`: every traced call is a slow event through the ring buffer, the per-event path.\n",
        s.secs.max(6)
    );
    println!(
        "| slow log | events drained | allocations in poll | per event | intervals | per interval in tick (median after the first 2) | per interval in the NDJSON line | tick + NDJSON per event |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for threshold in [None, Some(0)] {
        let secs = s.secs.max(6);
        let tb = spawn_testbed(secs, &[]);
        let process = target::process(tb.pid).expect("testbed");
        let opts = session::Options {
            layers: vec![LayerName::Rocksdb, LayerName::Syscall, LayerName::Net],
            rocksdb: RocksOptions {
                slow_threshold_us: threshold,
                ..RocksOptions::default()
            },
            // Keeps this process's capabilities (the later sections still attach probes).
            follow: true,
            ..session::Options::default()
        };
        let mut session = Session::start(&process, opts).expect("session");
        let pid = tb.pid;
        tb.start();
        let (mut events, mut poll_allocs) = (0u64, 0u64);
        let (mut in_tick, mut in_line) = (Vec::new(), Vec::new());
        let mut next = Instant::now() + Duration::from_secs(1);
        while target::is_alive(pid) {
            let a = allocs();
            events += session.poll() as u64;
            poll_allocs += allocs() - a;
            let now = Instant::now();
            if now >= next {
                let a = allocs();
                let r = session.tick(now).expect("tick");
                let b = allocs();
                let line = ndjson::line(&r, ndjson::Options::default()).expect("ndjson");
                std::hint::black_box(line);
                in_tick.push((b - a) as f64);
                in_line.push((allocs() - b) as f64);
                next += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The testbed is reaped by its drop; the session detaches on drop.
        drop(session);
        drop(tb);
        let steady = |v: &[f64]| median(&v.iter().skip(2).copied().collect::<Vec<_>>());
        let total: f64 = in_tick.iter().chain(&in_line).sum();
        println!(
            "| {} | {} | {} | {:.4} | {} | {} | {} | {} |",
            match threshold {
                None => "off",
                Some(_) => "`--threshold 0`",
            },
            thousands(events as f64),
            thousands(poll_allocs as f64),
            poll_allocs as f64 / events.max(1) as f64,
            in_tick.len(),
            thousands(steady(&in_tick)),
            thousands(steady(&in_line)),
            if events == 0 {
                "-".into()
            } else {
                format!("{:.2}", total / events as f64)
            },
        );
    }
    println!();
}

// ---------------------------------------------------------------- main

// ---------------------------------------------------------------- attach and detach

/// Wall time to attach (start to "tracing") and to detach (SIGINT to exit) `ckb-probe rocksdb`
/// on a testbed at full speed, per uprobe mechanism. Detaching is where they differ: each
/// released uprobe waits for an RCU grace period.
fn lifecycle(s: &Settings) {
    println!("### Attach and detach\n");
    println!(
        "`ckb-probe rocksdb` on the testbed at full speed (46 uprobes), {} repetitions, median [min..max]:\n",
        s.reps
    );
    println!("| uprobes | attach (s) | detach (s) |");
    println!("|---|---|---|");
    for (label, env) in [
        ("uprobe_multi links", &[][..]),
        (
            "perf-event uprobes",
            &[("CKB_PROBE_UPROBES", "perf_event")][..],
        ),
    ] {
        let (mut attach, mut detach) = (Vec::new(), Vec::new());
        for _ in 0..s.reps {
            let tb = spawn_testbed(30, &[]);
            tb.start();
            let pid = tb.pid.to_string();
            let t0 = Instant::now();
            let probe = Probe::start_env(&["rocksdb", "--pid", &pid, "--json"], env);
            attach.push(t0.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_secs(2));
            let t1 = Instant::now();
            probe.signal(libc::SIGINT);
            let (code, _, stderr) = probe.wait(Duration::from_secs(60));
            detach.push(t1.elapsed().as_secs_f64());
            assert_eq!(code, 0, "ckb-probe failed: {stderr}");
        }
        let cell = |v: &[f64]| {
            let (lo, hi) = range(v);
            format!("{:.2} [{lo:.2}..{hi:.2}]", median(v))
        };
        println!("| {label} | {} | {} |", cell(&attach), cell(&detach));
    }
    println!();
}

fn main() {
    let Some(run) = sections() else {
        return;
    };
    let help = Command::new(support::ckb_probe())
        .args(["rocksdb", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let settings = Settings {
        reps: env_u64("OVERHEAD_REPS", 3),
        secs: env_u64("OVERHEAD_SECS", 5),
        user_secs: env_u64("OVERHEAD_USER_SECS", 20),
        lightweight: help.contains("--lightweight"),
        bpftrace: Command::new("bpftrace").arg("--version").output().is_ok(),
    };
    let t0 = Instant::now();
    println!("{}\n", support::bench::machine());
    if run("per-call") {
        per_call(&settings);
    }
    if run("profile") {
        profile(&settings);
    }
    if run("lifecycle") {
        lifecycle(&settings);
    }
    if run("user") {
        user_side(&settings);
    }
    if run("alloc") {
        alloc_check(&settings);
    }
    eprintln!("[overhead] done in {:.0} s", t0.elapsed().as_secs_f64());
}
