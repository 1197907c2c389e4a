//! Drawing: a pure function of the [`App`] state onto a ratatui frame. Every number comes from
//! the run model (the last interval report, or the values [`super::history`] kept of earlier
//! ones), formatted with the same helpers as the text views.

use std::time::{Duration, UNIX_EPOCH};

use ckb_probe_common::rocksdb::Op;
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, BorderType, Cell, Clear, Paragraph, RenderDirection, Row, Sparkline, Table,
        TableState, Tabs, Wrap,
    },
};

use super::{
    App, Data, Tab,
    history::{Level, hhmmss},
};
use crate::{
    analysis::{net::EventRecord, rocksdb::OpReport},
    model::{self, Bucket, End, LayerName},
    view::{
        bytes, clock_ms, hms, latency, log2_rows, net as vnet, ns_label, rocksdb as vrocks,
        syscall as vsys, thousands, us,
    },
};

/// The smallest terminal every pane is laid out for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
const HEAD: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const WARN: Style = Style::new().fg(Color::Yellow);
const GOOD: Style = Style::new().fg(Color::Green);
/// Marks the selected row, also where colours do not show (a plain capture of the screen).
const MARK: &str = "›";

/// Draws the whole screen.
pub fn view(app: &App, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "ckb-probe overview needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}; this one is {}x{}. Enlarge it (q quits).",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [head, tabs, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header(app, f, head);
    tab_bar(app, f, tabs);
    match app.tab {
        Tab::Overview => overview(app, f, body),
        Tab::Rocksdb => rocksdb_tab(app, f, body),
        Tab::Network => network_tab(app, f, body),
        Tab::Syscall => syscall_tab(app, f, body),
    }
    footer(app, f, foot);
    if app.help {
        help(f, body);
    }
}

// ---------------------------------------------------------------- shared pieces

fn block(title: String) -> Block<'static> {
    Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(DIM)
        .title(Span::styled(format!(" {title} "), TITLE))
}

/// A table sized to its content: every column but `fill` is as wide as its widest cell or
/// header, so a number is never cut, and `fill` (a text column) takes what is left.
struct Grid {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Right-aligned columns (numbers).
    numeric: Vec<usize>,
    fill: usize,
    /// A style for every cell of some columns.
    styles: Vec<(usize, Style)>,
    /// Rows carry the selection mark (one column more).
    marked: bool,
    /// Columns left out to make room (see [`Grid::fit`]).
    hidden: Vec<usize>,
}

impl Grid {
    fn new(head: &[&str], numeric: &[usize], fill: usize) -> Grid {
        Grid {
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            numeric: numeric.to_vec(),
            fill,
            styles: Vec::new(),
            marked: false,
            hidden: Vec::new(),
        }
    }

    fn shown(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.head.len()).filter(|i| !self.hidden.contains(i))
    }

    /// Leaves out the `optional` columns, in that order, until the `fill` column gets at
    /// least `min_fill` characters of a table `inner` wide.
    fn fit(&mut self, inner: u16, min_fill: usize, optional: &[usize]) {
        for &col in optional {
            if self.fill_width(inner) >= min_fill {
                return;
            }
            self.hidden.push(col);
        }
    }

    fn width(&self, col: usize) -> u16 {
        let w = |s: &str| Line::from(s).width() as u16;
        self.rows
            .iter()
            .filter_map(|r| r.get(col))
            .map(|c| w(c))
            .chain([w(&self.head[col])])
            .max()
            .unwrap_or(0)
    }

    /// What the `fill` column gets in a table `inner` columns wide.
    fn fill_width(&self, inner: u16) -> usize {
        let n = self.shown().count();
        let others: u16 = self
            .shown()
            .filter(|&i| i != self.fill)
            .map(|i| self.width(i))
            .sum();
        (inner as usize).saturating_sub(others as usize + n - 1 + usize::from(self.marked))
    }

    fn table(self) -> Table<'static> {
        let widths: Vec<Constraint> = self
            .shown()
            .map(|i| {
                if i == self.fill {
                    Constraint::Fill(1)
                } else {
                    Constraint::Length(self.width(i))
                }
            })
            .collect();
        let cell = |i: usize, text: String, base: Style| {
            let style = self
                .styles
                .iter()
                .find(|(c, _)| *c == i)
                .map_or(base, |(_, s)| *s);
            let line = Line::from(Span::styled(text, style));
            Cell::from(if self.numeric.contains(&i) {
                line.right_aligned()
            } else {
                line
            })
        };
        let head = Row::new(
            self.shown()
                .map(|i| {
                    let line = Line::from(self.head[i].clone());
                    Cell::from(if self.numeric.contains(&i) {
                        line.right_aligned()
                    } else {
                        line
                    })
                })
                .collect::<Vec<_>>(),
        )
        .style(HEAD);
        let rows: Vec<Row> = self
            .rows
            .iter()
            .map(|r| {
                Row::new(
                    self.shown()
                        .map(|i| cell(i, r.get(i).cloned().unwrap_or_default(), Style::default()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let mut t = Table::new(rows, widths).header(head);
        if self.marked {
            t = t.row_highlight_style(SELECTED).highlight_symbol(MARK);
        }
        t
    }
}

/// A pane that has nothing to show but a sentence.
fn note(f: &mut Frame, area: Rect, b: Block<'static>, text: String, style: Style) {
    f.render_widget(
        Paragraph::new(Span::styled(text, style))
            .wrap(Wrap { trim: true })
            .block(b),
        area,
    );
}

/// Why a layer's pane is empty: it could not attach, it is not part of the run, or no report
/// has come yet.
fn missing(app: &App, layer: LayerName) -> (String, Style) {
    if let Some(why) = app.unavailable(layer) {
        return (format!("{} layer unavailable: {why}", layer.name()), BAD);
    }
    match app.report() {
        None => (
            "waiting for the first report…".to_string(),
            Style::default(),
        ),
        Some(_) => (
            format!("{} layer not traced in this run", layer.name()),
            DIM,
        ),
    }
}

/// Seconds left, rounded up (a warm-up with 0.4 s left is not over).
fn countdown(secs: f64) -> String {
    hms(Duration::from_secs(secs.max(0.0).ceil() as u64))
}

fn interval_label(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}s", secs as u64)
    } else {
        format!("{secs:.1}s")
    }
}

/// The last `width` values as block characters, newest at the right, scaled to the largest
/// shown. Zero is a blank, so an idle operation reads as nothing.
fn spark(values: impl DoubleEndedIterator<Item = f64> + ExactSizeIterator, width: usize) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let n = values.len();
    let shown: Vec<f64> = values.skip(n.saturating_sub(width)).collect();
    let max = shown.iter().copied().fold(0.0f64, f64::max);
    let mut s = " ".repeat(width.saturating_sub(shown.len()));
    for v in shown {
        s.push(if v <= 0.0 || max <= 0.0 {
            ' '
        } else {
            LEVELS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
        });
    }
    s
}

