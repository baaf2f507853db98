//! Studies that survive their process: `kill -9` then resume, two processes on one study, Ctrl-C.

use nas::search::TrialState;
use nas::study::{counts_toward_total, JournalStorage, Storage, TrialRecord, LOST};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Small MLPs on digits that train their full 12 epochs (patience as long as training), so every
/// trial spends a while in the middle of training.
const SPACE: &str = "(
    task: Classification,
    data: \"digits\",
    model: Mlp((
        depth: Fixed(1),
        width: Choice([16, 32, 48]),
        activation: Choice([Relu, Tanh]),
        dropout: Fixed(0.0),
        batch_norm: Fixed(false),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: LogRange(1e-3, 1e-2),
        batch_size: Fixed(32),
        max_epochs: Fixed(12),
        patience: Fixed(12),
    ),
)";

struct Study {
    _tmp: tempfile::TempDir,
    space: PathBuf,
    results: PathBuf,
}

impl Study {
    fn new() -> Study {
        let tmp = tempfile::tempdir().unwrap();
        let space = tmp.path().join("survive.ron");
        std::fs::write(&space, SPACE).unwrap();
        let results = tmp.path().join("results");
        Study {
            _tmp: tmp,
            space,
            results,
        }
    }

    fn dir(&self) -> PathBuf {
        self.results.join("survive")
    }

