//! `ckb-probe overview`: the interactive view of a run, Elm-like. [`App`] is the state, [`Msg`]
//! what can happen (a report, a key, a line of ckb-probe's own diagnostics, the run's end),
//! [`App::update`] the only place the state changes, and [`draw::view`] a pure function of the
//! state. [`term`] owns the terminal and the loop that feeds the session's reports in. Like
//! every view, it shows the run model's numbers and computes none of its own.

pub mod draw;
pub mod history;
pub mod term;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use ckb_probe_common::rocksdb::Op;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use self::history::{EventLog, History, Level, hhmmss};
use crate::{
    analysis::{net::PeerReport, syscall::SysReport},
    model::{End, Health, LayerName, Lifecycle, LifecycleKind, Report, Unavailable},
};

/// The four tabs, in key order (1-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Rocksdb,
    Network,
    Syscall,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Rocksdb, Tab::Network, Tab::Syscall];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Rocksdb => "RocksDB",
            Tab::Network => "Network",
            Tab::Syscall => "Syscall",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// The peer table's sort column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSort {
    /// The model's order: open connections first, then the busiest.
    Model,
    RecvRate,
    SendRate,
    Received,
    Sent,
    Retransmits,
    Age,
    Peer,
}

impl PeerSort {
    const ALL: [PeerSort; 8] = [
        PeerSort::Model,
        PeerSort::RecvRate,
        PeerSort::SendRate,
        PeerSort::Received,
        PeerSort::Sent,
        PeerSort::Retransmits,
        PeerSort::Age,
        PeerSort::Peer,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PeerSort::Model => "open first",
            PeerSort::RecvRate => "Recv/s",
            PeerSort::SendRate => "Send/s",
            PeerSort::Received => "Recv",
            PeerSort::Sent => "Sent",
            PeerSort::Retransmits => "Retx",
            PeerSort::Age => "Age",
            PeerSort::Peer => "Peer",
        }
    }

    fn next(self) -> PeerSort {
        let i = PeerSort::ALL.iter().position(|s| *s == self).unwrap_or(0);
        PeerSort::ALL[(i + 1) % PeerSort::ALL.len()]
    }
}

/// What the views draw from: the latest report and what was kept of the earlier ones.
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub report: Option<Report>,
    pub history: History,
    pub log: EventLog,
    /// The probe health counters summed over every interval so far (the whole run's, as the
    /// summary would tell them).
    pub health: Health,
    /// The last interval's own counters (non-zero ones are highlighted).
    pub health_now: Health,
}

/// How the run ended, once it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub end: End,
    /// `HH:MM:SS` (UTC).
    pub time: String,
    /// Whether the probes are detached yet (the kernel can take seconds to release
    /// tracepoints on a busy machine).
    pub detached: bool,
}

/// Something that happened.
#[derive(Debug)]
pub enum Msg {
    /// An interval report.
    Report(Box<Report>),
    Key(KeyEvent),
    /// The terminal changed size (the next draw fits the new one).
    Resize,
    /// A line ckb-probe's own diagnostics wrote while the screen was taken.
    Log(String),
    /// The run is over (its last reports are in); the probes are being detached.
    Ended(End),
    /// The probes are detached.
    Detached,
    /// A followed target exited, or its successor is traced now (`--follow`).
    Lifecycle(Lifecycle),
}

/// What the loop must do after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Quit,
}

pub struct App {
    pub pid: u32,
    pub tab: Tab,
    pub paused: bool,
    pub help: bool,
    live: Data,
    /// The data as it was when `p` paused the view (reports keep being collected meanwhile).
    frozen: Option<Data>,
    /// Selected row of the RocksDB operation table.
    pub op_sel: usize,
    /// Selected system call, by name (the ranking reorders every interval).
    pub sys_sel: Option<String>,
    pub peer_sel: usize,
    pub peer_sort: PeerSort,
    /// Sort descending (largest first); ascending for names.
    pub peer_desc: bool,
    pub ended: Option<Ended>,
    /// Layers that could not attach, with the reason.
    pub unavailable: Vec<Unavailable>,
    /// Following: the target exited (its PID, `HH:MM:SS`) and its successor is awaited.
    pub waiting: Option<(u32, String)>,
    /// Following: how many times a successor was attached, and the PID traced before it.
    pub restarts: u64,
    pub previous_pid: Option<u32>,
}

fn now_hms() -> String {
    hhmmss(&crate::view::rfc3339(SystemTime::now()))
}