/// Rows `(low_ns, high_ns, count)` of a histogram that fit `height`: all of them, or the
/// window holding the most values.
fn hist_window(h: &[Bucket], height: usize) -> Vec<(u64, u64, u64)> {
    let rows = log2_rows(h);
    if rows.len() <= height || height == 0 {
        return rows;
    }
    let best = (0..=rows.len() - height)
        .max_by_key(|&i| {
            (
                rows[i..i + height].iter().map(|r| r.2).sum::<u64>(),
                usize::MAX - i,
            )
        })
        .unwrap_or(0);
    rows[best..best + height].to_vec()
}

/// A latency histogram as horizontal bars, one row per power of two.
fn histogram(f: &mut Frame, area: Rect, name: &str, h: Option<&Vec<Bucket>>) {
    let b = block(format!("{name} latency"));
    let Some(h) = h.filter(|h| model::total(h) > 0) else {
        note(f, area, b, "no calls yet".into(), DIM);
        return;
    };
    let b = b.title_bottom(Span::styled(
        format!(" {} since start ", thousands(model::total(h))),
        DIM,
    ));
    let inner = b.inner(area);
    f.render_widget(b, area);
    let rows = hist_window(h, inner.height as usize);
    let peak = rows.iter().map(|r| r.2).max().unwrap_or(1).max(1);
    let count_w = rows.iter().map(|r| thousands(r.2).len()).max().unwrap_or(1);
    // "[  lo,   hi) " then the bar, then the count.
    let bar_w = (inner.width as usize).saturating_sub(15 + count_w);
    let lines: Vec<Line> = rows
        .iter()
        .map(|&(lo, hi, n)| {
            let len = ((n as f64 / peak as f64) * bar_w as f64).round() as usize;
            Line::from(vec![
                Span::styled(format!("[{:>5},{:>5}) ", ns_label(lo), ns_label(hi)), DIM),
                Span::styled("█".repeat(len), GOOD),
                Span::raw(" ".repeat(bar_w - len.min(bar_w) + 1)),
                Span::raw(format!("{:>count_w$}", thousands(n))),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

// ---------------------------------------------------------------- frame

fn header(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(" ckb-probe", TITLE)];
    let sep = || Span::styled(" │ ", DIM);
    if let Some((pid, time)) = &app.waiting {
        spans.push(sep());
        spans.push(Span::styled(
            format!("PID {pid} exited {time} │ waiting for the node to come back (--follow)"),
            WARN,
        ));
        f.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    let restarted = |pid: u32| match app.previous_pid {
        Some(was) => format!("PID {pid} (restart {}, was {was})", app.restarts),
        None => format!("PID {pid}"),
    };
    match app.report() {
        None => {
            spans.push(sep());
            spans.push(Span::raw(format!(
                "{} │ attached, waiting for the first report",
                restarted(app.pid)
            )));
        }
        Some(r) => {
            let h = &r.header;
            spans.push(sep());
            spans.push(Span::styled(h.node.clone(), Style::new().bold()));
            spans.push(sep());
            spans.push(Span::raw(restarted(h.pid)));
            spans.push(sep());
            match &h.chain {
                Some(c) => {
                    spans.push(Span::raw(format!(
                        "tip {} ",
                        c.tip_block_number.map_or("—".into(), thousands)
                    )));
                    let state = c.sync_state();
                    spans.push(Span::styled(
                        state,
                        if state == "synced" { GOOD } else { WARN },
                    ));
                }
                None => spans.push(Span::styled("no RPC", DIM)),
            }
            spans.push(sep());
            spans.push(Span::raw(format!(
                "up {}",
                hms(Duration::from_secs(h.uptime_secs))
            )));
        }
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn tab_bar(app: &App, f: &mut Frame, area: Rect) {
    let [left, state] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(16)]).areas(area);
    let titles: Vec<String> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()))
        .collect();
    f.render_widget(
        Tabs::new(titles)
            .select(app.tab.index())
            .style(DIM)
            .highlight_style(Style::new().fg(Color::Black).bg(Color::Cyan).bold()),
        left,
    );
    let (label, style) = if app.ended.is_some() {
        ("ENDED", BAD)
    } else if app.waiting.is_some() {
        ("WAITING", WARN)
    } else if app.paused {
        ("PAUSED", WARN.add_modifier(Modifier::REVERSED))
    } else {
        ("LIVE", GOOD)
    };
    let every = app
        .report()
        .map(|r| format!(" every {}", interval_label(r.header.sampling_secs)))
        .unwrap_or_default();
    f.render_widget(
        Paragraph::new(
            Line::from(vec![Span::styled(label, style), Span::styled(every, DIM)]).right_aligned(),
        ),
        state,
    );
}

fn footer(app: &App, f: &mut Frame, area: Rect) {
    let d = app.data();
    let h = &d.health;
    let now = &d.health_now;
    let counter = |name: &'static str, total: u64, this: u64| {
        vec![
            Span::styled(format!("{name} "), DIM),
            Span::styled(
                thousands(total),
                if this > 0 {
                    BAD
                } else if total > 0 {
                    WARN
                } else {
                    Style::default()
                },
            ),
            Span::raw(" "),
        ]
    };
    let mut health: Vec<Span> = Vec::new();
    health.extend(counter("lost", h.lost_events, now.lost_events));
    health.extend(counter("unpaired", h.unpaired, now.unpaired));
    health.extend(counter("cf?", h.cf_unresolved, now.cf_unresolved));
    health.extend(counter("full", h.maps_full, now.maps_full));
    let health = Line::from(health).right_aligned();
    let left_line = match (&app.ended, app.paused) {
        (Some(e), _) => Line::from(Span::styled(
            format!(
                " {} {}; {}",
                if e.end == End::TargetExited {
                    "Target exited"
                } else {
                    "Run ended"
                },
                e.time,
                if e.detached {
                    "probes detached; q quits"
                } else {
                    "detaching probes…"
                }
            ),
            BAD,
        )),
        (None, true) => Line::from(Span::styled(
            " PAUSED (still collecting) · p resumes · q quits",
            WARN,
        )),
        (None, false) => Line::from(vec![
            Span::styled(" Tab", HEAD),
            Span::raw(" tabs "),
            Span::styled("↑↓", HEAD),
            Span::raw(" select "),
            Span::styled("p", HEAD),
            Span::raw(" pause "),
            Span::styled("?", HEAD),
            Span::raw(" help "),
            Span::styled("q", HEAD),
            Span::raw(" quit"),
        ]),
    };
    // The left part (what to do) wins over the counters when both do not fit.
    let [left, right_area] = Layout::horizontal([
        Constraint::Length(left_line.width() as u16 + 1),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(left_line), left);
    f.render_widget(Paragraph::new(health), right_area);
}

fn help(f: &mut Frame, body: Rect) {
    let lines = [
        ("Tab Shift-Tab", "next / previous tab"),
        ("1 2 3 4", "Overview, RocksDB, Network, Syscall"),
        ("↑ ↓ PgUp PgDn", "select an operation, peer or syscall"),
        ("s  r", "Network: sort by the next column, reverse"),
        ("p", "pause the screen (data still collected)"),
        ("?", "this help (Esc closes it)"),
        ("q Esc Ctrl-C", "quit (probes are detached)"),
        ("", "Probe health, whole run (footer):"),
        ("lost", "events the kernel could not hand over"),
        ("unpaired", "returns or exits without an entry"),
        ("cf?", "column-family handles not resolved"),
        ("full", "updates lost to a full map"),
    ];
    let w = 62.min(body.width);
    let h = (lines.len() as u16 + 2).min(body.height);
    let area = Rect {
        x: body.x + (body.width - w) / 2,
        y: body.y + (body.height - h) / 2,
        width: w,
        height: h,
    };
    let text: Vec<Line> = lines
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>14}  "), HEAD),
                Span::raw(*v),
            ])
        })
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(text).block(block("Keys".into())), area);
}