    fn command(&self, trials: usize) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nas"));
        c.args(["search", "--space"])
            .arg(&self.space)
            .arg("--results")
            .arg(&self.results)
            .args(["--trials", &trials.to_string()])
            .args(["--workers", "1", "--no-final", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// The study as the journal holds it now (None before the journal exists).
    fn trials(&self) -> Option<Vec<TrialRecord>> {
        let dir = self.dir();
        if !dir.join(JournalStorage::FILE).exists() {
            return None;
        }
        JournalStorage::open(&dir).ok().map(|s| s.trials().to_vec())
    }

    /// Polls the journal until `ready` holds, panicking after two minutes.
    fn wait_for(
        &self,
        child: &mut Child,
        ready: impl Fn(&[TrialRecord]) -> bool,
    ) -> Vec<TrialRecord> {
        let start = Instant::now();
        loop {
            if let Some(t) = self.trials() {
                if ready(&t) {
                    return t;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nas search exited ({status}) before the moment the test waits for");
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "timed out waiting for the journal"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn finished(t: &TrialRecord) -> bool {
    matches!(
        t.state,
        TrialState::Complete | TrialState::Pruned | TrialState::Failed
    )
}

/// At least `n` trials finished and one is in the middle of training (it has reported an epoch).
fn mid_training(n: usize) -> impl Fn(&[TrialRecord]) -> bool {
    move |t: &[TrialRecord]| {
        t.iter().filter(|t| finished(t)).count() >= n
            && t.iter()
                .any(|t| t.state == TrialState::Running && !t.intermediate.is_empty())
    }
}

fn check_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "nas search failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_search_killed_mid_training_resumes_and_completes_with_every_finished_trial_intact() {
    let study = Study::new();
    let mut child = study.command(6).spawn().unwrap();
    let before = study.wait_for(&mut child, mid_training(2));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the journal held when the process died (it may have finished one more since `before`).
    let before = study.trials().unwrap_or(before);
    let done: Vec<TrialRecord> = before.iter().filter(|t| finished(t)).cloned().collect();
    let lost: Vec<TrialRecord> = before
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .cloned()
        .collect();
    assert!(done.len() >= 2 && !lost.is_empty());

    let out = study.command(6).output().unwrap();
    check_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queued again"), "{stderr}");

    let after = study.trials().unwrap();
    for t in &done {
        assert_eq!(&after[t.number], t, "finished trial {} changed", t.number);
    }
    for t in &lost {
        let now = &after[t.number];
        assert_eq!(now.state, TrialState::Failed);
        assert_eq!(now.error.as_deref(), Some(LOST));
        assert!(
            after.iter().any(|r| r.number > t.number
                && r.config == t.config
                && r.state == TrialState::Complete),
            "the lost configuration of trial {} was not run again",
            t.number
        );
    }
    let counted: Vec<&TrialRecord> = after.iter().filter(|t| counts_toward_total(t)).collect();
    assert_eq!(counted.len(), 6);
    assert!(counted.iter().all(|t| t.state == TrialState::Complete));
    // The leaderboard files are derived from the whole journal.
    let board = std::fs::read_to_string(study.dir().join("leaderboard.json")).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&board).unwrap();
    let complete = rows.iter().filter(|r| r["state"] == "complete").count();
    assert_eq!(complete, 6);
}

#[test]
fn two_processes_on_one_study_share_the_trial_count_with_distinct_numbers() {
    let study = Study::new();
    // Create the study first, so both processes below join the same one.
    check_success(&study.command(1).output().unwrap());
    let a = study.command(7).spawn().unwrap();
    let b = study.command(7).spawn().unwrap();
    let (a_pid, b_pid) = (a.id(), b.id());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    check_success(&a);
    check_success(&b);

    let trials = study.trials().unwrap();
    let numbers: BTreeSet<usize> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers.len(), trials.len(), "duplicate trial numbers");
    assert_eq!(numbers, (0..trials.len()).collect());
    let complete = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .count();
    assert_eq!(complete, 7, "the study asked for 7 trials in all");
    assert_eq!(trials.len(), 7);
    // Each of the two concurrent processes created trials (the set-up run's creator is not one
    // of them: counting it would pass with one of the two idle).
    let pids = creator_pids(&study.dir());
    for (name, pid) in [("a", a_pid), ("b", b_pid)] {
        assert!(
            pids.contains(&pid),
            "process {name} (pid {pid}) created no trial; creators: {pids:?}"
        );
    }
}

/// The pids of the worker ids (`<hostname>-<pid>`) that created trials, from the raw journal.
fn creator_pids(dir: &Path) -> BTreeSet<u32> {
    let text = std::fs::read_to_string(dir.join(JournalStorage::FILE)).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op_code"] == 4)
        .filter_map(|v| {
            let id = v["worker_id"].as_str()?;
            id.rsplit_once('-')?.1.parse().ok()
        })
        .collect()
}

/// The state letter of `/proc/<pid>/stat` (`Z` for a zombie), None once the entry is gone.
#[cfg(target_os = "linux")]
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[cfg(target_os = "linux")]
#[test]
fn trials_of_a_killed_search_left_a_zombie_by_its_parent_are_recovered_on_resume() {
    let study = Study::new();
    let mut child = study.command(4).spawn().unwrap();
    study.wait_for(&mut child, mid_training(1));
    // SIGKILL, and no wait(): this test is the parent that does not reap, so the dead search
    // stays a zombie whose /proc entry (pid and start time) looks like a live process.
    child.kill().unwrap();
    let pid = child.id();
    let start = Instant::now();
    while proc_state(pid) != Some('Z') {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pid {pid} did not become a zombie ({:?})",
            proc_state(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = study.trials().unwrap();
    let lost: Vec<TrialRecord> = before
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .cloned()
        .collect();
    assert!(!lost.is_empty(), "the killed search left no running trial");

    let out = study.command(4).output().unwrap();
    check_success(&out);
    assert_eq!(
        proc_state(pid),
        Some('Z'),
        "the owner was a zombie throughout"
    );
    let after = study.trials().unwrap();
    for t in &lost {
        let now = &after[t.number];
        assert_eq!(now.state, TrialState::Failed, "trial {}", t.number);
        assert_eq!(now.error.as_deref(), Some(LOST));
        assert!(
            t.config.is_empty()
                || after.iter().any(|r| r.number > t.number
                    && r.config == t.config
                    && r.state == TrialState::Complete),
            "the lost configuration of trial {} was not run again",
            t.number
        );
    }
    let counted: Vec<&TrialRecord> = after.iter().filter(|t| counts_toward_total(t)).collect();
    assert_eq!(counted.len(), 4, "{after:#?}");
    assert!(counted.iter().all(|t| t.state == TrialState::Complete));
    // The dead owner's lock file went with its trials, and the resumed search removed its own.
    let owners: Vec<_> = std::fs::read_dir(study.dir().join("owners"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(owners.is_empty(), "lock files left: {owners:?}");
    child.wait().unwrap();
}

#[cfg(unix)]
#[test]
fn ctrl_c_records_the_trial_in_flight_as_interrupted_and_prints_the_leaderboard() {
    let study = Study::new();
    let mut child = study.command(50).spawn().unwrap();
    study.wait_for(&mut child, mid_training(1));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    check_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("complete"),
        "no leaderboard printed:\n{stdout}"
    );
    let trials = study.trials().unwrap();
    assert!(trials.iter().all(|t| t.state != TrialState::Running));
    assert!(trials.iter().any(|t| t.state == TrialState::Interrupted));
    assert!(trials.len() < 50);
    // Interrupted trials do not count toward the total: running again continues the study.
    assert!(trials.iter().filter(|t| counts_toward_total(t)).count() < trials.len());
}

#[test]
fn resume_continues_a_study_from_its_journal_alone_and_refuses_an_unknown_one() {
    let study = Study::new();
    check_success(&study.command(2).output().unwrap());
    let nas = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nas"));
        c.args(["search", "--resume", "--results"])
            .arg(&study.results)
            .args(["--workers", "1", "--no-final", "--quiet"]);
        c
    };
    // No --space: the study's own space, data, strategy and scheduler come from its journal.
    let out = nas()
        .args(["--study", "survive", "--trials", "3"])
        .output()
        .unwrap();
    check_success(&out);
    let trials = study.trials().unwrap();
    assert_eq!(trials.len(), 3);
    assert!(trials.iter().all(|t| t.state == TrialState::Complete));

    let out = nas().args(["--study", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no study `nope`"), "{stderr}");
}

#[test]
fn continuing_a_study_with_another_seed_folds_or_data_is_refused() {
    let study = Study::new();
    check_success(&study.command(1).output().unwrap());
    for (flag, value, what) in [
        ("--seed", "7", "seed 0"),
        ("--folds", "5", "3 folds"),
        ("--data", "iris", "data `digits`"),
    ] {
        let out = study.command(2).args([flag, value]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(what) && stderr.contains("--study"),
            "{stderr}"
        );
    }
    // The same values, or none, continue it.
    let out = study
        .command(2)
        .args(["--seed", "0", "--folds", "3", "--data", "digits"])
        .output()
        .unwrap();
    check_success(&out);
    assert_eq!(study.trials().unwrap().len(), 2);
}
