//! One connection to the database that survives a restart of the server: a transaction whose
//! connection drops is run again on a new connection, a bounded number of times.

use super::super::url::PostgresUrl;
use super::super::StudyError;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

/// Waits between attempts when a connection is lost during a search: about half a minute in all,
/// time for a database to restart or fail over.
const RECONNECT: [f64; 10] = [0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0];
/// Waits between attempts at the first connection: a database that is not there is reported soon.
const FIRST_CONNECT: [f64; 2] = [0.25, 0.75];
/// How long one attempt to connect may take, unless the URL says (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Db {
    url: PostgresUrl,
    client: Option<Client>,
    /// Waits between attempts; its length bounds the retries.
    waits: &'static [f64],
}

impl Db {
    /// Connects, trying a few times before it says the database cannot be reached.
    pub fn connect(url: &PostgresUrl) -> Result<Db, StudyError> {
        let mut db = Db::lazy(url, &RECONNECT);
        let mut last = None;
        for (i, wait) in std::iter::once(0.0).chain(FIRST_CONNECT).enumerate() {
            std::thread::sleep(Duration::from_secs_f64(wait));
            match db.open() {
                Ok(c) => {
                    db.client = Some(c);
                    return Ok(db);
                }
                Err(e) => last = Some((i + 1, e)),
            }
        }
        let (attempts, e) = last.expect("at least one attempt");
        Err(unreachable(url, &e, attempts))
    }

    /// A connection made on first use, whose transactions are retried `waits.len()` times.
    pub fn lazy(url: &PostgresUrl, waits: &'static [f64]) -> Db {
        Db {
            url: url.clone(),
            client: None,
            waits,
        }
    }

    pub fn url(&self) -> &PostgresUrl {
        &self.url
    }

    fn open(&self) -> Result<Client, postgres::Error> {
        let mut config = self.url.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("nas");
        // libpq's convention, so that a password can stay out of the URL (and out of `ps`).
        if config.get_password().is_none() {
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
        }
        config.connect(NoTls)
    }

    /// Runs `f` (a whole transaction, so that it can run again) on the connection. A lost
    /// connection is made again and `f` rerun; so is a deadlock or serialisation failure.
    pub fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StudyError> {
        let started = Instant::now();
        let mut warned = false;
        let mut attempt = 0;
        loop {
            let result = match self.client.as_mut() {
                Some(c) => f(c),
                None => self.open().and_then(|mut c| {
                    let r = f(&mut c);
                    self.client = Some(c);
                    r
                }),
            };
            let e = match result {
                Ok(v) => {
                    if warned {
                        eprintln!("nas: reconnected to {}", self.url);
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            let kind = classify(&e);
            if kind == Failure::Other {
                return Err(StudyError::Database {
                    url: self.url.to_string(),
                    message: e.to_string(),
                });
            }
            if kind == Failure::Connection {
                self.client = None;
            }
            let Some(wait) = self.waits.get(attempt) else {
                return Err(unreachable(&self.url, &e, attempt + 1).with_duration(started));
            };
            if kind == Failure::Connection && !warned {
                eprintln!(
                    "nas: warning: {}: lost the connection ({}); reconnecting",
                    self.url,
                    one_line(&e)
                );
                warned = true;
            }
            std::thread::sleep(Duration::from_secs_f64(*wait));
            attempt += 1;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The connection is gone (or never came): make another.
    Connection,
    /// The transaction lost a race with another (deadlock, serialisation): run it again.
    Transient,
    /// The statement is wrong for this database: running it again would not help.
    Other,
}

fn classify(e: &postgres::Error) -> Failure {
    if let Some(code) = e.code() {
        let c = code.code();
        return if c.starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            Failure::Connection
        } else if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
        {
            Failure::Transient
        } else {
            Failure::Other
        };
    }
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io || e.to_string().contains("connect") {
        Failure::Connection
    } else {
        Failure::Other
    }
}

fn unreachable(url: &PostgresUrl, e: &postgres::Error, attempts: usize) -> StudyError {
    StudyError::Unreachable {
        url: url.to_string(),
        message: format!(
            "{} ({attempts} attempt{})",
            one_line(e),
            if attempts == 1 { "" } else { "s" }
        ),
    }
}

/// The error and its causes on one line (the driver's own text hides the cause).
fn one_line(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

impl StudyError {
    /// Adds how long the attempts took to an [`StudyError::Unreachable`].
    fn with_duration(self, started: Instant) -> StudyError {
        match self {
            StudyError::Unreachable { url, message } => StudyError::Unreachable {
                url,
                message: format!("{message} over {:.0}s", started.elapsed().as_secs_f64()),
            },
            other => other,
        }
    }
}
