//! The views of a finished study: `nas leaderboard` with `--sort`, `--state`, `--columns` and
//! `--top` in every format, `nas trial N` as a table and as JSON, and the layer table they show.

use nas::search::TrialState;
use nas::study::{JournalStorage, Storage, TrialRecord};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Iris, small networks, patience 2: folds stop early, ASHA prunes, `--max-params` fails some.
const IRIS: &str = "(
    task: Classification,
    data: \"iris\",
    model: Mlp((
        depth: Range(0, 2),
        width: Choice([8, 16]),
        activation: Choice([Relu, Tanh]),
        batch_norm: Choice([false, true]),
        dropout: Choice([0.0, 0.1]),
    )),
    train: (
        optimizer: Choice([Adam, Sgd]),
        learning_rate: LogRange(1e-3, 1e-1),
        momentum: Range(0.8, 0.95),
        batch_size: Choice([16, 32]),
        max_epochs: Fixed(60),
        patience: Fixed(2),
    ),
)";

/// The results directory of one finished study `views` (made once per test run) and its trials.
fn study() -> &'static (PathBuf, Vec<TrialRecord>) {
    static STUDY: OnceLock<(PathBuf, Vec<TrialRecord>)> = OnceLock::new();
    STUDY.get_or_init(|| {
        // Under target/tmp, made again on each run of this binary.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("views-study");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("study directory");
        let space = dir.join("views.ron");
        std::fs::write(&space, IRIS).expect("space file");
        let out = Command::new(env!("CARGO_BIN_EXE_nas"))
            .arg("search")
            .arg("--space")
            .arg(&space)
            .arg("--results")
            .arg(&dir)
            .args(["--trials", "8", "--seed", "3", "--workers", "1"])
            .args(["--scheduler", "asha", "--max-params", "150"])
            .args(["--no-final", "--quiet"])
            .output()
            .expect("runs nas search");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let trials = JournalStorage::open(&dir.join("views"))
            .expect("the study")
            .trials()
            .to_vec();
        // What the tests below need from the study; a change of the trainer's numbers that
        // loses one of them needs another seed above.
        for s in [TrialState::Complete, TrialState::Pruned, TrialState::Failed] {
            assert!(
                trials.iter().any(|t| t.state == s),
                "the study has no {s:?} trial"
            );
        }
        assert!(
            trials
                .iter()
                .any(|t| t.curves.iter().any(|c| c.stopped_early.is_some())),
            "no fold of the study stopped early"
        );
        (dir, trials)
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `nas ARGS.. --results <the study's>`.
fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .arg("--results")
        .arg(&study().0)
        .output()
        .expect("runs nas")
}

fn ok(args: &[&str]) -> String {
    let out = nas(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

/// `nas leaderboard --format json ARGS..` as rows.
fn board(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["leaderboard", "--format", "json"];
    all.extend_from_slice(args);
    json(&all).as_array().expect("a list of rows").clone()
}

fn trial_numbers(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| r["trial"].as_u64().expect("trial"))
        .collect()
}

#[test]
fn state_keeps_the_trials_of_that_state_in_every_format() {
    let trials = &study().1;
    let count = |states: &[TrialState]| trials.iter().filter(|t| states.contains(&t.state)).count();
    let cases = [
        ("complete", vec![TrialState::Complete]),
        ("pruned", vec![TrialState::Pruned]),
        ("failed", vec![TrialState::Failed, TrialState::Interrupted]),
    ];
    for (state, states) in &cases {
        let rows = board(&["--state", state]);
        assert_eq!(rows.len(), count(states), "--state {state}");
        assert!(rows.iter().all(|r| r["state"] == *state), "{rows:?}");
        let csv = ok(&["leaderboard", "--format", "csv", "--state", state]);
        assert_eq!(csv.lines().count(), 1 + count(states), "{csv}");
        let table = ok(&["leaderboard", "--state", state]);
        let others = ["complete", "pruned", "failed"]
            .into_iter()
            .filter(|s| s != state);
        for other in others {
            assert!(!table.contains(&format!(" {other} ")), "{table}");
        }
    }
    assert_eq!(board(&["--state", "all"]).len(), trials.len());
    assert_eq!(board(&[]).len(), trials.len());
}

#[test]
fn sort_orders_the_rows_by_a_column_and_ties_keep_the_rank_order() {
    let by_rank = board(&[]);
    let params = |rows: &[Value]| -> Vec<u64> {
        rows.iter()
            .map(|r| r["params"].as_u64().expect("params"))
            .collect()
    };
    let mut sorted = params(&by_rank);
    sorted.sort_unstable();
    assert_ne!(
        params(&by_rank),
        sorted,
        "the rank order is already by size"
    );

    let rows = board(&["--sort", "params"]);
    assert_eq!(params(&rows), sorted);
    // Among equal sizes, the rank order.
    let rank_pos = |n: u64| trial_numbers(&by_rank).iter().position(|&t| t == n);
    for w in rows.windows(2) {
        if w[0]["params"] == w[1]["params"] {
            assert!(
                rank_pos(w[0]["trial"].as_u64().unwrap())
                    < rank_pos(w[1]["trial"].as_u64().unwrap())
            );
        }
    }

    let mut numbers = trial_numbers(&by_rank);
    numbers.sort_unstable();
    assert_eq!(trial_numbers(&board(&["--sort", "trial"])), numbers);

    // Accuracy: best first, trials without a score last.
    let scores: Vec<Option<f64>> = board(&["--sort", "score"])
        .iter()
        .map(|r| r["cv_mean"].as_f64())
        .collect();
    let n = scores.iter().filter(|s| s.is_some()).count();
    assert!(scores[..n].windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores[n..].iter().all(Option::is_none), "{scores:?}");

    let table = ok(&["leaderboard", "--sort", "trial", "--columns", "trial"]);
    let shown: Vec<u64> = table
        .lines()
        .filter_map(|l| l.trim_matches(|c| "│ ".contains(c)).parse().ok())
        .collect();
    assert_eq!(shown, numbers, "{table}");
}

#[test]
fn columns_choose_and_order_what_each_format_shows() {
    let cols = "trial,macs,score,error";
    let table = ok(&["leaderboard", "--columns", cols]);
    let header: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a header line")
        .split('│')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["trial", "MACs", "cv accuracy (mean ± std)", "error"]
    );
    let md = ok(&["leaderboard", "--format", "markdown", "--columns", cols]);
    let md_header: Vec<&str> = md
        .lines()
        .next()
        .unwrap()
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(
        md_header,
        ["", "trial", "MACs", "cv accuracy (mean ± std)", "error", ""],
        "{md}"
    );
    let csv = ok(&["leaderboard", "--format", "csv", "--columns", cols]);
    assert_eq!(csv.lines().next(), Some("trial,flops,cv_mean,error"));
    let failed = study()
        .1
        .iter()
        .find(|t| t.state == TrialState::Failed)
        .unwrap();
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("{},", failed.number)))
        .expect("the failed trial's line");
    assert!(
        line.ends_with(&format!("\"{}\"", failed.error.as_deref().unwrap())),
        "{line}"
    );
    // JSON keeps the named fields only, in the order named.
    let out = ok(&["leaderboard", "--format", "json", "--columns", cols]);
    let first = out.find("\"trial\"").unwrap();
    let (f, s, e) = (
        out.find("\"flops\"").unwrap(),
        out.find("\"cv_mean\"").unwrap(),
        out.find("\"error\"").unwrap(),
    );
    assert!(first < f && f < s && s < e, "{out}");
    for row in board(&["--columns", cols]) {
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{row}");
    }
    // Without --columns each format keeps its own.
    let csv = ok(&["leaderboard", "--format", "csv"]);
    assert_eq!(
        csv.lines().next(),
        Some("rank,trial,state,architecture,params,flops,cv_mean,cv_std,epochs,seconds")
    );
    assert!(board(&[])[0].get("config").is_some());
}

