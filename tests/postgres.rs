//! The PostgreSQL storage against a real server that each test starts for itself: Optuna and
//! optuna-dashboard read what `nas` writes, workers in several processes share one study, a
//! killed worker's trial is recovered by another, a restart of the server loses nothing, and an
//! unreachable database is one line and exit code 2.

#[path = "common/pg.rs"]
mod pg;

use nas::search::TrialState;
use nas::study::{
    FoldCurve, Storage, StorageOptions, StorageUrl, StudyError, StudyMeta, TrialRecord, LOST_STALE,
};
use pg::Server;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAS: &str = env!("CARGO_BIN_EXE_nas");

#[path = "common/study_fixture.rs"]
mod fixture;
#[path = "common/mo_fixture.rs"]
mod mo_fixture;

use fixture::{config, meta, run_trial, space, test_result};
fn storage_url(url: &str) -> StorageUrl {
    StorageUrl::parse(Some(url), Path::new("results")).expect("a valid URL")
}

fn open_or_create(url: &str, meta: StudyMeta, heartbeat: Duration) -> Box<dyn Storage> {
    nas::study::open_or_create(&storage_url(url), meta, StorageOptions { heartbeat })
        .expect("opens the study")
}

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connects")
}

/// A small, quick space on iris; `epochs` sets how long a trial trains.
fn tiny_space(dir: &Path, epochs: usize) -> std::path::PathBuf {
    let path = dir.join("tiny.ron");
    std::fs::write(
        &path,
        format!(
            "(task: Classification, data: \"iris\",
              model: Mlp((depth: Range(1, 2), width: Choice([4, 8]), activation: Choice([Relu, Tanh]))),
              train: (learning_rate: LogRange(1e-3, 1e-1), batch_size: Fixed(16),
                      max_epochs: Fixed({epochs}), patience: Fixed({epochs})))"
        ),
    )
    .expect("writes the space");
    path
}

/// A server of the test's own, a database `db` on it, and a folder holding the tiny space of
/// `epochs` epochs that worker processes search; `None` when PostgreSQL is not installed. The
/// server stops when its value is dropped: bind it for the whole test.
fn worker_setup(
    test: &str,
    db: &str,
    epochs: usize,
) -> Option<(Server, String, tempfile::TempDir)> {
    let server = Server::start(test)?;
    let url = server.database(db);
    let dir = tempfile::tempdir().expect("temp dir");
    tiny_space(dir.path(), epochs);
    Some((server, url, dir))
}

