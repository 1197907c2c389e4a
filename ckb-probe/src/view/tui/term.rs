//! The terminal side of `ckb-probe overview`: taking the screen (raw mode, alternate screen)
//! and giving it back on every way out (quit, an error, a panic, SIGTERM/SIGINT/SIGHUP, the
//! target's exit), and the loop that runs the session (poll, tick) and the keyboard at the
//! same time without blocking either.
//!
//! While the screen is taken, ckb-probe's own diagnostics (stderr) would scribble over it, so
//! stderr is redirected into a pipe whose lines go to the event log; it is put back before the
//! screen is released and before a panic message is printed.

use std::{
    fs::File,
    io::{self, Read},
    os::fd::FromRawFd,
    sync::{
        Arc, Once,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use crossterm::{
    cursor, event,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{Terminal, backend::CrosstermBackend};

use super::{App, Control, Msg, draw};
use crate::{
    model::{End, Lifecycle, LifecycleKind},
    session::{self, Limits, Session},
};

/// Poll cadence, as in [`session::drive`]: come back sooner while events flow so the ring
/// buffers never fill up; else a tenth of a second, which also bounds the key latency.
const IDLE: Duration = Duration::from_millis(100);
const BUSY: Duration = Duration::from_millis(10);
/// Once the run is over only keys and signals matter.
const ENDED: Duration = Duration::from_millis(250);

/// Whether this process currently holds the screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real stderr while it is redirected (-1: not redirected).
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Gives the screen back: normal mode, main screen, visible cursor, the real stderr.
/// Idempotent, and safe from the panic hook.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = crossterm::execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
    let fd = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: plain fd syscalls on descriptors this process owns.
        unsafe {
            libc::dup2(fd, 2);
            libc::close(fd);
        }
    }
}

/// Restores the terminal before the default hook prints the panic, so the message lands on
/// a usable screen. Unwinding then drops the session, which detaches the probes.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
    });
}

/// Restores the terminal when the loop ends, however it ends.
struct Screen;

impl Screen {
    fn take() -> Result<Screen> {
        terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Screen;
        crossterm::execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .context("switching to the alternate screen")?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// stderr redirected into a non-blocking pipe, read line by line.
struct Capture {
    pipe: File,
    partial: Vec<u8>,
}

impl Capture {
    fn start() -> io::Result<Capture> {
        let mut fds = [0i32; 2];
        // SAFETY: plain fd syscalls; every descriptor is checked and owned from here on.
        unsafe {
            let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
            if saved < 0 {
                return Err(io::Error::last_os_error());
            }
            // Non-blocking on both ends: a flood of diagnostics between two reads loses
            // lines instead of blocking the thread that would read them.
            if libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) < 0 {
                let e = io::Error::last_os_error();
                libc::close(saved);
                return Err(e);
            }
            if libc::dup2(fds[1], 2) < 0 {
                let e = io::Error::last_os_error();
                libc::close(fds[0]);
                libc::close(fds[1]);
                libc::close(saved);
                return Err(e);
            }
            libc::close(fds[1]);
            SAVED_STDERR.store(saved, Ordering::SeqCst);
            Ok(Capture {
                pipe: File::from_raw_fd(fds[0]),
                partial: Vec::new(),
            })
        }
    }

    /// Complete lines written since the last call.
    fn lines(&mut self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        let mut out = Vec::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if !text.is_empty() {
                out.push(text);
            }
        }
        out
    }
}

/// How the screen was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// q, Esc or Ctrl-C.
    Quit,
    /// SIGTERM, SIGINT or SIGHUP.
    Signal,
    /// The run ended (the target's exit, --duration, --count) and the user then quit.
    Ended(End),
}

type Term = Terminal<CrosstermBackend<io::Stdout>>;