// ---------------------------------------------------------------- Overview

fn overview(app: &App, f: &mut Frame, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let [net, rocks] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let [sys, events] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    net_quadrant(app, f, net);
    rocks_quadrant(app, f, rocks);
    sys_quadrant(app, f, sys);
    event_quadrant(app.data(), f, events);
}

fn net_quadrant(app: &App, f: &mut Frame, area: Rect) {
    let b = block("P2P network".into());
    let Some(n) = app.report().and_then(|r| r.net.as_ref()) else {
        let (t, s) = missing(app, LayerName::Net);
        note(f, area, b, t, s);
        return;
    };
    let inner = b.inner(area);
    f.render_widget(b, area);
    let t = &n.stats.totals;
    let [summary, table] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(inner);
    let lines = vec![
        Line::from(vec![
            Span::styled("Peers ", DIM),
            Span::raw(thousands(t.peers)),
            Span::styled("  open ", DIM),
            Span::raw(thousands(t.open_connections)),
            Span::styled("  events/60s ", DIM),
            Span::raw(thousands(n.events_60s)),
        ]),
        Line::from(vec![
            Span::styled("Send ", DIM),
            Span::raw(vnet::rate(t.send_bytes_per_sec)),
            Span::styled("  Recv ", DIM),
            Span::raw(vnet::rate(t.recv_bytes_per_sec)),
        ]),
        Line::from(vec![
            Span::styled("Conn ", DIM),
            Span::raw(thousands(t.connects)),
            Span::styled(" acc ", DIM),
            Span::raw(thousands(t.accepts)),
            Span::styled(" close ", DIM),
            Span::raw(thousands(t.closes)),
            Span::styled(" retx ", DIM),
            Span::raw(thousands(t.retransmits)),
        ]),
    ];
    f.render_widget(Paragraph::new(lines), summary);
    if n.stats.peers.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled("(no TCP peers seen yet)", DIM)),
            table,
        );
        return;
    }
    let mut g = Grid::new(&["Peer", "Recv/s", "Send/s"], &[1, 2], 0);
    for p in n.stats.peers.iter().take(table.height as usize) {
        g.rows.push(vec![
            vnet::remote(p),
            vnet::rate(p.recv_bytes_per_sec),
            vnet::rate(p.send_bytes_per_sec),
        ]);
    }
    f.render_widget(g.table(), table);
}

