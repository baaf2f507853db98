//! The heartbeat of a worker's running trials: a thread with its own connection stamps them with
//! the database's clock every interval, however long an epoch takes, until the worker lets go.

use super::super::url::PostgresUrl;
use super::conn::Db;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Stamps `trial_heartbeats` of the trials it holds, every `interval`, while it lives.
pub struct Heartbeat {
    running: Arc<Mutex<Vec<i32>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The statement of a beat: the database's clock, in UTC as Optuna keeps its times.
pub const BEAT: &str =
    "UPDATE trial_heartbeats SET heartbeat = (now() AT TIME ZONE 'UTC') WHERE trial_id = ANY($1)";

impl Heartbeat {
    pub fn start(url: &PostgresUrl, interval: Duration) -> Heartbeat {
        let running: Arc<Mutex<Vec<i32>>> = Arc::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let ids = Arc::clone(&running);
        // One attempt per beat: a beat that fails is retried at the next one.
        let mut db = Db::lazy(url, &[]);
        let thread = std::thread::Builder::new()
            .name("nas-heartbeat".into())
            .spawn(move || {
                let mut failing = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let ids: Vec<i32> = ids.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    if ids.is_empty() {
                        continue;
                    }
                    match db.run(|c| c.execute(BEAT, &[&ids])) {
                        Ok(_) if failing => {
                            failing = false;
                            eprintln!("nas: heartbeats to {} go through again", db.url());
                        }
                        Ok(_) => {}
                        Err(e) if !failing => {
                            failing = true;
                            eprintln!("nas: warning: a heartbeat failed: {e}");
                        }
                        Err(_) => {}
                    }
                }
            })
            .ok();
        Heartbeat {
            running,
            stop: Some(stop),
            thread,
        }
    }

    pub fn add(&self, id: i32) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
    }

    pub fn remove(&self, id: i32) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|x| *x != id);
    }

    /// The trials this worker is running.
    pub fn ids(&self) -> Vec<i32> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