/// Reads every pending input event into the app.
fn input(app: &mut App) -> Result<Control> {
    loop {
        let msg = match event::read().context("reading the keyboard")? {
            event::Event::Key(k) => Some(Msg::Key(k)),
            event::Event::Resize(..) => Some(Msg::Resize),
            _ => None,
        };
        if let Some(m) = msg
            && app.update(m) == Control::Quit
        {
            return Ok(Control::Quit);
        }
        if !event::poll(Duration::ZERO).context("reading the keyboard")? {
            return Ok(Control::Continue);
        }
    }
}

fn draw(terminal: &mut Term, app: &App) -> Result<()> {
    terminal
        .draw(|f| draw::view(app, f))
        .context("drawing the screen")?;
    Ok(())
}

/// How often a followed run looks for the successor of a target that exited.
const LOOK: Duration = Duration::from_millis(250);

/// Runs `session` on the screen until the user quits or a signal comes. Every report also
/// goes to `sink` (the recording), the summary last. When the run ends by itself (the
/// target's exit, --duration, --count) the probes are detached at once and the screen says
/// so until the user quits. A run that follows its target (`--follow`) keeps the screen when
/// the target exits, waits for its successor, attaches to it and goes on, counters from zero.
/// Returns how the screen was left and the PID traced last.
pub fn run(
    mut session: Session,
    limits: Limits,
    sink: &mut dyn session::Sink,
) -> Result<(Exit, u32)> {
    let stop = session::stop_flag()?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&stop))
        .context("installing signal handler")?;
    let mut app = App::new(session.pid(), session.notes(), session.unavailable());
    install_panic_hook();
    let screen = Screen::take()?;
    let mut capture = match Capture::start() {
        Ok(c) => Some(c),
        Err(e) => {
            app.update(Msg::Log(format!(
                "could not capture stderr ({e}); diagnostics may overwrite the screen"
            )));
            None
        }
    };
    let mut terminal =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("opening the terminal")?;
    terminal.clear().context("clearing the screen")?;

    let interval = session.interval();
    let start = session.start_time();
    let mut next = start + interval;
    let mut reports = 0u64;
    let mut dirty = true;
    // Following: the target exited and the run waits for its successor (the old session is
    // kept for the summary should the run end first).
    let mut waiting = false;
    let mut restarts = 0u64;
    let mut look = Instant::now();
    // Sessions of earlier processes being detached beside the screen.
    let mut detaching = Vec::new();
    let exit = loop {
        if stop.load(Ordering::Relaxed) {
            break Exit::Signal;
        }
        let now = Instant::now();
        if limits.duration.is_some_and(|d| now >= start + d) {
            break Exit::Ended(End::Duration);
        }
        let mut drained = 0;
        if waiting {
            if now >= look {
                look = now + LOOK;
                match session.follow_successor() {
                    None => {}
                    Some(Ok(fresh)) => {
                        let old = std::mem::replace(&mut session, fresh);
                        let old_pid = old.pid();
                        detaching.push(detach(old)?);
                        restarts += 1;
                        let e = lifecycle(
                            LifecycleKind::TargetAttached,
                            &session,
                            Some(old_pid),
                            restarts,
                        );
                        sink.lifecycle(&e)?;
                        app.update(Msg::Lifecycle(e));
                        for n in session.notes() {
                            app.update(Msg::Log(n.clone()));
                        }
                        waiting = false;
                        next = session.start_time() + interval;
                        dirty = true;
                    }
                    Some(Err(e)) => {
                        app.update(Msg::Log(format!("{e:#}; trying again")));
                        look = now + Duration::from_secs(1);
                        dirty = true;
                    }
                }
            }
        } else if !session.target_alive() {
            if !session.follows() {
                break Exit::Ended(End::TargetExited);
            }
            // Everything the process did up to its end is in the recording, then the gap.
            session::last_interval(&mut session, End::TargetExited, sink)?;
            let e = lifecycle(LifecycleKind::TargetExited, &session, None, restarts);
            sink.lifecycle(&e)?;
            app.update(Msg::Lifecycle(e));
            waiting = true;
            look = now;
            dirty = true;
            continue;
        } else {
            drained = session.poll();
            if now >= next {
                let r = session.tick(now)?;
                sink.report(&r)?;
                app.update(Msg::Report(Box::new(r)));
                // A paused screen does not change: no need to draw it again.
                dirty |= !app.paused;
                reports += 1;
                next += interval;
                if next < now {
                    next = now + interval;
                }
                if limits.count.is_some_and(|c| reports >= c) {
                    break Exit::Ended(End::Count);
                }
            }
        }
        for line in capture.as_mut().map(Capture::lines).unwrap_or_default() {
            app.update(Msg::Log(line));
            dirty |= !app.paused;
        }
        if dirty {
            draw(&mut terminal, &app)?;
            dirty = false;
        }
        let wait = if waiting {
            look.saturating_duration_since(Instant::now())
        } else {
            next.saturating_duration_since(Instant::now())
                .min(if drained > 0 { BUSY } else { IDLE })
        };
        if event::poll(wait).context("reading the keyboard")? {
            if input(&mut app)? == Control::Quit {
                break Exit::Quit;
            }
            dirty = true;
        }
    };
    let end = match exit {
        Exit::Ended(e) => e,
        Exit::Quit | Exit::Signal => End::Signal,
    };
    // Final read, as `session::drive` does: everything recorded up to now reaches the
    // recording (not the screen: after the target's exit this sliver would read as all
    // zeros), including a partial interval. A target already gone had its final read.
    if !waiting {
        session::last_interval(&mut session, end, sink)?;
    }
    sink.report(&session.finish(end)?)?;
    let pid = session.pid();
    // Detach every probe now, not when the user gets round to quitting.
    let detach = detach(session)?;
    if let Exit::Ended(end) = exit {
        app.update(Msg::Ended(end));
        let mut dirty = true;
        let mut detached = false;
        loop {
            if !detached && detach.is_finished() {
                detached = true;
                app.update(Msg::Detached);
                dirty = true;
            }
            for line in capture.as_mut().map(Capture::lines).unwrap_or_default() {
                app.update(Msg::Log(line));
                dirty = true;
            }
            if dirty {
                draw(&mut terminal, &app)?;
                dirty = false;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let wait = if detached { ENDED } else { IDLE };
            if event::poll(wait).context("reading the keyboard")? {
                if input(&mut app)? == Control::Quit {
                    break;
                }
                dirty = true;
            }
        }
    }
    // Lines written after the last draw would be lost with the pipe: say them on the real
    // stderr once it is back.
    let late = capture.as_mut().map(Capture::lines).unwrap_or_default();
    drop(terminal);
    drop(screen);
    drop(capture);
    for line in late {
        eprintln!("{line}");
    }
    // The terminal is back; the probes are detached before the command says so.
    if !detach.is_finished() {
        eprintln!("ckb-probe: detaching probes ...");
    }
    for d in detaching.into_iter().chain([detach]) {
        d.join()
            .map_err(|_| anyhow::anyhow!("detaching the probes panicked"))?;
    }
    Ok((exit, pid))
}

/// Detaches `session`'s probes on a thread of its own: closing tracepoint events waits for the
/// kernel (event_mutex, RCU grace periods), which takes seconds on a busy machine, and the
/// screen must stay responsive.
fn detach(session: Session) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("detach".into())
        .spawn(move || drop(session))
        .context("starting the detach thread")
}

/// A followed target's exit, or the attach to its successor.
fn lifecycle(
    kind: LifecycleKind,
    session: &Session,
    previous_pid: Option<u32>,
    restarts: u64,
) -> Lifecycle {
    Lifecycle {
        kind,
        timestamp: crate::view::rfc3339(SystemTime::now()),
        pid: session.pid(),
        previous_pid,
        node: previous_pid.map(|_| session.node().to_string()),
        restarts,
    }
}