fn rocks_status(r: &model::RocksSection) -> Line<'static> {
    if let Some(a) = r.anomalies.first() {
        let ops: Vec<String> = r
            .anomalies
            .iter()
            .map(|a| format!("{} ×{:.1}", a.operation, a.multiplier))
            .collect();
        return Line::from(vec![
            Span::styled(format!("ANOMALY since {}: ", hhmmss(&a.time)), BAD),
            Span::raw(ops.join(", ")),
        ]);
    }
    if r.warmup_left_secs > 0.0 {
        Line::from(Span::styled(
            format!(
                "Learning baseline: alerts in {}",
                countdown(r.warmup_left_secs)
            ),
            WARN,
        ))
    } else {
        Line::from(Span::styled("Normal: latencies within baseline", GOOD))
    }
}

fn op_or_default(r: &model::RocksSection, op: Op) -> OpReport {
    r.stats.op(op).cloned().unwrap_or_default()
}

fn rocks_quadrant(app: &App, f: &mut Frame, area: Rect) {
    let b = block("RocksDB".into());
    let Some(r) = app.report().and_then(|r| r.rocksdb.as_ref()) else {
        let (t, s) = missing(app, LayerName::Rocksdb);
        note(f, area, b, t, s);
        return;
    };
    let inner = b.inner(area);
    f.render_widget(b, area);
    let [table, status] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let mut g = Grid::new(
        &["Op", "QPS", "P99(μs)", "QPS trend", "P99 trend"],
        &[1, 2],
        4,
    );
    let ops = app.ops();
    for op in &ops {
        let o = op_or_default(r, *op);
        g.rows.push(vec![
            op.name().to_string(),
            thousands(o.qps.round() as u64),
            us(o.p99_us),
            String::new(),
            String::new(),
        ]);
    }
    sparks(&mut g, app, &ops, table.width);
    f.render_widget(g.table(), table);
    f.render_widget(Paragraph::new(rocks_status(r)), status);
}

/// Fills a grid's last column with each operation's QPS history, as wide as it gets.
/// Fills a grid's last two columns ("QPS trend", "P99 trend") with each operation's history,
/// sharing what is left of the width; too narrow for both, only QPS.
fn sparks(g: &mut Grid, app: &App, ops: &[Op], inner: u16) {
    let (qcol, pcol) = (g.fill - 1, g.fill);
    // Both columns together, with the space between them (the QPS one is as wide as its
    // header so far: its cells are still empty).
    let head = g.width(qcol) as usize;
    let both = g.fill_width(inner) + head + 1;
    let (qw, pw) = if both > 2 * head {
        (both / 2, both - both / 2 - 1)
    } else {
        g.hidden.push(pcol);
        g.fill = qcol;
        (both, 0)
    };
    let hist = &app.data().history;
    for (row, op) in g.rows.iter_mut().zip(ops) {
        if let Some(s) = hist.series(op.name()) {
            row[qcol] = spark(s.qps.iter().copied(), qw);
            row[pcol] = spark(s.p99_us.iter().map(|v| v.unwrap_or(0.0)), pw);
        }
    }
    g.styles.push((qcol, GOOD));
    g.styles.push((pcol, WARN));
}

