//! The live display on a terminal (indicatif): a bar of the search with its status, and one line
//! per worker below it, redrawn by a thread of its own a few times a second. Finished trials are
//! printed above the bar as the plain log prints them, so they stay when the bar is cleared.
//!
//! Workers only update a [`Board`] under a lock, once per fold and epoch: no terminal work ever
//! happens on a training thread.

use super::{Board, Event, Plan, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two frames: the display redraws at most four times a second.
const FRAME: Duration = Duration::from_millis(250);

/// indicatif's own limit on draws per second, above ours so that it never drops the frame we
/// ask for (which would leave the display a frame behind).
const DRAW_HZ: u8 = 20;

const TEMPLATE: &str = "[{bar:30}] {msg}";

/// What the workers and the drawing thread share.
struct Shared {
    board: Option<Board>,
    start: Instant,
    /// Messages to print above the display ([`Progress::note`]).
    notes: Vec<String>,
}

/// The live terminal display; see the module's documentation.
pub struct Live {
    shared: Arc<Mutex<Shared>>,
    drawer: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            shared: Arc::new(Mutex::new(Shared {
                board: None,
                start: Instant::now(),
                notes: Vec::new(),
            })),
            drawer: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress for Live {
    fn start(&self, plan: &Plan) {
        self.finish();
        {
            let mut sh = lock(&self.shared);
            sh.board = Some(Board::new(plan));
            sh.start = Instant::now();
        }
        let (stop, stopped) = channel::<()>();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("nas-progress".into())
            .spawn(move || {
                let bar = ProgressBar::with_draw_target(
                    Some(0),
                    ProgressDrawTarget::stderr_with_hz(DRAW_HZ),
                )
                .with_style(
                    ProgressStyle::with_template(TEMPLATE)
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("█▉▊▋▌▍▎▏ "),
                );
                draw(&bar, &shared);
                loop {
                    let done = matches!(
                        stopped.recv_timeout(FRAME),
                        Ok(()) | Err(RecvTimeoutError::Disconnected)
                    );
                    draw(&bar, &shared);
                    if done {
                        break;
                    }
                }
                bar.finish_and_clear();
            });
        match spawned {
            Ok(thread) => *lock(&self.drawer) = Some((stop, thread)),
            // No display, but the search runs as well without one.
            Err(_) => lock(&self.shared).board = None,
        }
    }

    fn event(&self, event: Event<'_>) {
        let mut sh = lock(&self.shared);
        let at = sh.start.elapsed();
        if let Some(board) = sh.board.as_mut() {
            board.apply(event, at);
        }
    }

    fn note(&self, line: &str) {
        let mut sh = lock(&self.shared);
        if sh.board.is_some() {
            sh.notes.push(line.to_string());
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if let Some((stop, thread)) = lock(&self.drawer).take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        lock(&self.shared).board = None;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One frame: the bar, its status and the workers' lines, with the new log lines above them.
/// The lock is held only to copy the text out.
fn draw(bar: &ProgressBar, shared: &Mutex<Shared>) {
    let (log, (pos, len), text) = {
        let mut sh = lock(shared);
        let at = sh.start.elapsed();
        let notes = std::mem::take(&mut sh.notes);
        let Some(board) = sh.board.as_mut() else {
            return;
        };
        let mut log = board.take_log();
        log.extend(notes);
        (log, board.bar(at), board.lines(at).join("\n"))
    };
    // The bar first, so that the lines printed above it redraw it as it is now.
    if (bar.position(), bar.length()) != (pos, Some(len)) {
        bar.update(|s| {
            s.set_len(len);
            s.set_pos(pos);
        });
    }
    bar.set_message(text);
    for line in log {
        bar.println(line);
    }
}