impl App {
    /// A new view of the run of `pid`, starting with what attaching said.
    pub fn new(pid: u32, notes: &[String], unavailable: &[Unavailable]) -> App {
        let mut live = Data::default();
        let t = now_hms();
        for n in notes {
            live.log.push(t.clone(), Level::Info, n.clone());
        }
        live.log.unavailable(&t, unavailable);
        App {
            pid,
            tab: Tab::Overview,
            paused: false,
            help: false,
            live,
            frozen: None,
            op_sel: 0,
            sys_sel: None,
            peer_sel: 0,
            peer_sort: PeerSort::Model,
            peer_desc: true,
            ended: None,
            unavailable: unavailable.to_vec(),
            waiting: None,
            restarts: 0,
            previous_pid: None,
        }
    }

    /// What the screen shows: the live data, or the data as it was when paused.
    pub fn data(&self) -> &Data {
        self.frozen.as_ref().unwrap_or(&self.live)
    }

    pub fn report(&self) -> Option<&Report> {
        self.data().report.as_ref()
    }

    pub fn update(&mut self, msg: Msg) -> Control {
        match msg {
            Msg::Report(r) => {
                let d = &mut self.live;
                d.history.push(&r);
                d.log.report(&r);
                let h = r.health();
                d.health.lost_events += h.lost_events;
                d.health.unpaired += h.unpaired;
                d.health.cf_unresolved += h.cf_unresolved;
                d.health.maps_full += h.maps_full;
                d.health_now = h;
                d.report = Some(*r);
            }
            Msg::Log(line) => self.live.log.push(now_hms(), Level::Info, line),
            Msg::Ended(end) => {
                let time = now_hms();
                let text = match end {
                    End::TargetExited => format!("target PID {} exited", self.pid),
                    End::Duration => "the --duration is over".to_string(),
                    End::Count => "the --count of reports is reached".to_string(),
                    End::Signal => "stopped".to_string(),
                };
                self.live.log.push(time.clone(), Level::Warn, text);
                // Nothing moves any more: show the final state.
                self.frozen = None;
                self.paused = false;
                self.ended = Some(Ended {
                    end,
                    time,
                    detached: false,
                });
            }
            Msg::Detached => {
                if let Some(e) = &mut self.ended {
                    e.detached = true;
                }
                self.live
                    .log
                    .push(now_hms(), Level::Info, "probes detached".to_string());
            }
            Msg::Lifecycle(e) => self.lifecycle(e),
            Msg::Resize => {}
            Msg::Key(k) => return self.key(k),
        }
        Control::Continue
    }

    fn lifecycle(&mut self, e: Lifecycle) {
        let time = hhmmss(&e.timestamp);
        match e.kind {
            LifecycleKind::TargetExited => {
                self.live.log.push(
                    time.clone(),
                    Level::Warn,
                    format!(
                        "target_exited: PID {} exited; waiting for the node to come back",
                        e.pid
                    ),
                );
                self.waiting = Some((e.pid, time));
            }
            LifecycleKind::TargetAttached => {
                // Everything shown so far was the old process's: the new one starts from
                // nothing (its counters start at zero), only the event log goes on.
                let log = std::mem::take(&mut self.live.log);
                self.live = Data {
                    log,
                    ..Data::default()
                };
                self.live.log.push(
                    time,
                    Level::Info,
                    format!(
                        "target_attached: PID {} (was {}), {}; counters start again",
                        e.pid,
                        e.previous_pid.map_or("?".into(), |p| p.to_string()),
                        e.node.as_deref().unwrap_or("?")
                    ),
                );
                self.waiting = None;
                self.restarts = e.restarts;
                self.previous_pid = e.previous_pid;
                self.pid = e.pid;
            }
        }
    }

    fn key(&mut self, k: KeyEvent) -> Control {
        // Some terminals report releases and repeats too; only presses act.
        if k.kind == KeyEventKind::Release {
            return Control::Continue;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Char('c') if ctrl => return Control::Quit,
            KeyCode::Char('q') | KeyCode::Char('Q') => return Control::Quit,
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Esc => return Control::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = !self.help,
            KeyCode::Tab => self.tab = self.tab.step(1),
            KeyCode::BackTab => self.tab = self.tab.step(-1),
            KeyCode::Char(c @ '1'..='4') => self.tab = Tab::ALL[(c as u8 - b'1') as usize],
            KeyCode::Char('p') | KeyCode::Char(' ') if self.ended.is_none() => {
                self.paused = !self.paused;
                self.frozen = self.paused.then(|| self.live.clone());
            }
            KeyCode::Up | KeyCode::Char('k') => self.select(-1),
            KeyCode::Down | KeyCode::Char('j') => self.select(1),
            KeyCode::PageUp => self.select(-10),
            KeyCode::PageDown => self.select(10),
            KeyCode::Home => self.select(isize::MIN / 2),
            KeyCode::End => self.select(isize::MAX / 2),
            KeyCode::Char('s') if self.tab == Tab::Network => {
                self.peer_sort = self.peer_sort.next();
                // Names read best A to Z, numbers largest first.
                self.peer_desc = self.peer_sort != PeerSort::Peer;
            }
            KeyCode::Char('r') if self.tab == Tab::Network => self.peer_desc = !self.peer_desc,
            _ => {}
        }
        Control::Continue
    }