fn sys_quadrant(app: &App, f: &mut Frame, area: Rect) {
    let b = block("Syscalls: top 5 by time".into());
    let Some(s) = app.report().and_then(|r| r.syscall.as_ref()) else {
        let (t, st) = missing(app, LayerName::Syscall);
        note(f, area, b, t, st);
        return;
    };
    let inner = b.inner(area);
    f.render_widget(b, area);
    let [table, status] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    if s.stats.syscalls.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled("(no system calls in this interval)", DIM)),
            table,
        );
    } else {
        let mut g = Grid::new(&["Syscall", "Calls/s", "Avg(μs)", "Time%"], &[1, 2, 3], 0);
        for r in s.stats.syscalls.iter().take(5) {
            g.rows.push(vec![
                r.name.clone(),
                vsys::rate(r.calls_per_sec),
                us(r.avg_us),
                vsys::pct(r.time_share),
            ]);
        }
        f.render_widget(g.table(), table);
    }
    let d = &s.stats.derived;
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("futex wait ", DIM),
            Span::raw(
                d.futex_wait_ratio
                    .map_or("—".into(), |x| format!("{}%", vsys::pct(x))),
            ),
            Span::styled("  epoll ", DIM),
            Span::raw(format!("{}/s", vsys::rate(d.epoll_wakes_per_sec))),
        ])),
        status,
    );
}

/// `text` in rows of at most `first` characters, then `rest`: whole words where they fit,
/// a word longer than a row split.
pub(super) fn word_wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut rows: Vec<String> = vec![String::new()];
    let room = |rows: &Vec<String>| if rows.len() == 1 { first } else { rest };
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let row = rows.last().map_or(0, |r| r.chars().count());
            let space = usize::from(row > 0);
            if row + space + word.len() <= room(&rows) {
                let r = rows.last_mut().expect("a row");
                if space == 1 {
                    r.push(' ');
                }
                r.extend(word.iter());
                break;
            }
            if row > 0 {
                rows.push(String::new());
                continue;
            }
            // A word longer than a whole row.
            let cut = room(&rows).min(word.len());
            rows.last_mut().expect("a row").extend(word.drain(..cut));
            rows.push(String::new());
            if word.is_empty() {
                break;
            }
        }
    }
    if rows.len() > 1 && rows.last().is_some_and(String::is_empty) {
        rows.pop();
    }
    rows
}

/// The newest log entries that fit `height` rows of `width` columns, oldest first. Alerts
/// and warnings wrap (their text is the point); notes and connection events take one row.
fn event_lines(d: &Data, height: usize, width: usize) -> Vec<Line<'static>> {
    let mut blocks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut used = 0;
    for e in d.log.entries.iter().rev() {
        if used >= height {
            break;
        }
        let style = match e.level {
            Level::Info => DIM,
            Level::Net => Style::default(),
            Level::Alert => BAD,
            Level::Clear => GOOD,
            Level::Warn => WARN,
        };
        let lead = format!("{} {:<5} ", e.time, e.level.tag());
        let wrap = matches!(e.level, Level::Alert | Level::Warn);
        let first_w = width.saturating_sub(lead.chars().count()).max(1);
        // Continuation rows are indented by two.
        let rows = if wrap {
            word_wrap(&e.text, first_w, width.saturating_sub(2).max(1))
        } else {
            vec![e.text.clone()]
        };
        let mut lines = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            lines.push(if i == 0 {
                Line::from(vec![
                    Span::styled(lead.clone(), DIM),
                    Span::styled(row, style),
                ])
            } else {
                Line::from(Span::styled(format!("  {row}"), style))
            });
        }
        // The newest entry is shown even when it alone is taller than the pane.
        if used + lines.len() > height && !blocks.is_empty() {
            break;
        }
        used += lines.len();
        blocks.push(lines);
    }
    let mut out: Vec<Line<'static>> = blocks.into_iter().rev().flatten().collect();
    out.truncate(height);
    out
}

fn event_quadrant(d: &Data, f: &mut Frame, area: Rect) {
    let b = block("Events".into());
    let inner = b.inner(area);
    f.render_widget(b, area);
    if d.log.entries.is_empty() {
        f.render_widget(Paragraph::new(Span::styled("(none yet)", DIM)), inner);
        return;
    }
    f.render_widget(
        Paragraph::new(event_lines(d, inner.height as usize, inner.width as usize)),
        inner,
    );
}

// ---------------------------------------------------------------- RocksDB tab

