//! A throwaway PostgreSQL server for one test: `initdb` in a temporary directory (as the
//! `postgres` user when the tests run as root), started on a free port, stopped when dropped.
//! Without PostgreSQL's binaries the tests that need one say that they skipped, unless
//! `NAS_REQUIRE_POSTGRES` (or `CI`) is set, which makes that a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run the server's programs as `postgres` (root may not run a PostgreSQL server).
    as_postgres: bool,
    pub port: u16,
}

/// Whether a missing dependency must fail the test instead of skipping it.
pub fn required(vars: &[&str]) -> Option<String> {
    vars.iter()
        .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")))
        .map(|v| v.to_string())
}

/// Says on stderr (the harness hides a passing test's eprintln!) that `test` skipped and why,
/// or panics when CI requires it.
pub fn skip(test: &str, why: &str, vars: &[&str]) {
    if let Some(var) = required(vars) {
        panic!("{var} is set, and {why}");
    }
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
}

/// The directory of PostgreSQL's server programs: the newest under /usr/lib/postgresql, else
/// the one of `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(d) = dirs.pop() {
        return Some(d);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    path.parent()
        .filter(|d| d.join("pg_ctl").exists())
        .map(Path::to_path_buf)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// A running server, or `None` (after saying so) when this machine has no PostgreSQL.
    pub fn start(test: &str) -> Option<Server> {
        let vars = ["NAS_REQUIRE_POSTGRES", "CI"];
        let Some(bin) = bin_dir() else {
            skip(
                test,
                "PostgreSQL's server programs (initdb, pg_ctl) are not installed \
                 (apt-get install postgresql)",
                &vars,
            );
            return None;
        };
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().expect("temp dir");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                skip(
                    test,
                    "running as root, and there is no `postgres` user to run the server",
                    &vars,
                );
                return None;
            }
        }
        let mut server = Server {
            dir,
            bin,
            as_postgres,
            port: 0,
        };
        let data = server.data().display().to_string();
        server.ok(server.program(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "nas",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        ));
        for attempt in 0.. {
            server.port = free_port();
            if server.pg_ctl("start").status.success() {
                break;
            }
            assert!(attempt < 3, "the server does not start: {}", server.log());
        }
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn program(&self, name: &str, args: &[&str]) -> Output {
        let path = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    fn ok(&self, out: Output) -> Output {
        assert!(
            out.status.success(),
            "{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    fn pg_ctl(&self, what: &str) -> Output {
        let data = self.data().display().to_string();
        let socket = self.dir.path().display().to_string();
        let log = self.dir.path().join("log").display().to_string();
        let options = format!(
            "-p {} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.port
        );
        let mut args = vec![what, "-D", &data, "-l", &log, "-o", &options, "-w"];
        if what != "start" {
            args.extend(["-m", "fast"]);
        }
        self.program("pg_ctl", &args)
    }

    /// A new empty database, and its URL (the password is ignored by `trust`).
    pub fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connects to the test server");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creates a database");
        self.url(name)
    }

    /// The URL of database `db`, with a password that must never be shown.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://nas:s3cret@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops and starts the server again on the same port.
    pub fn restart(&self) {
        self.ok(self.pg_ctl("restart"));
    }

    /// `pg_dump --schema-only` of database `db`.
    pub fn schema(&self, db: &str) -> String {
        let port = self.port.to_string();
        let out = self.ok(self.program(
            "pg_dump",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "nas",
                "--schema-only",
                db,
            ],
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self.program("pg_ctl", &["stop", "-D", &data, "-m", "immediate", "-w"]);
    }
}

/// Whether `python3` imports every one of `modules`.
pub fn python_has(modules: &[&str]) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success())
}
