//! The journal storage: replay, crash tolerance, several processes on one study, recovery of
//! trials whose process died, and Optuna reading what `nas` wrote.

use nas::data::Task;
use nas::search::TrialState;
use nas::space::{Config, SearchSpace};
use nas::study::{JournalStorage, Metric, Storage, StudyError, StudyMeta, TrialRecord, LOST};
use std::io::Write;
use std::path::Path;

#[path = "common/study_fixture.rs"]
mod fixture;

use fixture::{config, meta, run_trial, space, test_result};
/// Writes a study with a complete, a pruned, a failed and an interrupted trial.
fn sample_study(dir: &Path) -> Vec<TrialRecord> {
    let mut s = JournalStorage::open_or_create(dir, meta("digits")).expect("creates the study");
    let rs = vec![
        run_trial(&mut s, 0, TrialState::Complete, &[-0.5, -0.625, -0.75]).expect("trial 0"),
        run_trial(&mut s, 1, TrialState::Pruned, &[-0.25, -0.375]).expect("trial 1"),
        run_trial(&mut s, 2, TrialState::Failed, &[]).expect("trial 2"),
        run_trial(&mut s, 3, TrialState::Interrupted, &[-0.5]).expect("trial 3"),
    ];
    s.set_test_result(test_result()).expect("test result");
    assert_eq!(s.trials(), &rs[..], "the live state is the replayed one");
    rs
}

fn journal(dir: &Path) -> std::path::PathBuf {
    dir.join(JournalStorage::FILE)
}

#[test]
fn a_study_with_complete_pruned_and_failed_trials_survives_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = sample_study(dir.path());
    for s in [
        JournalStorage::open(dir.path()).expect("opens"),
        JournalStorage::open_or_create(dir.path(), meta("digits")).expect("reopens"),
    ] {
        assert_eq!(s.meta(), &meta("digits"));
        assert_eq!(s.trials(), &expected[..]);
        assert_eq!(s.test_result(), Some(&test_result()));
    }
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
        assert!(
            v["op_code"].is_u64() && v["worker_id"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn fold_curves_and_the_pruning_rung_are_trial_user_attributes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = sample_study(dir.path());
    assert_eq!(expected[0].curves.len(), 3);
    assert!(expected[1].pruned_at.is_some());
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    let attr = |key: &str| {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
            .filter(|v| v["op_code"] == 8)
            .filter_map(|v| v["user_attr"].get(key).cloned())
            .collect::<Vec<_>>()
    };
    let curves = attr("fold_curves");
    assert_eq!(
        curves.len(),
        3,
        "complete, pruned and interrupted trials trained"
    );
    assert_eq!(curves[0][1]["stopped_early"], 3);
    assert_eq!(curves[0][0]["loss"], serde_json::json!([2.0, 1.75, 1.5]));
    assert_eq!(
        attr("pruned_at"),
        vec![serde_json::json!({"rung": 1, "epochs": 2, "bracket": 0})]
    );
}

#[test]
fn a_journal_written_before_fold_curves_loads_with_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut expected = sample_study(dir.path());
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    let old: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"fold_curves\"") && !l.contains("\"pruned_at\""))
        .collect();
    assert!(old.len() < text.lines().count());
    std::fs::write(journal(dir.path()), old.join("\n") + "\n").expect("rewrite");
    for t in &mut expected {
        t.curves.clear();
        t.pruned_at = None;
    }
    let s = JournalStorage::open(dir.path()).expect("opens");
    assert_eq!(s.trials(), &expected[..]);
}

/// Optuna's `Study.set_metric_names` keeps the names in this study system attribute
/// (`optuna/study/study.py`), and optuna-dashboard labels the objective's axis with them.
#[test]
fn the_journal_names_the_objective_for_optuna_also_when_an_old_study_is_continued() {
    let names = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(journal(dir))
            .expect("journal")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
            .filter(|v| v["op_code"] == 3)
            .filter_map(|v| v["system_attr"].get("study:metric_names").cloned())
            .collect()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    sample_study(dir.path());
    assert_eq!(names(dir.path()), vec![serde_json::json!(["cv accuracy"])]);
    // A journal from before: reading it changes nothing, continuing it adds the names once.
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    let old: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("study:metric_names"))
        .collect();
    std::fs::write(journal(dir.path()), old.join("\n") + "\n").expect("rewrite");
    drop(JournalStorage::open(dir.path()).expect("opens"));
    assert!(names(dir.path()).is_empty());
    for _ in 0..2 {
        drop(JournalStorage::open_or_create(dir.path(), meta("digits")).expect("continues"));
    }
    assert_eq!(names(dir.path()), vec![serde_json::json!(["cv accuracy"])]);
    // RMSE studies are named after theirs.
    let rmse = tempfile::tempdir().expect("temp dir");
    let m = StudyMeta {
        task: Task::Regression,
        metric: Metric::Rmse,
        ..meta("reg")
    };
    drop(JournalStorage::open_or_create(rmse.path(), m).expect("creates"));
    assert_eq!(names(rmse.path()), vec![serde_json::json!(["cv rmse"])]);
}