fn rocksdb_tab(app: &App, f: &mut Frame, area: Rect) {
    let Some(r) = app.report().and_then(|r| r.rocksdb.as_ref()) else {
        let (t, s) = missing(app, LayerName::Rocksdb);
        note(f, area, block("RocksDB".into()), t, s);
        return;
    };
    let ops = app.ops();
    let ops_h = ops.len() as u16 + 3;
    let [table, mid, bottom] = Layout::vertical([
        Constraint::Length(ops_h),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    op_table(app, r, &ops, f, table);
    let op = app.selected_op();
    let [hist, trend] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(mid);
    histogram(f, hist, op.name(), r.histograms.get(op.name()));
    op_history(app, op, f, trend);
    let [slow, cf] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(bottom);
    slow_log(r, f, slow);
    cf_table(r, op, f, cf);
}

fn op_table(app: &App, r: &model::RocksSection, ops: &[Op], f: &mut Frame, area: Rect) {
    let b = block("Operations (↑↓ selects)".into()).title_bottom(rocks_status(r));
    let mut g = Grid::new(
        &[
            "Op",
            "QPS",
            "Avg(μs)",
            "P50(μs)",
            "P99(μs)",
            "Bytes/s",
            "Errors",
            "QPS trend",
            "P99 trend",
        ],
        &[1, 2, 3, 4, 5, 6],
        8,
    );
    g.marked = true;
    for &op in ops {
        let o = op_or_default(r, op);
        g.rows.push(vec![
            op.name().to_string(),
            thousands(o.qps.round() as u64),
            us(o.avg_us),
            us(o.p50_us),
            us(o.p99_us),
            if op.has_bytes() {
                vrocks::rate(o.bytes_per_sec)
            } else {
                "—".into()
            },
            o.errors.map_or("—".into(), thousands),
            String::new(),
            String::new(),
        ]);
    }
    sparks(&mut g, app, ops, b.inner(area).width);
    let sel = app.op_sel.min(ops.len().saturating_sub(1));
    f.render_stateful_widget(
        g.table().block(b),
        area,
        &mut TableState::default().with_selected(Some(sel)),
    );
}

fn op_history(app: &App, op: Op, f: &mut Frame, area: Rect) {
    let d = app.data();
    let span = Duration::from_secs_f64(d.history.span_secs().max(0.0));
    let b = block(format!("{} history (last {})", op.name(), hms(span)));
    let Some(s) = d.history.series(op.name()) else {
        note(f, area, b, "no history yet".into(), DIM);
        return;
    };
    let inner = b.inner(area);
    f.render_widget(b, area);
    let [ql, qs, pl, ps] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let w = inner.width as usize;
    let qmax = s.qps.iter().copied().fold(0.0, f64::max);
    let pmax = s.p99_us.iter().flatten().copied().fold(0.0, f64::max);
    let last_q = s.qps.back().copied().unwrap_or(0.0);
    let last_p = s.p99_us.back().copied().flatten();
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("QPS ", HEAD),
            Span::raw(thousands(last_q.round() as u64)),
            Span::styled(format!("  max {}", thousands(qmax.round() as u64)), DIM),
        ])),
        ql,
    );
    let tail = |n: usize| n.saturating_sub(w);
    let qdata: Vec<u64> = s
        .qps
        .iter()
        .skip(tail(s.qps.len()))
        .map(|v| (v * 10.0).round() as u64)
        .collect();
    // Newest at the right edge, like the trend columns: the data goes newest first and is
    // drawn from the right.
    let qdata: Vec<u64> = qdata.into_iter().rev().collect();
    f.render_widget(
        Sparkline::default()
            .data(&qdata)
            .direction(RenderDirection::RightToLeft)
            .style(GOOD),
        qs,
    );
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("P99 ", HEAD),
            Span::raw(format!("{}μs", us(last_p))),
            Span::styled(format!("  max {}μs", us(Some(pmax))), DIM),
        ])),
        pl,
    );
    let pdata: Vec<Option<u64>> = s
        .p99_us
        .iter()
        .skip(tail(s.p99_us.len()))
        .map(|v| v.map(|v| (v * 10.0).round() as u64))
        .rev()
        .collect();
    f.render_widget(
        Sparkline::default()
            .data(pdata)
            .direction(RenderDirection::RightToLeft)
            .style(WARN)
            .absent_value_symbol(" "),
        ps,
    );
}

fn slow_log(r: &model::RocksSection, f: &mut Frame, area: Rect) {
    let Some(slow) = &r.slow else {
        note(
            f,
            area,
            block("Slow operations".into()),
            if r.stats.entry_only {
                "lightweight mode: no slow-operation log".into()
            } else {
                "slow-operation log off".into()
            },
            DIM,
        );
        return;
    };
    let b = block(format!(
        "Slow ops ≥{}μs: {} in 60s",
        thousands(slow.threshold_us),
        thousands(slow.last_60s)
    ));
    if slow.recent.is_empty() {
        note(f, area, b, "none in the last 60 s".into(), DIM);
        return;
    }
    let mut g = Grid::new(&["Time", "Op", "Latency", "Size", "Note"], &[2, 3], 4);
    // Newest first: the pane is short, the latest matter most.
    for o in slow.recent.iter().rev().take(area.height as usize) {
        g.rows.push(vec![
            clock_ms(UNIX_EPOCH + Duration::from_millis(o.time_ms)),
            o.op().name().to_string(),
            latency(o.latency_us()),
            o.size().map_or("—".into(), |b| bytes(b as f64)),
            o.note(),
        ]);
    }
    g.fit(area.width - 2, 12, &[3]);
    f.render_widget(g.table().block(b), area);
}