#[test]
fn top_keeps_the_first_rows_after_state_and_sort() {
    let all = board(&["--state", "pruned", "--sort", "params"]);
    let top = board(&["--state", "pruned", "--sort", "params", "--top", "2"]);
    assert_eq!(top, all[..2]);
    let table = ok(&["leaderboard", "--top", "1", "--columns", "trial"]);
    assert_eq!(table.lines().count(), 5, "{table}");
}

#[test]
fn an_unknown_column_or_state_exits_2_with_one_line_that_lists_the_valid_ones() {
    for args in [
        ["leaderboard", "--sort", "bogus"],
        ["leaderboard", "--columns", "trial,bogus"],
        ["leaderboard", "--state", "bogus"],
    ] {
        let out = nas(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("nas: error: invalid value 'bogus'"),
            "{err}"
        );
        let valid = if args[1] == "--state" {
            "[possible values: complete, pruned, failed, all]"
        } else {
            "[possible values: rank, trial, architecture, params, macs, score, std, epochs, time, state, error, front, latency]"
        };
        assert!(err.contains(valid), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// The trials of each state the study has: its best complete one, a pruned and a failed one.
fn trial_of(state: TrialState) -> &'static TrialRecord {
    let trials = &study().1;
    match state {
        TrialState::Complete => nas::study::best_trial(trials, nas::study::Metric::Accuracy),
        s => trials.iter().find(|t| t.state == s),
    }
    .expect("the study has one")
}

#[test]
fn trial_json_holds_every_value_the_layers_each_folds_curve_the_cost_and_why_it_ended() {
    let t = trial_of(TrialState::Complete);
    let n = t.number.to_string();
    let v = json(&["trial", &n, "--study", "views", "--format", "json"]);
    let keys: Vec<&String> = v["config"].as_object().unwrap().keys().collect();
    let want: Vec<&String> = t.config.keys().collect();
    assert_eq!(keys, want);
    assert_eq!(v["state"], "complete");
    assert_eq!(v["rank"], 1);
    assert_eq!(v["cv_mean"].as_f64(), t.cv_mean);
    assert_eq!(v["cost"]["params"], t.params);
    assert_eq!(v["cost"]["macs"], t.macs);
    assert_eq!(v["cost"]["epochs_trained"], t.budget);

    let layers = &v["layers"];
    let rows = layers["rows"].as_array().expect("layer rows");
    assert_eq!(rows[0]["path"], "input");
    assert_eq!(rows[0]["output"], "1x1x4");
    assert_eq!(rows.last().unwrap()["path"], "output");
    assert_eq!(rows.last().unwrap()["output"], "3");
    let sum: u64 = rows.iter().map(|r| r["params"].as_u64().unwrap()).sum();
    assert_eq!(
        (sum, layers["total_params"].as_u64()),
        (t.params as u64, Some(t.params as u64))
    );
    let macs: u64 = rows.iter().map(|r| r["macs"].as_u64().unwrap()).sum();
    assert_eq!(macs, t.macs);

    let folds = v["folds"].as_array().expect("folds");
    assert_eq!(folds.len(), 3);
    assert_eq!(
        *folds,
        serde_json::to_value(&t.curves).unwrap().as_array().unwrap()[..]
    );
    let ended = &v["ended"];
    assert_eq!(ended["reason"], "complete");
    for (f, c) in ended["folds"].as_array().unwrap().iter().zip(&t.curves) {
        assert_eq!(f["epochs"], c.loss.len());
        assert_eq!(f["best_epoch"], c.best_epoch);
        assert_eq!(f["early_stop"].as_u64(), c.stopped_early.map(|k| k as u64));
        if let Some(k) = c.stopped_early {
            assert_eq!(k, c.loss.len(), "early stopping ends the curve");
        }
    }
    assert_eq!(
        v["mean_at_best_epoch"].as_array().unwrap().len(),
        t.intermediate.len()
    );

    let p = trial_of(TrialState::Pruned);
    let v = json(&[
        "trial",
        &p.number.to_string(),
        "--format",
        "json",
        "--study",
        "views",
    ]);
    assert_eq!(v["ended"]["reason"], "pruned");
    assert_eq!(v["ended"]["scheduler"], "asha");
    assert_eq!(v["ended"]["rung"]["epochs"], p.epochs);
    assert_eq!(
        v["ended"]["rung"]["rung"].as_u64(),
        p.pruned_at.map(|r| r.rung as u64)
    );

    let f = trial_of(TrialState::Failed);
    let v = json(&[
        "trial",
        &f.number.to_string(),
        "--format",
        "json",
        "--study",
        "views",
    ]);
    assert_eq!(v["ended"]["reason"], "failed");
    assert_eq!(v["ended"]["error"].as_str(), f.error.as_deref());
    assert!(v["ended_text"]
        .as_str()
        .unwrap()
        .contains("--max-params 150"));
}

#[test]
fn trial_table_shows_the_values_the_layers_the_curves_the_cost_and_why_it_ended() {
    let early = study()
        .1
        .iter()
        .find(|t| t.curves.iter().any(|c| c.stopped_early.is_some()))
        .expect("a trial with an early stop");
    let out = ok(&["trial", &early.number.to_string(), "--study", "views"]);
    assert!(
        out.starts_with(&format!(
            "trial {} of study `views`: complete",
            early.number
        )),
        "{out}"
    );
    for k in early.config.keys() {
        assert!(out.contains(&format!("│ {k} ")), "{k} missing:\n{out}");
    }
    for (i, c) in early.curves.iter().enumerate() {
        let said = match c.stopped_early {
            Some(k) => format!(
                "fold {} early stop at epoch {k} (best epoch {})",
                i + 1,
                c.best_epoch
            ),
            None => format!("fold {} trained all {} epochs", i + 1, c.loss.len()),
        };
        assert!(out.contains(&said), "{said} missing:\n{out}");
        assert!(out.contains(&format!("fold {} loss", i + 1)));
    }
    for want in [
        "network, layer by layer",
        "│ input ",
        "│ output ",
        "│ total ",
        "validation curves, per epoch",
        "mean accuracy at best epochs",
        &format!("cost: {} parameters", early.params),
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // One line per epoch of the longest fold, the best epochs starred.
    let longest = early.curves.iter().map(|c| c.loss.len()).max().unwrap();
    let last = format!("│ {longest} ");
    assert!(out.lines().any(|l| l.starts_with(&last)), "{out}");
    assert!(!out
        .lines()
        .any(|l| l.starts_with(&format!("│ {} ", longest + 1))));
    assert!(out.contains(" *"));

    let p = trial_of(TrialState::Pruned);
    let out = ok(&["trial", &p.number.to_string(), "--study", "views"]);
    assert!(out.contains("ended: pruned by asha at rung "), "{out}");
    let f = trial_of(TrialState::Failed);
    let out = ok(&["trial", &f.number.to_string(), "--study", "views"]);
    assert!(
        out.contains(&format!("ended: failed: {}", f.error.as_deref().unwrap())),
        "{out}"
    );
    assert!(
        out.contains("network, layer by layer"),
        "a rejected network is still shown"
    );
}

#[test]
fn a_trial_that_does_not_exist_exits_2_naming_the_trials_there_are() {
    let n = study().1.len();
    let out = nas(&["trial", &n.to_string(), "--study", "views"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "nas: error: trial {n} does not exist in this study (study `views` has trials 0 to {})",
            n - 1
        )
    );
}

/// The layer table's rows add up to what `nn::cost` counts, for every shipped space: its own
/// parameters and multiply-adds per row are not counted twice by the blocks around them.
#[test]
fn the_layer_table_adds_up_to_the_cost_of_every_shipped_space() {
    use nas::data::InputShape;
    use nas::search::Strategy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces");
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "ron") {
            continue;
        }
        let space = nas::space::SearchSpace::from_file(&path).unwrap();
        for seed in 0..5u64 {
            let mut sampler = Strategy::Random.build(&space).unwrap();
            let cfg = sampler.suggest(&space, &[], &mut ChaCha8Rng::seed_from_u64(seed));
            let arch = space.decode(&cfg).arch;
            let shape = InputShape::new(1, 8, 8);
            let (Ok(cost), Ok(table)) = (
                nas::nn::cost(&arch, shape, 10),
                nas::nn::layer_table(&arch, shape, 10),
            ) else {
                continue;
            };
            let name = format!("{} seed {seed}", path.display());
            assert_eq!(table.cost, cost, "{name}");
            let params: usize = table.rows.iter().map(|r| r.params).sum();
            let macs: u64 = table.rows.iter().map(|r| r.macs).sum();
            assert_eq!((params, macs), (cost.params, cost.macs), "{name}");
            assert_eq!(table.rows[0].path, "input");
            assert_eq!(table.rows.last().unwrap().path, "output");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} networks checked");
}