/// `nas search` on the tiny space as one worker of study `study` at `url`.
fn worker(dir: &Path, url: &str, study: &str, trials: usize, extra: &[&str]) -> Command {
    let mut cmd = Command::new(NAS);
    cmd.current_dir(dir)
        .args([
            "search",
            "--storage",
            url,
            "--study",
            study,
            "--space",
            "tiny.ron",
        ])
        .args([
            "--trials",
            &trials.to_string(),
            "--workers",
            "1",
            "--folds",
            "2",
        ])
        .args(["--no-final", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().expect("the worker ends");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn signal(pid: u32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "signal {sig}");
}

/// (number, state, fail_reason) of every trial of `study`, by number.
fn states(url: &str, study: &str) -> Vec<(i32, String, Option<String>)> {
    try_states(url, study).expect("reads the trials")
}

/// [`states`], or the error of a database without the schema yet.
fn try_states(
    url: &str,
    study: &str,
) -> Result<Vec<(i32, String, Option<String>)>, postgres::Error> {
    Ok(client(url)
        .query(
            "SELECT t.number, t.state::text, a.value_json FROM trials t \
             JOIN studies s ON s.study_id = t.study_id \
             LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'fail_reason' \
             WHERE s.study_name = $1 ORDER BY t.number",
            &[&study],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Polls the database until a trial of `study` runs with its parameters set, then freezes the
/// worker `pid` with SIGSTOP while that trial still runs; returns the trial's number.
fn freeze_mid_trial(url: &str, study: &str, pid: u32) -> i32 {
    let mut c = client(url);
    let running = |c: &mut postgres::Client| -> Option<i32> {
        c.query_opt(
            "SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id \
             WHERE s.study_name = $1 AND t.state = 'RUNNING' \
             AND EXISTS (SELECT 1 FROM trial_params p WHERE p.trial_id = t.trial_id) \
             ORDER BY t.number DESC LIMIT 1",
            &[&study],
        )
        .ok()
        .flatten()
        .map(|r| r.get(0))
    };
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(60), "no trial ran");
        if running(&mut c).is_some() {
            signal(pid, libc::SIGSTOP);
            // The trial may have ended between the look and the signal: look again.
            if let Some(n) = running(&mut c) {
                return n;
            }
            signal(pid, libc::SIGCONT);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn optuna_loads_a_nas_study_from_postgres_and_an_optuna_process_adds_trials_to_it() {
    let test = "optuna_loads_a_nas_study_from_postgres_and_an_optuna_process_adds_trials_to_it";
    let Some(server) = Server::start(test) else {
        return;
    };
    let url = server.database("optuna_reads");
    let mut s = open_or_create(&url, meta("digits"), Duration::from_secs(30));
    let trials = [
        run_trial(s.as_mut(), 0, TrialState::Complete, &[-0.5, -0.625, -0.75]).expect("trial 0"),
        run_trial(s.as_mut(), 1, TrialState::Pruned, &[-0.25, -0.375]).expect("trial 1"),
        run_trial(s.as_mut(), 2, TrialState::Failed, &[]).expect("trial 2"),
        run_trial(s.as_mut(), 3, TrialState::Interrupted, &[-0.5]).expect("trial 3"),
    ];
    s.set_test_result(test_result()).expect("test result");
    assert_eq!(
        s.trials(),
        &trials[..],
        "what a worker holds is what it wrote"
    );
    let again = nas::study::open(&storage_url(&url), "digits").expect("opens");
    assert_eq!(again.trials(), &trials[..], "and what it reads back");
    assert_eq!(again.meta(), &meta("digits"));
    assert_eq!(again.test_result(), Some(&test_result()));
    // A finished trial is never written again.
    let mut late = trials[0].clone();
    late.cv_mean = Some(0.99);
    assert!(matches!(s.finish_trial(late), Err(StudyError::Conflict(_))));
    assert!(s.report(0, 4, -0.99).is_err());

    if !pg::python_has(&["optuna", "psycopg"]) {
        pg::skip(
            test,
            "python3 cannot import optuna and psycopg (pip install optuna 'psycopg[binary]')",
            &["NAS_REQUIRE_OPTUNA", "CI"],
        );
        return;
    }
    let space = space();
    let expected = serde_json::json!({
        "study": "digits",
        "n_trials": trials.len(),
        "direction": "MAXIMIZE",
        "states": ["COMPLETE", "PRUNED", "FAIL", "FAIL"],
        "params": space.config_json(&trials[0].config),
        "best_value": 0.75,
        "best_number": 0,
        "intermediate": {"1": 0.5, "2": 0.625, "3": 0.75},
        "pruned_value": 0.375,
        "test_score": test_result().test_score,
        "metric_names": ["cv accuracy"],
        "fold_curves": serde_json::to_value(&trials[0].curves).expect("curves"),
        "pruned_at": {"rung": 1, "epochs": 2, "bracket": 0},
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/optuna_journal.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&url)
        .arg(expected.to_string())
        .output()
        .expect("runs python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/optuna_postgres.py");
    let out = Command::new("python3")
        .args([helper, "add", &url, "digits", "2"])
        .output()
        .expect("runs python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.refresh().expect("refresh");
    let numbers: Vec<usize> = s.trials().iter().map(|t| t.number).collect();
    assert_eq!(
        numbers,
        [0, 1, 2, 3, 4, 5],
        "Optuna's trials continue the numbers"
    );
    assert_eq!(s.trials()[5].state, TrialState::Complete);
    // nas goes on after Optuna's trials.
    let n = s.create_trial().expect("creates");
    assert_eq!(n, 6);
}

#[test]
fn optuna_loads_a_multi_objective_study_from_postgres_and_its_best_trials_are_our_first_front() {
    let test = "optuna_loads_a_multi_objective_study_from_postgres";
    let Some(server) = Server::start(test) else {
        return;
    };
    let url = server.database("multi_objective");
    let mut s = open_or_create(&url, mo_fixture::mo_meta("mo"), Duration::from_secs(30));
    let trials = mo_fixture::mo_trials(s.as_mut());
    // Read back as the journal reads it: directions, values, constraints and latency.
    let again = nas::study::open(&storage_url(&url), "mo").expect("opens");
    assert_eq!(again.meta(), &mo_fixture::mo_meta("mo"));
    assert_eq!(again.trials(), &trials[..]);
    let objectives = nas::study::Objectives::of(again.meta());
    let front: Vec<usize> = objectives
        .best_trials(again.trials())
        .iter()
        .map(|t| t.number)
        .collect();
    assert_eq!(front, [0, 1]);
    let mut db = client(&url);
    let directions: Vec<(i32, String)> = db
        .query(
            "SELECT objective, direction::text FROM study_directions ORDER BY objective",
            &[],
        )
        .expect("directions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        directions,
        [
            (0, "MAXIMIZE".into()),
            (1, "MINIMIZE".into()),
            (2, "MINIMIZE".into())
        ]
    );
    let values: Vec<(i32, f64)> = db
        .query(
            "SELECT v.objective, v.value FROM trial_values v JOIN trials t USING (trial_id) \
             WHERE t.number = 0 ORDER BY v.objective",
            &[],
        )
        .expect("values")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(values, [(0, 0.9), (1, 1000.0), (2, 0.02)]);

    if !pg::python_has(&["optuna", "psycopg"]) {
        pg::skip(
            test,
            "python3 cannot import optuna and psycopg (pip install optuna 'psycopg[binary]')",
            &["NAS_REQUIRE_OPTUNA", "CI"],
        );
        return;
    }
    // SQLAlchemy's URL with the driver named, as Optuna users write it.
    let sqlalchemy = url.replacen("postgresql://", "postgresql+psycopg://", 1);
    let stdout = mo_fixture::optuna_checks("python3", &sqlalchemy, &trials);
    assert!(stdout.contains("best_trials [0, 1]"), "{stdout}");
    eprintln!("{}", stdout.trim());
}

#[test]
fn the_schema_nas_creates_is_the_one_optuna_creates() {
    let test = "the_schema_nas_creates_is_the_one_optuna_creates";
    let Some(server) = Server::start(test) else {
        return;
    };
    let url = server.database("made_by_nas");
    drop(open_or_create(&url, meta("s"), Duration::from_secs(30)));
    let mut c = client(&url);
    let version: (i32, String) = c
        .query_one(
            "SELECT schema_version, library_version FROM version_info",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .expect("version_info");
    assert_eq!(version.0, 12);
    let alembic: String = c
        .query_one("SELECT version_num FROM alembic_version", &[])
        .expect("alembic_version")
        .get(0);
    assert_eq!(alembic, "v3.2.0.a");
    let enums: Vec<(String, String)> = c
        .query(
            "SELECT t.typname::text, string_agg(e.enumlabel::text, ',' ORDER BY e.enumsortorder) \
             FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY 1",
            &[],
        )
        .expect("enums")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        enums,
        [
            ("studydirection", "NOT_SET,MINIMIZE,MAXIMIZE"),
            ("trialintermediatevaluetype", "FINITE,INF_POS,INF_NEG,NAN"),
            ("trialstate", "RUNNING,COMPLETE,PRUNED,FAIL,WAITING"),
            ("trialvaluetype", "FINITE,INF_POS,INF_NEG"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    if !pg::python_has(&["optuna", "psycopg"]) {
        pg::skip(
            test,
            "python3 cannot import optuna and psycopg (pip install optuna 'psycopg[binary]')",
            &["NAS_REQUIRE_OPTUNA", "CI"],
        );
        return;
    }
    let optuna_url = server.database("made_by_optuna");
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/optuna_postgres.py");
    let out = Command::new("python3")
        .args([helper, "schema", &optuna_url])
        .output()
        .expect("runs python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The dump without its comments and session settings (and pg_dump's random \restrict key).
    let ddl = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| {
                !(l.is_empty()
                    || l.starts_with("--")
                    || l.starts_with("SET ")
                    || l.starts_with('\\'))
            })
            .filter(|l| !l.starts_with("SELECT pg_catalog.set_config"))
            .map(str::to_string)
            .collect()
    };
    let ours = ddl(server.schema("made_by_nas"));
    let theirs = ddl(server.schema("made_by_optuna"));
    let diff: Vec<String> = theirs
        .iter()
        .filter(|l| !ours.contains(l))
        .map(|l| format!("- {l}"))
        .chain(
            ours.iter()
                .filter(|l| !theirs.contains(l))
                .map(|l| format!("+ {l}")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "nas's schema differs from Optuna's:\n{}",
        diff.join("\n")
    );
    assert_eq!(ours, theirs, "the same statements in the same order");
}

#[test]
fn threads_creating_trials_at_once_get_distinct_contiguous_numbers_and_stop_at_the_limit() {
    let Some(server) = Server::start(
        "threads_creating_trials_at_once_get_distinct_contiguous_numbers_and_stop_at_the_limit",
    ) else {
        return;
    };
    let url = server.database("race");
    const LIMIT: usize = 48;
    let start = Instant::now();
    let mine: Vec<Vec<usize>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    // Each thread its own connection, all creating the schema and the study too.
                    let mut s = open_or_create(&url, meta("race"), Duration::from_secs(30));
                    let mut got = Vec::new();
                    while let Some(n) = s.create_trial_within(Some(LIMIT)).expect("creates") {
                        s.set_params(n, config(n), n as u64).expect("params");
                        let mut r = TrialRecord::new(n, config(n), n as u64);
                        r.state = TrialState::Complete;
                        r.cv_mean = Some(0.5);
                        s.finish_trial(r).expect("finishes");
                        got.push(n);
                    }
                    got
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread"))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all: Vec<usize> = mine.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..LIMIT).collect::<Vec<_>>(),
        "each number once, none skipped"
    );
    let rows = states(&url, "race");
    assert_eq!(rows.len(), LIMIT, "exactly the trials asked for");
    assert!(rows.iter().all(|(_, s, _)| s == "COMPLETE"));
    eprintln!(
        "8 threads: {LIMIT} trials created, given parameters and finished in {:.2}s ({:.0} trials/s)",
        elapsed.as_secs_f64(),
        LIMIT as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn four_worker_processes_share_one_study_with_distinct_numbers_and_exactly_the_trials_asked() {
    let Some((_server, url, dir)) = worker_setup(
        "four_worker_processes_share_one_study_with_distinct_numbers_and_exactly_the_trials_asked",
        "four",
        3,
    ) else {
        return;
    };
    // All four start on an empty database: one creates the schema and the study.
    let workers: Vec<Child> = (0..4)
        .map(|_| {
            worker(dir.path(), &url, "four", 16, &[])
                .spawn()
                .expect("starts a worker")
        })
        .collect();
    for w in workers {
        let (ok, text) = finish(w);
        assert!(ok, "a worker failed:\n{text}");
    }
    let rows = states(&url, "four");
    let numbers: Vec<i32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (0..16).collect::<Vec<_>>());
    let complete = rows.iter().filter(|r| r.1 == "COMPLETE").count();
    assert_eq!(complete, 16, "{rows:?}");
    let studies: i64 = client(&url)
        .query_one("SELECT count(*) FROM studies", &[])
        .expect("count")
        .get(0);
    assert_eq!(studies, 1);
}

#[test]
fn a_worker_killed_mid_trial_has_its_trial_failed_after_the_grace_period_and_run_by_another() {
    let Some((_server, url, dir)) = worker_setup(
        "a_worker_killed_mid_trial_has_its_trial_failed_after_the_grace_period_and_run_by_another",
        "killed",
        20,
    ) else {
        return;
    };
    let a = worker(dir.path(), &url, "killed", 4, &["--heartbeat", "1s"])
        .spawn()
        .expect("starts worker A");
    let lost = freeze_mid_trial(&url, "killed", a.id());
    signal(a.id(), libc::SIGKILL);
    let killed = Instant::now();
    let _ = finish(a);
    let mut s = nas::study::open(&storage_url(&url), "killed").expect("opens");
    let config = s.trials()[lost as usize].config.clone();
    assert!(!config.is_empty());
    // Within the grace period (twice the heartbeat) the trial still counts as running.
    let age: f64 = client(&url)
        .query_one(
            "SELECT extract(epoch FROM (now() AT TIME ZONE 'UTC') - max(heartbeat))::float8 \
             FROM trial_heartbeats",
            &[],
        )
        .expect("heartbeat age")
        .get(0);
    let mut early = open_or_create(&url, meta("killed"), Duration::from_secs(1));
    let recovered = early.recover_stale().expect("looks for stale trials");
    if age < 1.8 {
        assert!(
            recovered.is_empty(),
            "failed {age:.2}s after its last heartbeat"
        );
        assert_eq!(states(&url, "killed")[lost as usize].1, "RUNNING");
    }
    drop(early);

    // Worker B starts once the grace period has passed: it fails the lost trial, runs its
    // configuration again, and the study ends with the trials it asked for.
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(killed.elapsed()));
    let b = worker(dir.path(), &url, "killed", 4, &["--heartbeat", "1s"])
        .spawn()
        .expect("starts worker B");
    let (ok, text) = finish(b);
    assert!(ok, "worker B failed:\n{text}");
    assert!(text.contains("queued again"), "{text}");
    let rows = states(&url, "killed");
    let reason = serde_json::json!(LOST_STALE).to_string();
    assert_eq!(rows[lost as usize].1, "FAIL");
    assert_eq!(rows[lost as usize].2.as_deref(), Some(reason.as_str()));
    s.refresh().expect("refresh");
    let again: Vec<&TrialRecord> = s
        .trials()
        .iter()
        .filter(|t| t.number > lost as usize && t.config == config)
        .collect();
    assert!(
        again.iter().any(|t| t.state == TrialState::Complete),
        "the lost configuration completed: {:?}",
        s.trials()
    );
    let complete = rows.iter().filter(|r| r.1 == "COMPLETE").count();
    assert_eq!(complete, 4, "{rows:?}");
    let failed_after: f64 = client(&url)
        .query_one(
            "SELECT extract(epoch FROM t.datetime_complete - h.heartbeat)::float8 \
             FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id \
             JOIN studies s ON s.study_id = t.study_id \
             WHERE s.study_name = 'killed' AND t.number = $1",
            &[&lost],
        )
        .expect("times")
        .get(0);
    eprintln!(
        "the lost trial {lost} was failed {failed_after:.2}s after its last heartbeat (grace 2s)"
    );
    assert!(
        failed_after >= 2.0,
        "failed before the grace period: {failed_after}"
    );
}

#[test]
fn sigterm_marks_the_workers_running_trial_interrupted_at_once() {
    let Some((_server, url, dir)) = worker_setup(
        "sigterm_marks_the_workers_running_trial_interrupted_at_once",
        "term",
        300,
    ) else {
        return;
    };
    let a = worker(dir.path(), &url, "term", 50, &[])
        .spawn()
        .expect("starts a worker");
    let n = freeze_mid_trial(&url, "term", a.id());
    signal(a.id(), libc::SIGTERM);
    let sent = Instant::now();
    signal(a.id(), libc::SIGCONT);
    let (_, text) = finish(a);
    let took = sent.elapsed();
    let rows = states(&url, "term");
    assert_eq!(rows[n as usize].1, "FAIL", "{rows:?}\n{text}");
    assert_eq!(rows[n as usize].2.as_deref(), Some("\"interrupted\""));
    assert_eq!(
        rows.len(),
        n as usize + 1,
        "no trial started after the signal"
    );
    eprintln!(
        "SIGTERM: trial {n} recorded as interrupted and the worker gone {:.2}s after the signal",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn postgres_restarted_in_the_middle_of_a_search_loses_no_finished_trial() {
    let Some((server, url, dir)) = worker_setup(
        "postgres_restarted_in_the_middle_of_a_search_loses_no_finished_trial",
        "restart",
        40,
    ) else {
        return;
    };
    let a = worker(dir.path(), &url, "restart", 12, &[])
        .spawn()
        .expect("starts a worker");
    let start = Instant::now();
    let before = loop {
        let rows = try_states(&url, "restart").unwrap_or_default();
        let done: Vec<_> = rows.into_iter().filter(|r| r.1 == "COMPLETE").collect();
        if done.len() >= 3 {
            break done;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no trials finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    server.restart();
    let (ok, text) = finish(a);
    assert!(ok, "the worker did not survive the restart:\n{text}");
    assert!(
        text.contains("reconnecting"),
        "the restart came after the search:\n{text}"
    );
    eprintln!("{}", text.trim());
    let rows = states(&url, "restart");
    for r in &before {
        assert!(rows.contains(r), "trial {} was lost: {rows:?}", r.0);
    }
    let numbers: Vec<i32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (0..rows.len() as i32).collect::<Vec<_>>());
    let complete = rows.iter().filter(|r| r.1 == "COMPLETE").count();
    let lost = rows.iter().filter(|r| r.1 == "RUNNING").count();
    assert_eq!(lost, 0, "{rows:?}");
    assert_eq!(complete, 12, "{rows:?}\n{text}");
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password_and_exit_code_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let url = format!("postgresql://nas:s3cret@127.0.0.1:{port}/nas");
    let dir = tempfile::tempdir().expect("temp dir");
    tiny_space(dir.path(), 3);
    for args in [
        vec!["leaderboard", "--storage", &url, "--study", "x"],
        vec![
            "search",
            "--storage",
            &url,
            "--space",
            "tiny.ron",
            "--trials",
            "1",
        ],
        vec!["trial", "0", "--storage", &url, "--study", "x"],
        vec!["export", "--storage", &url, "--study", "x", "--out", "m"],
    ] {
        let out = Command::new(NAS)
            .current_dir(dir.path())
            .args(&args)
            .output()
            .expect("runs nas");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let shown = format!("postgresql://nas@127.0.0.1:{port}/nas");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("nas: error: {shown}: cannot reach the database: ")),
            "{stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    for (args, expected) in [
        (
            vec!["leaderboard", "--storage", "mysql://u:pw@h/d"],
            "nas: error: --storage: `mysql://u@h/d` is not a storage nas knows",
        ),
        (
            vec!["search", "--space", "tiny.ron", "--heartbeat", "5s"],
            "nas: error: --heartbeat needs a database --storage",
        ),
        (
            vec![
                "search",
                "--space",
                "tiny.ron",
                "--storage",
                &url,
                "--heartbeat",
                "0s",
            ],
            "nas: error: --heartbeat: `0s` must be a positive duration",
        ),
    ] {
        let out = Command::new(NAS)
            .current_dir(dir.path())
            .args(&args)
            .output()
            .expect("runs nas");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{stderr}");
    }
}

#[test]
fn optuna_dashboard_opens_a_nas_study_in_postgres() {
    let test = "optuna_dashboard_opens_a_nas_study_in_postgres";
    let Some(server) = Server::start(test) else {
        return;
    };
    if !pg::python_has(&["optuna_dashboard", "psycopg"]) {
        pg::skip(
            test,
            "python3 cannot import optuna_dashboard and psycopg (pip install optuna-dashboard 'psycopg[binary]')",
            &["NAS_REQUIRE_OPTUNA", "CI"],
        );
        return;
    }
    let url = server.database("dashboard");
    let mut s = open_or_create(&url, meta("shown"), Duration::from_secs(30));
    run_trial(s.as_mut(), 0, TrialState::Complete, &[-0.5, -0.625]).expect("trial 0");
    run_trial(s.as_mut(), 1, TrialState::Pruned, &[-0.25]).expect("trial 1");
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/optuna_postgres.py");
    let out = Command::new("python3")
        .args([helper, "dashboard", &url, "shown", "2"])
        .output()
        .expect("runs python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

/// Milliseconds per trial of each storage step, as the controller calls them (refresh, recover,
/// create; parameters; `EPOCHS` epoch reports; finish), on the journal and on PostgreSQL.
/// `cargo test --release --test postgres -- --ignored --nocapture measure_storage_overhead`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_storage_overhead() {
    const TRIALS: usize = 200;
    const EPOCHS: usize = 20;
    let Some(server) = Server::start("measure_storage_overhead") else {
        return;
    };
    // NAS_MEASURE_POSTGRES_URL: a server of your own (the test's runs with fsync off).
    let url =
        std::env::var("NAS_MEASURE_POSTGRES_URL").unwrap_or_else(|_| server.database("overhead"));
    let dir = tempfile::tempdir().expect("temp dir");
    let places = [
        ("journal", StorageUrl::journal(dir.path())),
        ("postgresql", storage_url(&url)),
    ];
    for (name, place) in places {
        let mut s = nas::study::open_or_create(&place, meta("overhead"), StorageOptions::default())
            .expect("opens");
        let mut t = [Duration::ZERO; 4];
        for k in 0..TRIALS {
            let t0 = Instant::now();
            s.refresh().expect("refresh");
            s.recover_stale().expect("recover");
            let n = s
                .create_trial_within(None)
                .expect("create")
                .expect("a trial");
            let t1 = Instant::now();
            s.set_params(n, config(k), k as u64).expect("params");
            let t2 = Instant::now();
            for e in 1..=EPOCHS {
                s.report(n, e, -0.5 - e as f64 / 100.0).expect("report");
            }
            let t3 = Instant::now();
            let mut r = TrialRecord::new(n, config(k), k as u64);
            r.state = TrialState::Complete;
            r.cv_mean = Some(0.7);
            r.intermediate = (1..=EPOCHS).map(|e| -0.5 - e as f64 / 100.0).collect();
            r.curves = vec![FoldCurve::default(); 3];
            s.finish_trial(r).expect("finish");
            let t4 = Instant::now();
            for (d, (a, b)) in t.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)]) {
                *d += b - a;
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / TRIALS as f64;
        let total: Duration = t.iter().sum();
        eprintln!(
            "{name}: {:.2} ms per trial: refresh+recover+create {:.2}, params {:.2}, {EPOCHS} epoch reports {:.2} ({:.3} each), finish {:.2}",
            ms(total),
            ms(t[0]),
            ms(t[1]),
            ms(t[2]),
            ms(t[2]) / EPOCHS as f64,
            ms(t[3])
        );
    }
}

/// Trials per second of 1 and of 8 `nas search` processes on one study of a trivial space.
/// `cargo test --release --test postgres -- --ignored --nocapture measure_worker_throughput`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_worker_throughput() {
    const TRIALS: usize = 200;
    let Some(server) = Server::start("measure_worker_throughput") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    tiny_space(dir.path(), 1);
    for (i, processes) in [1usize, 8].into_iter().enumerate() {
        let url = server.database(&format!("throughput{i}"));
        // The schema and the study first, so that only the trials are timed.
        let (ok, text) = finish(
            worker(dir.path(), &url, "t", 1, &[])
                .spawn()
                .expect("starts"),
        );
        assert!(ok, "{text}");
        let start = Instant::now();
        let workers: Vec<Child> = (0..processes)
            .map(|_| {
                worker(dir.path(), &url, "t", TRIALS, &[])
                    .spawn()
                    .expect("starts a worker")
            })
            .collect();
        for w in workers {
            let (ok, text) = finish(w);
            assert!(ok, "{text}");
        }
        let secs = start.elapsed().as_secs_f64();
        let rows = states(&url, "t");
        assert_eq!(rows.len(), TRIALS);
        eprintln!(
            "{processes} process(es): {} trials in {secs:.2}s, {:.1} trials/s",
            TRIALS - 1,
            (TRIALS - 1) as f64 / secs
        );
    }
}