fn cf_table(r: &model::RocksSection, op: Op, f: &mut Frame, area: Rect) {
    let b = block(format!("{} by column family", op.name()));
    let mut g = Grid::new(
        &["CF", "Column", "QPS", "Avg(μs)", "Bytes/s"],
        &[2, 3, 4],
        1,
    );
    for cf in &r.stats.column_families {
        let Some(o) = cf.operations.get(op.name()) else {
            continue;
        };
        g.rows.push(vec![
            cf.name.clone(),
            cf.column.unwrap_or("").to_string(),
            thousands(o.qps.round() as u64),
            us(o.avg_us),
            if o.bytes.is_some() {
                vrocks::rate(o.bytes_per_sec)
            } else {
                "—".into()
            },
        ]);
    }
    if g.rows.is_empty() {
        note(
            f,
            area,
            b,
            format!(
                "no {} calls with a column family in this interval",
                op.name()
            ),
            DIM,
        );
        return;
    }
    g.fit(area.width - 2, 12, &[4]);
    f.render_widget(g.table().block(b), area);
}

// ---------------------------------------------------------------- Network tab

fn network_tab(app: &App, f: &mut Frame, area: Rect) {
    let Some(n) = app.report().and_then(|r| r.net.as_ref()) else {
        let (t, s) = missing(app, LayerName::Net);
        note(f, area, block("Network".into()), t, s);
        return;
    };
    let [peers, events] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    peer_table(app, n, f, peers);
    let b = block(format!(
        "Connection events: {} in the last 60s",
        thousands(n.events_60s)
    ))
    .title_bottom(net_status(n));
    event_table(&n.recent_events, f, events, b);
}

fn net_status(n: &model::NetSection) -> Line<'static> {
    if let Some(a) = n.alerts.first() {
        return Line::from(Span::styled(
            format!(" {} since {} ", a.message, hhmmss(&a.since)),
            BAD,
        ));
    }
    if n.warmup_left_secs > 0.0 {
        Line::from(Span::styled(
            format!(" churn alerts in {} ", countdown(n.warmup_left_secs)),
            WARN,
        ))
    } else {
        Line::from(Span::styled(" no disconnection storm ", GOOD))
    }
}

fn peer_table(app: &App, n: &model::NetSection, f: &mut Frame, area: Rect) {
    let t = &n.stats.totals;
    let arrow = if app.peer_desc { "▼" } else { "▲" };
    let b = block(format!(
        "Peers {} (open {}) · sent {} recv {} · sort {} {arrow}",
        thousands(t.peers),
        thousands(t.open_connections),
        vnet::rate(t.send_bytes_per_sec),
        vnet::rate(t.recv_bytes_per_sec),
        app.peer_sort.label(),
    ));
    let peers = app.peers();
    if peers.is_empty() {
        note(
            f,
            area,
            b,
            format!(
                "no TCP peers seen yet (path: {}, RPC {})",
                n.path,
                if n.rpc { "answering" } else { "not reachable" }
            ),
            DIM,
        );
        return;
    }
    let sel = app.peer_sel.min(peers.len() - 1);
    let wide = area.width >= 130;
    let p = peers[sel];
    let b = b.title_bottom(Line::from(Span::styled(
        format!(
            " {} · node {} · version {} · connects {} accepts {} closes {} ",
            vnet::remote(p),
            p.node_id.as_deref().unwrap_or("—"),
            p.version
                .as_deref()
                .filter(|v| !v.is_empty())
                .unwrap_or("—"),
            p.connects,
            p.accepts,
            p.closes
        ),
        DIM,
    )));
    let mut head = vec!["Peer", "Dir"];
    if wide {
        head.extend(["Node ID", "Version"]);
    }
    head.extend(["Recv/s", "Send/s", "Recv", "Sent", "Retx", "Age"]);
    if wide {
        head.push("State");
    }
    let first_num = if wide { 4 } else { 2 };
    let numeric: Vec<usize> = (first_num..first_num + 6).collect();
    let mut g = Grid::new(&head, &numeric, 0);
    g.marked = true;
    // Mark the sort column in the header.
    for h in &mut g.head {
        if h == app.peer_sort.label() {
            h.push_str(arrow);
        }
    }
    for p in &peers {
        let mut cells = vec![vnet::remote(p), p.direction.to_string()];
        if wide {
            cells.push(vnet::short_id(&p.node_id));
            cells.push(
                p.version
                    .clone()
                    .filter(|v| !v.is_empty())
                    .unwrap_or("—".into()),
            );
        }
        cells.extend([
            vnet::rate(p.recv_bytes_per_sec),
            vnet::rate(p.send_bytes_per_sec),
            bytes(p.bytes_received as f64),
            bytes(p.bytes_sent as f64),
            thousands(p.retransmits),
            format!(
                "{}{}",
                vnet::age(p.age_secs),
                if p.age_from_attach { "+" } else { "" }
            ),
        ]);
        if wide {
            cells.push(p.state.clone());
        }
        g.rows.push(cells);
    }
    f.render_stateful_widget(
        g.table().block(b),
        area,
        &mut TableState::default().with_selected(Some(sel)),
    );
}