    fn select(&mut self, by: isize) {
        let step = |cur: usize, len: usize| -> usize {
            if len == 0 {
                0
            } else {
                (cur as isize).saturating_add(by).clamp(0, len as isize - 1) as usize
            }
        };
        match self.tab {
            Tab::Overview => {}
            Tab::Rocksdb => self.op_sel = step(self.op_sel, self.ops().len()),
            Tab::Network => self.peer_sel = step(self.peer_sel, self.peers().len()),
            Tab::Syscall => {
                let names: Vec<String> = self.syscalls().iter().map(|r| r.name.clone()).collect();
                let cur = self
                    .sys_sel
                    .as_ref()
                    .and_then(|n| names.iter().position(|x| x == n))
                    .unwrap_or(0);
                self.sys_sel = names.get(step(cur, names.len())).cloned();
            }
        }
    }

    /// Why a layer does not run, when it could not attach.
    pub fn unavailable(&self, layer: LayerName) -> Option<&str> {
        self.report()
            .map_or(&self.unavailable[..], |r| &r.unavailable[..])
            .iter()
            .find(|u| u.layer == layer)
            .map(|u| u.reason.as_str())
    }

    /// The operations in the table: ITER_NEXT only once it has been seen (it is optional,
    /// and probing it is costly).
    pub fn ops(&self) -> Vec<Op> {
        let seen = self
            .report()
            .and_then(|r| r.rocksdb.as_ref())
            .is_some_and(|r| {
                r.histograms.contains_key(Op::IterNext.name())
                    || r.stats.op(Op::IterNext).is_some_and(|o| o.count > 0)
            });
        Op::ALL
            .into_iter()
            .filter(|op| *op != Op::IterNext || seen)
            .collect()
    }

    pub fn selected_op(&self) -> Op {
        let ops = self.ops();
        ops[self.op_sel.min(ops.len() - 1)]
    }

    /// The system calls of the last interval, most time first.
    pub fn syscalls(&self) -> &[SysReport] {
        self.report()
            .and_then(|r| r.syscall.as_ref())
            .map_or(&[][..], |s| &s.stats.syscalls)
    }

    /// The selected system call's row: the one chosen, else the top one.
    pub fn selected_syscall(&self) -> Option<(usize, &SysReport)> {
        let rows = self.syscalls();
        self.sys_sel
            .as_ref()
            .and_then(|n| rows.iter().position(|r| &r.name == n))
            .or((!rows.is_empty()).then_some(0))
            .map(|i| (i, &rows[i]))
    }

    /// The peers in the chosen order.
    pub fn peers(&self) -> Vec<&PeerReport> {
        let mut peers: Vec<&PeerReport> = self
            .report()
            .and_then(|r| r.net.as_ref())
            .map(|n| n.stats.peers.iter().collect())
            .unwrap_or_default();
        let f = |v: f64| ordered(v);
        match self.peer_sort {
            PeerSort::Model => return peers,
            PeerSort::RecvRate => peers.sort_by_key(|p| f(p.recv_bytes_per_sec)),
            PeerSort::SendRate => peers.sort_by_key(|p| f(p.send_bytes_per_sec)),
            PeerSort::Received => peers.sort_by_key(|p| p.bytes_received),
            PeerSort::Sent => peers.sort_by_key(|p| p.bytes_sent),
            PeerSort::Retransmits => peers.sort_by_key(|p| p.retransmits),
            PeerSort::Age => peers.sort_by_key(|p| f(p.age_secs.unwrap_or(0.0))),
            PeerSort::Peer => peers.sort_by(|a, b| (&a.remote, a.port).cmp(&(&b.remote, b.port))),
        }
        if self.peer_desc {
            peers.reverse();
        }
        peers
    }
}

/// A total order key for a non-negative rate or age.
fn ordered(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        (v * 1_000.0) as u64
    } else {
        0
    }
}