#[test]
fn a_journal_with_a_torn_last_line_still_loads_and_the_next_write_removes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = sample_study(dir.path());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(journal(dir.path()))
        .expect("journal");
    f.write_all(br#"{"op_code":4,"worker_id":"x-1","study_id":0,"datetime_st"#)
        .expect("torn write");
    drop(f);
    let mut s = JournalStorage::open(dir.path()).expect("a torn last line is not fatal");
    assert_eq!(s.trials(), &expected[..]);
    let number = s.create_trial().expect("writes after a torn line");
    assert_eq!(number, expected.len());
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    assert!(!text.contains("datetime_st\""), "the torn line is gone");
    assert!(text.ends_with('\n'));
    let again = JournalStorage::open(dir.path()).expect("reopens");
    assert_eq!(again.trials().len(), expected.len() + 1);
}

/// Hand-edited lines a journal can hold, each a different kind of garbage.
const GARBAGE: [(&str, &str); 13] = [
    ("invalid JSON", "this is not json"),
    ("JSON that is not an object", "[1, 2, 3]"),
    ("no op code", r#"{"worker_id": "x-1", "study_id": 0}"#),
    (
        "an op code that is not a number",
        r#"{"op_code": "4", "worker_id": "x-1", "study_id": 0}"#,
    ),
    (
        "an op code Optuna does not have",
        r#"{"op_code": 42, "worker_id": "x-1"}"#,
    ),
    (
        "a trial that does not exist",
        r#"{"op_code": 6, "worker_id": "x-1", "trial_id": 999, "state": 1, "values": [0.5]}"#,
    ),
    (
        "a state that is not a number",
        r#"{"op_code": 6, "worker_id": "x-1", "trial_id": 0, "state": "COMPLETE", "values": [0.5]}"#,
    ),
    (
        "a state Optuna does not have",
        r#"{"op_code": 6, "worker_id": "x-1", "trial_id": 0, "state": 17, "values": [0.5]}"#,
    ),
    (
        "values that are not a list",
        r#"{"op_code": 6, "worker_id": "x-1", "trial_id": 0, "state": 1, "values": "high"}"#,
    ),
    (
        "an intermediate value that is not a number",
        r#"{"op_code": 7, "worker_id": "x-1", "trial_id": 0, "step": 1, "intermediate_value": "high"}"#,
    ),
    (
        "a trial attribute of the wrong type",
        r#"{"op_code": 8, "worker_id": "x-1", "trial_id": 0, "user_attr": {"n_params": "many"}}"#,
    ),
    (
        "fold curves that are not curves",
        r#"{"op_code": 8, "worker_id": "x-1", "trial_id": 0, "user_attr": {"fold_curves": [{"loss": "x"}]}}"#,
    ),
    (
        "a parameter value that is not a number",
        r#"{"op_code": 5, "worker_id": "x-1", "trial_id": 0, "param_name": "lr", "param_value_internal": "x", "distribution": "{\"name\": \"FloatDistribution\", \"attributes\": {\"low\": 0.0, \"high\": 1.0, \"log\": false, \"step\": null}}"}"#,
    ),
];

/// Writes the sample study with `garbage` as line `at` (counted from 1) and returns the journal.
fn journal_with_garbage(dir: &Path, garbage: &str, at: usize) -> std::path::PathBuf {
    sample_study(dir);
    let path = journal(dir);
    let text = std::fs::read_to_string(&path).expect("journal");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(at - 1, garbage);
    std::fs::write(&path, lines.join("\n") + "\n").expect("rewrite");
    path
}

/// The line just after trial 0's creation: trial 0 exists and is running there.
fn while_trial_0_runs() -> usize {
    let probe = tempfile::tempdir().expect("temp dir");
    sample_study(probe.path());
    let text = std::fs::read_to_string(journal(probe.path())).expect("journal");
    let created = text
        .lines()
        .position(|l| l.contains(r#""op_code":4,"#))
        .expect("a trial is created");
    created + 2
}

#[test]
fn every_kind_of_garbage_in_the_middle_of_a_journal_is_an_error_naming_file_and_line() {
    let mut failures = Vec::new();
    for (kind, garbage) in GARBAGE {
        let dir = tempfile::tempdir().expect("temp dir");
        let at = while_trial_0_runs();
        journal_with_garbage(dir.path(), garbage, at);
        if let Some(wrong) = bad_line_error(dir.path(), at) {
            failures.push(format!("{kind}: {wrong}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// What is wrong with opening `dir`, which should fail with one line naming journal line `at`.
fn bad_line_error(dir: &Path, at: usize) -> Option<String> {
    match JournalStorage::open(dir) {
        Err(e @ StudyError::BadLine { .. }) => {
            let msg = e.to_string();
            let named = msg.contains(&format!("journal.log:{at}: ")) && !msg.contains('\n');
            (!named).then(|| format!("not one line naming line {at}: {msg}"))
        }
        Err(e) => Some(format!("wrong error: {e}")),
        Ok(_) => Some("the garbage was accepted".into()),
    }
}

#[test]
fn garbage_about_a_finished_trial_is_an_error_too() {
    let mut failures = Vec::new();
    for (kind, garbage) in GARBAGE {
        let dir = tempfile::tempdir().expect("temp dir");
        // Before the last line (the test result): every trial has finished there.
        let lines = {
            let probe = tempfile::tempdir().expect("temp dir");
            sample_study(probe.path());
            std::fs::read_to_string(journal(probe.path()))
                .expect("journal")
                .lines()
                .count()
        };
        journal_with_garbage(dir.path(), garbage, lines);
        if let Some(wrong) = bad_line_error(dir.path(), lines) {
            failures.push(format!("{kind}: {wrong}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn nas_leaderboard_on_a_journal_with_garbage_exits_2_with_one_line_naming_file_and_line() {
    let results = tempfile::tempdir().expect("temp dir");
    let dir = results.path().join("edited");
    let at = while_trial_0_runs();
    journal_with_garbage(&dir, r#"{"op_code": 42, "worker_id": "x-1"}"#, at);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(["leaderboard", "--study", "edited", "--results"])
        .arg(results.path())
        .output()
        .expect("runs nas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("journal.log:{at}: ")) && stderr.contains("op_code"),
        "{stderr}"
    );
}

/// Set in a child process of the test below: the study directory it works on.
const CHILD_DIR: &str = "NAS_JOURNAL_TEST_CHILD_DIR";
/// Which of the two children it is (its trials' configurations differ).
const CHILD_INDEX: &str = "NAS_JOURNAL_TEST_CHILD_INDEX";
const PER_PROCESS: usize = 15;

/// The body of each child process of the test below; ignored when the suite runs.
#[test]
#[ignore = "a child process of two_processes_creating_trials_concurrently_…"]
fn journal_child_process_runs_its_trials() {
    let dir = std::path::PathBuf::from(std::env::var(CHILD_DIR).expect("run by its parent test"));
    let p: usize = std::env::var(CHILD_INDEX)
        .expect("run by its parent test")
        .parse()
        .expect("an index");
    // Both children start writing together, so that their writes interleave.
    let go = dir.join("go");
    let start = std::time::Instant::now();
    while !go.exists() {
        assert!(start.elapsed().as_secs() < 60, "never told to go");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut s = JournalStorage::open_or_create(&dir, meta("shared")).expect("opens the study");
    for k in 0..PER_PROCESS {
        let state = if k % 2 == 0 {
            TrialState::Complete
        } else {
            TrialState::Pruned
        };
        run_trial(&mut s, p * 100 + k, state, &[-0.5]).expect("trial");
    }
}

#[test]
fn two_processes_creating_trials_concurrently_get_distinct_numbers_and_see_all_trials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let children: Vec<_> = (0..2)
        .map(|p| {
            std::process::Command::new(std::env::current_exe().expect("this test binary"))
                .args([
                    "--ignored",
                    "--exact",
                    "journal_child_process_runs_its_trials",
                ])
                .args(["--nocapture", "--test-threads", "1"])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_INDEX, p.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starts a child process")
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    std::fs::write(dir.path().join("go"), "").expect("go");
    for child in children {
        let out = child.wait_with_output().expect("child");
        assert!(
            out.status.success(),
            "a child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut s = JournalStorage::open(dir.path()).expect("opens");
    s.refresh().expect("refresh");
    let numbers: Vec<usize> = s.trials().iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..2 * PER_PROCESS).collect::<Vec<_>>());
    assert!(s.trials().iter().all(|t| t.state != TrialState::Running));
    // Each trial's configuration is the one its own process set: no write landed on a trial of
    // the other process.
    let configs: Vec<Config> = s.trials().iter().map(|t| t.config.clone()).collect();
    for p in 0..2 {
        for k in 0..PER_PROCESS {
            let c = config(p * 100 + k);
            assert!(configs.contains(&c), "child {p}'s trial {k} is missing");
        }
    }
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    let mut created: std::collections::BTreeMap<u32, usize> = Default::default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        if v["op_code"] == 4 {
            let id = v["worker_id"].as_str().expect("a worker id");
            let pid = id.rsplit_once('-').and_then(|(_, p)| p.parse().ok());
            *created.entry(pid.expect("host-pid")).or_default() += 1;
        }
    }
    let expected: std::collections::BTreeMap<u32, usize> =
        pids.iter().map(|p| (*p, PER_PROCESS)).collect();
    assert_eq!(created, expected, "trials created by each process id");
    let creations = text
        .lines()
        .filter(|l| l.contains(r#""op_code":0,"#))
        .count();
    assert_eq!(creations, 1, "the study is created once");
}

#[test]
fn another_storage_sees_new_trials_after_refresh() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = JournalStorage::open_or_create(dir.path(), meta("s")).expect("a");
    let mut b = JournalStorage::open_or_create(dir.path(), meta("s")).expect("b");
    run_trial(&mut a, 0, TrialState::Complete, &[-0.5]).expect("trial");
    assert!(b.trials().is_empty());
    b.refresh().expect("refresh");
    assert_eq!(b.trials(), a.trials());
    assert_eq!(b.create_trial().expect("create"), 1);
}

#[test]
fn a_regression_study_minimises_rmse_and_keeps_its_curves_as_they_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = StudyMeta {
        task: Task::Regression,
        metric: Metric::Rmse,
        ..meta("reg")
    };
    let mut s = JournalStorage::open_or_create(dir.path(), m.clone()).expect("creates");
    let r = run_trial(&mut s, 0, TrialState::Complete, &[2.5, 1.25]).expect("trial");
    let text = std::fs::read_to_string(journal(dir.path())).expect("journal");
    assert!(text.contains(r#""directions":[1]"#), "MINIMIZE");
    assert!(text.contains(r#""intermediate_value":1.25"#));
    let again = JournalStorage::open(dir.path()).expect("reopens");
    assert_eq!(again.meta(), &m);
    assert_eq!(again.trials(), &[r][..]);
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawns `true`");
    let pid = child.id();
    child.wait().expect("waits");
    pid
}

#[test]
fn recover_stale_fails_running_trials_of_dead_owners_and_returns_their_configs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = journal(dir.path());
    let me = {
        let mut s = JournalStorage::open_or_create(dir.path(), meta("r")).expect("creates");
        run_trial(&mut s, 0, TrialState::Complete, &[-0.5]).expect("trial 0");
        let n = s.create_trial().expect("trial 1");
        s.set_params(n, config(1), 1).expect("params");
        s.worker_id().to_string()
    };
    // Trials 0 and 1 now belong to a process that has exited; trial 2 to one on another host.
    let (host, _) = me.rsplit_once('-').expect("worker id is host-pid");
    let text = std::fs::read_to_string(&path).expect("journal");
    let quoted = format!("\"{me}\"");
    let text = text.replace(&quoted, &format!("\"{host}-{}\"", dead_pid()));
    std::fs::write(&path, text).expect("rewrite");
    {
        let mut s = JournalStorage::open(dir.path()).expect("opens");
        let n = s.create_trial().expect("trial 2");
        s.set_params(n, config(2), 2).expect("params");
    }
    let text = std::fs::read_to_string(&path).expect("journal");
    std::fs::write(&path, text.replace(&quoted, "\"elsewhere-1\"")).expect("rewrite");
    let mut s = JournalStorage::open(dir.path()).expect("opens");
    // Trial 3 is this process's own, alive.
    let live = s.create_trial().expect("trial 3");
    let configs = s.recover_stale().expect("recovers");
    assert_eq!(configs, vec![config(1)]);
    let states: Vec<TrialState> = s.trials().iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            TrialState::Complete,
            TrialState::Failed,
            TrialState::Running,
            TrialState::Running
        ]
    );
    assert_eq!(s.trials()[1].error.as_deref(), Some(LOST));
    assert_eq!(live, 3);
    let again = JournalStorage::open(dir.path()).expect("reopens");
    assert_eq!(again.trials(), s.trials());
}

#[test]
fn an_owner_on_another_host_is_lost_once_its_lock_is_free_and_dead_owners_lock_files_go() {
    use fs4::fs_std::FileExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = journal(dir.path());
    let me = {
        let mut s = JournalStorage::open_or_create(dir.path(), meta("h")).expect("creates");
        let n = s.create_trial().expect("trial 0");
        s.set_params(n, config(0), 0).expect("params");
        s.worker_id().to_string()
    };
    // Trial 0 now belongs to a process on another host, which holds its owner lock.
    let text = std::fs::read_to_string(&path).expect("journal");
    std::fs::write(&path, text.replace(&format!("\"{me}\""), "\"elsewhere-7\"")).expect("rewrite");
    let owners = dir.path().join("owners");
    let lock = std::fs::File::create(owners.join("elsewhere-7.lock")).expect("lock file");
    FileExt::lock_exclusive(&lock).expect("locks");
    std::fs::write(owners.join("gone-3.lock"), "").expect("a dead owner's lock file");

    let mut s = JournalStorage::open(dir.path()).expect("opens");
    assert!(s.recover_stale().expect("recovers").is_empty());
    assert_eq!(
        s.trials()[0].state,
        TrialState::Running,
        "its owner holds the lock"
    );
    assert!(owners.join("elsewhere-7.lock").exists());
    assert!(
        !owners.join("gone-3.lock").exists(),
        "a dead owner's lock file is removed"
    );

    drop(lock); // the owner dies: the kernel releases its lock
    assert_eq!(s.recover_stale().expect("recovers"), vec![config(0)]);
    assert_eq!(s.trials()[0].state, TrialState::Failed);
    assert_eq!(s.trials()[0].error.as_deref(), Some(LOST));
    let left: Vec<_> = std::fs::read_dir(&owners)
        .expect("owners")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "lock files left: {left:?}");
}

#[test]
fn a_connection_that_finished_its_trials_leaves_no_owner_lock_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut s = JournalStorage::open_or_create(dir.path(), meta("t")).expect("creates");
        run_trial(&mut s, 0, TrialState::Complete, &[-0.5]).expect("trial");
        let owners: Vec<_> = std::fs::read_dir(dir.path().join("owners"))
            .expect("owners")
            .collect();
        assert_eq!(owners.len(), 1, "the owner holds its lock while it lives");
    }
    let owners = std::fs::read_dir(dir.path().join("owners")).expect("owners");
    assert_eq!(owners.count(), 0);
}

#[test]
fn optuna_opens_a_nas_journal() {
    let has_optuna = std::process::Command::new("python3")
        .args(["-c", "import optuna"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_optuna {
        // CI sets one of these: there, a missing Optuna must not pass unnoticed.
        let required = ["NAS_REQUIRE_OPTUNA", "CI"]
            .into_iter()
            .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")));
        if let Some(var) = required {
            panic!("{var} is set, and python3 cannot import optuna (pip install optuna)");
        }
        // Straight to stderr: the test harness would swallow eprintln! of a passing test.
        let _ = std::io::stderr().write_all(
            b"SKIPPED optuna_opens_a_nas_journal: python3 cannot import optuna \
              (set NAS_REQUIRE_OPTUNA=1 to make this a failure)\n",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let trials = sample_study(dir.path());
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
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(journal(dir.path()))
        .arg(expected.to_string())
        .output()
        .expect("runs python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
}

#[test]
fn a_python_optuna_process_and_nas_append_to_one_journal_and_take_turns() {
    use nas::search::{SchedulerKind, Strategy};
    use nas::study::{Direction, Outcome, Study, StudyOptions};
    let test = "a_python_optuna_process_and_nas_append_to_one_journal_and_take_turns";
    let has_optuna = std::process::Command::new("python3")
        .args(["-c", "import optuna"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_optuna {
        let required = ["NAS_REQUIRE_OPTUNA", "CI"]
            .into_iter()
            .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")));
        if let Some(var) = required {
            panic!("{var} is set, and python3 cannot import optuna (pip install optuna)");
        }
        let _ = std::io::stderr()
            .write_all(format!("SKIPPED {test}: python3 cannot import optuna\n").as_bytes());
        return;
    }
    const N: usize = 100;
    let dir = tempfile::tempdir().expect("temp dir");
    let space = SearchSpace::from_str_named(
        "(task: Regression, params: {\"x\": Range(0.0, 1.0)})",
        "shared",
        "shared.ron",
    )
    .expect("a space");
    let options = StudyOptions {
        strategy: Strategy::Random,
        scheduler: SchedulerKind::Fifo,
        seed: 1,
        metric: Metric::Value(Direction::Maximize),
    };
    let study = Study::create(dir.path(), "shared", space, options).expect("creates the study");
    let path = study.dir().join(JournalStorage::FILE);
    let ready = dir.path().join("ready");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/optuna_journal_writer.py"
    );
    let mut python = std::process::Command::new("python3")
        .arg(script)
        .arg("write")
        .arg(&path)
        .args(["shared", &N.to_string()])
        .arg(&ready)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs python3");
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(start.elapsed().as_secs() < 60, "Optuna never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Both append at once, for as long as Optuna writes: each of nas's transactions holds
    // Optuna's lock too, so no Optuna line lands between nas's read of the journal and its write.
    let mut ours = 0;
    while ours < N || python.try_wait().expect("python runs").is_none() {
        let trial = study.ask().expect("asks while Optuna writes");
        let x = trial.float("x").expect("x");
        study.tell(trial, Outcome::Complete(x)).expect("tells");
        ours += 1;
        assert!(ours < 20 * N, "Optuna never ends");
        // A trial's work: Optuna's writers wait for the lock with a back-off of up to a second,
        // and a loop of nothing but writes would keep them waiting.
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let out = python.wait_with_output().expect("python ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trials = study.trials().expect("reads");
    let numbers: Vec<usize> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..ours + N).collect::<Vec<_>>());
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("check")
        .arg(&path)
        .args(["shared", &(ours + N).to_string()])
        .output()
        .expect("runs python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        !path.with_file_name("journal.log.lock").exists(),
        "the lock is released"
    );
}

#[test]
fn nas_waits_while_a_python_writer_holds_optunas_journal_lock() {
    let test = "nas_waits_while_a_python_writer_holds_optunas_journal_lock";
    let has_optuna = std::process::Command::new("python3")
        .args(["-c", "import optuna"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_optuna {
        let required = ["NAS_REQUIRE_OPTUNA", "CI"]
            .into_iter()
            .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")));
        if let Some(var) = required {
            panic!("{var} is set, and python3 cannot import optuna (pip install optuna)");
        }
        let _ = std::io::stderr()
            .write_all(format!("SKIPPED {test}: python3 cannot import optuna\n").as_bytes());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = JournalStorage::open_or_create(dir.path(), meta("held")).expect("creates");
    let path = journal(dir.path());
    let before = std::fs::read_to_string(&path).expect("journal");
    let ready = dir.path().join("ready");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/optuna_journal_writer.py"
    );
    let mut python = std::process::Command::new("python3")
        .arg(script)
        .arg("hold")
        .arg(&path)
        .arg("1.0")
        .arg(&ready)
        .spawn()
        .expect("runs python3");
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(start.elapsed().as_secs() < 60, "Optuna never took its lock");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let held = std::time::Instant::now();
    let n = s
        .create_trial()
        .expect("creates a trial once the lock is free");
    let waited = held.elapsed();
    assert!(python.wait().expect("python ends").success());
    assert_eq!(n, 0);
    assert!(
        waited >= std::time::Duration::from_millis(700),
        "nas wrote while Optuna held its lock (after {waited:?})"
    );
    let after = std::fs::read_to_string(&path).expect("journal");
    assert!(after.starts_with(&before) && after.len() > before.len());
}