fn event_table(events: &[EventRecord], f: &mut Frame, area: Rect, b: Block<'static>) {
    if events.is_empty() {
        note(
            f,
            area,
            b,
            "no connection events in the last 60 s".into(),
            DIM,
        );
        return;
    }
    let mut g = Grid::new(&["Time", "Event", "Peer", "Dir", "Detail"], &[], 4);
    // Newest first.
    for e in events.iter().rev().take(area.height as usize) {
        let detail = match e.kind {
            "close" => match (e.age_secs, e.bytes_sent, e.bytes_received) {
                (Some(a), Some(s), Some(r)) => format!(
                    "after {}, sent {}, recv {}",
                    vnet::age(Some(a)),
                    bytes(s as f64),
                    bytes(r as f64)
                ),
                _ => format!("never established (from {})", e.old_state),
            },
            "adopt" => format!("already open ({})", e.new_state),
            _ => String::new(),
        };
        let ep = if e.remote.contains(':') {
            format!("[{}]:{}", e.remote, e.port)
        } else {
            format!("{}:{}", e.remote, e.port)
        };
        g.rows.push(vec![
            e.time.get(11..23).unwrap_or(&e.time).to_string(),
            e.kind.to_string(),
            ep,
            e.direction.to_string(),
            detail,
        ]);
    }
    f.render_widget(g.table().block(b), area);
}

// ---------------------------------------------------------------- Syscall tab

fn syscall_tab(app: &App, f: &mut Frame, area: Rect) {
    let Some(s) = app.report().and_then(|r| r.syscall.as_ref()) else {
        let (t, st) = missing(app, LayerName::Syscall);
        note(f, area, block("Syscall".into()), t, st);
        return;
    };
    let [ranking, derived, bottom] = Layout::vertical([
        Constraint::Percentage(55),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    let iv = &s.stats;
    let threads: usize = iv.threads.values().sum();
    let b = block(format!(
        "System calls by time ({} threads, {} interval)",
        threads,
        interval_label((iv.secs * 10.0).round() / 10.0)
    ));
    let sel = app.selected_syscall();
    if iv.syscalls.is_empty() {
        note(
            f,
            ranking,
            b,
            "no system calls in this interval".into(),
            DIM,
        );
    } else {
        let wide = ranking.width >= 100;
        let mut head = vec![
            "Syscall", "Calls/s", "Errors", "Avg(μs)", "P99(μs)", "Time%",
        ];
        if wide {
            head.extend(["Bytes/call", "Max(μs)"]);
        }
        let numeric: Vec<usize> = (1..head.len()).collect();
        let mut g = Grid::new(&head, &numeric, 0);
        g.marked = true;
        for r in &iv.syscalls {
            let mut cells = vec![
                r.name.clone(),
                vsys::rate(r.calls_per_sec),
                thousands(r.errors),
                us(r.avg_us),
                us(r.p99_us),
                vsys::pct(r.time_share),
            ];
            if wide {
                cells.push(vsys::per_call(r));
                cells.push(us(r.max_us));
            }
            g.rows.push(cells);
        }
        f.render_stateful_widget(
            g.table().block(b),
            ranking,
            &mut TableState::default().with_selected(sel.map(|s| s.0)),
        );
    }
    let d = &iv.derived;
    let opt_pct = |v: Option<f64>| v.map_or("—".into(), |x| format!("{}%", vsys::pct(x)));
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" futex ", DIM),
            Span::raw(format!(
                "{}/s, {} wait",
                vsys::rate(d.futex_calls as f64 / iv.secs.max(f64::MIN_POSITIVE)),
                opt_pct(d.futex_wait_ratio)
            )),
            Span::styled("  I/O ", DIM),
            Span::raw(format!(
                "{}/read {}/write",
                d.read_bytes_per_call.map_or("—".into(), bytes),
                d.write_bytes_per_call.map_or("—".into(), bytes)
            )),
            Span::styled("  epoll ", DIM),
            Span::raw(format!("{}/s", vsys::rate(d.epoll_wakes_per_sec))),
            Span::styled("  fsync ", DIM),
            Span::raw(format!(
                "{} avg {}μs",
                thousands(d.fdatasync_calls),
                us(d.fdatasync_avg_us)
            )),
        ])),
        derived,
    );
    let [roles, hist] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let Some((_, call)) = sel else {
        note(f, roles, block("By thread role".into()), String::new(), DIM);
        histogram(f, hist, "—", None);
        return;
    };
    let by_role = iv.by_role_of(&call.name);
    let b = block(format!("{} by thread role", call.name));
    if by_role.is_empty() {
        note(f, roles, b, "no per-role entries".into(), DIM);
    } else {
        // Per-role percentiles exist for file I/O calls only; elsewhere they read "—".
        let mut g = Grid::new(
            &["Role (threads)", "Calls/s", "Avg(μs)", "P99(μs)", "Time%"],
            &[1, 2, 3, 4],
            0,
        );
        for (role, r) in &by_role {
            g.rows.push(vec![
                format!(
                    "{} ({})",
                    role.name(),
                    iv.threads.get(role.name()).copied().unwrap_or(0)
                ),
                vsys::rate(r.calls_per_sec),
                us(r.avg_us),
                us(r.p99_us),
                vsys::pct(r.time_share),
            ]);
        }
        g.fit(roles.width - 2, 14, &[3]);
        f.render_widget(g.table().block(b), roles);
    }
    histogram(f, hist, &call.name, s.histograms.get(&call.name));
}
