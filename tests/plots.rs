//! Plots and the HTML report: every plot file from a real tiny search, `nas plot`, `nas report`,
//! the report in headless Chromium, and the plots' text on made-up studies.

use nas::plot::{self, PlotInput, PlotKind};
use nas::report::{self, Report};
use nas::search::{Strategy, TrialState};
use nas::space::{Config, SearchSpace};
use nas::study::{best_trial, JournalStorage, Metric, Storage, StudyMeta, TrialRecord};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resvg::usvg::roxmltree;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const IRIS: &str = "(
    task: Classification,
    data: \"iris\",
    model: Mlp((
        depth: Range(1, 2),
        width: Choice([4, 8]),
        activation: Choice([Relu, Tanh]),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: LogRange(1e-2, 1e-1),
        batch_size: Fixed(32),
        max_epochs: Fixed(6),
        patience: Fixed(2),
    ),
)";

/// A results directory holding study `tiny`: 5 trials of a tiny iris space, 2 folds, searched
/// once by `nas search` (which writes the plots) and shared by the tests of this file.
fn study() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plots-study");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let space = dir.join("tiny.ron");
        std::fs::write(&space, IRIS).unwrap();
        let out = nas(&[
            "search",
            "--space",
            space.to_str().unwrap(),
            "--results",
            dir.to_str().unwrap(),
            "--trials",
            "5",
            "--folds",
            "2",
            "--workers",
            "1",
            "--quiet",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn nas(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .unwrap()
}

/// The text of every `<text>` element of an SVG, which must be well-formed XML.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn has_text(texts: &[String], want: &str) -> bool {
    texts.iter().any(|t| t.contains(want))
}

/// Width and height from a PNG's IHDR chunk, checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The `width` and `height` attributes of an SVG's root.
fn svg_size(svg: &str) -> (u32, u32) {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let r = doc.root_element();
    let n = |a: &str| r.attribute(a).unwrap().parse::<u32>().unwrap();
    (n("width"), n("height"))
}

/// What each plot of the iris study must say, besides its title.
fn expected_texts(kind: PlotKind) -> &'static [&'static str] {
    match kind {
        PlotKind::History => &[
            "trial number",
            "cv accuracy (mean over folds)",
            "best so far",
        ],
        PlotKind::LearningCurves => &["epoch", "cv accuracy (mean of folds", "#1 trial"],
        PlotKind::Pareto => &[
            "trainable parameters (log scale)",
            "cv accuracy",
            "Pareto front",
        ],
        PlotKind::Importance => &["importance (fANOVA main effect", "64-tree random forest"],
        PlotKind::Slice => &[
            "learning_rate",
            "activation",
            "value (log scale)",
            "cv accuracy",
        ],
    }
}

fn check_plots(plots: &Path) {
    for kind in PlotKind::ALL {
        let stem = kind.file_stem();
        let svg = std::fs::read_to_string(plots.join(format!("{stem}.svg")))
            .unwrap_or_else(|e| panic!("{stem}.svg: {e}"));
        let texts = svg_texts(&svg);
        assert!(
            has_text(&texts, kind.title()),
            "{stem}: no title in {texts:?}"
        );
        for want in expected_texts(kind) {
            assert!(has_text(&texts, want), "{stem}: no `{want}` in {texts:?}");
        }
        let png = std::fs::read(plots.join(format!("{stem}.png"))).unwrap();
        let (w, h) = svg_size(&svg);
        // PNGs are drawn at 1.5 times the SVG size.
        assert_eq!(
            png_size(&png),
            ((w * 3).div_ceil(2), (h * 3).div_ceil(2)),
            "{stem}"
        );
    }
}

#[test]
fn nas_search_writes_every_plot_as_svg_and_png() {
    check_plots(&study().join("tiny").join("plots"));
}

#[test]
fn nas_plot_writes_the_plots_of_a_finished_study_again() {
    let results = study().join("copy-for-plot");
    copy_study(&results);
    let plots = results.join("tiny").join("plots");
    assert!(!plots.exists());
    let out = nas(&[
        "plot",
        "--study",
        "tiny",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(listed.len(), 10, "{listed:?}");
    for path in &listed {
        assert!(Path::new(path).exists(), "{path} listed but missing");
    }
    check_plots(&plots);
}

#[test]
fn nas_plot_and_nas_report_refuse_a_study_that_does_not_exist() {
    for cmd in ["plot", "report"] {
        let out = nas(&[
            cmd,
            "--study",
            "nope",
            "--results",
            study().to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no study named `nope`"), "{cmd}: {err}");
    }
}

/// A copy of the shared study's journal under `results`, without its plots.
fn copy_study(results: &Path) {
    let _ = std::fs::remove_dir_all(results);
    let dir = results.join("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        study().join("tiny").join("journal.log"),
        dir.join("journal.log"),
    )
    .unwrap();
}

/// Runs `nas report` on a copy of the shared study and returns the page's path.
fn report_page(name: &str) -> PathBuf {
    let results = study().join(name);
    copy_study(&results);
    let out = nas(&[
        "report",
        "--study",
        "tiny",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = results.join("tiny").join("report.html");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.display().to_string()
    );
    path
}

#[test]
fn nas_report_writes_one_self_contained_page() {
    let html = std::fs::read_to_string(report_page("copy-for-report")).unwrap();
    for id in [
        "id=\"settings-table\"",
        "id=\"leaderboard-table\"",
        "id=\"layer-table\"",
        "id=\"plot-history\"",
        "id=\"plot-slice\"",
    ] {
        assert!(html.contains(id), "no {id}");
    }
    assert_eq!(html.matches("<svg").count(), PlotKind::ALL.len());
    // Nothing to fetch: no scripts, stylesheets, images or fonts from elsewhere.
    for bad in ["<script", "<link", "src=", "@import", "url(", "<img"] {
        assert!(!html.contains(bad), "the page holds `{bad}`");
    }
    let without_xmlns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_xmlns.contains("http://") && !without_xmlns.contains("https://"));
    // The settings the study records.
    for want in [
        "tiny.ron",
        "iris",
        "random",
        "fifo",
        "accuracy (higher is better)",
    ] {
        assert!(html.contains(want), "settings lack {want}");
    }
    // Five trials in the leaderboard, and the layer table adds up to the best trial's size.
    let board = section(&html, "id=\"leaderboard-table\"", "</table>");
    assert_eq!(board.matches("<tr class=").count(), 5);
    let layers = section(&html, "id=\"layer-table\"", "</table>");
    let total: usize = section(layers, "total</th><th class=\"num\">", "<")
        .parse()
        .unwrap();
    let storage = JournalStorage::open(&study().join("tiny")).unwrap();
    let best = best_trial(storage.trials(), Metric::Accuracy).unwrap();
    assert_eq!(
        total, best.params,
        "layer table total vs the best trial's record"
    );
    assert!(html.contains(&format!("Best trial: <b>{}</b>", best.number)));
    assert!(
        layers.contains(">output</td><td>Linear(units: 3)</td><td>3</td>"),
        "{layers}"
    );
}

/// The text from the first `start` on to the next `end` after it.
fn section<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start}")) + start.len();
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// Skips a test whose tool is missing, with a line on stderr, unless CI (or `require`, set by
/// hand) says the tool must be there: then the test fails instead of passing unnoticed.
fn skip(test: &str, require: &str, why: &str) {
    let required = [require, "CI"]
        .into_iter()
        .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")));
    if let Some(var) = required {
        panic!("{var} is set, and {why}");
    }
    // Straight to stderr: the test harness would swallow eprintln! of a passing test.
    let _ = std::io::stderr().write_all(
        format!("SKIPPED {test}: {why} (set {require}=1 to make this a failure)\n").as_bytes(),
    );
}

/// Chromium, where installed (`.ci/run` installs Debian's).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        skip(
            "the_report_renders_in_headless_chromium",
            "NAS_REQUIRE_CHROMIUM",
            "no chromium is installed (apt-get install chromium)",
        );
    }
    found
}

#[test]
fn the_report_renders_in_headless_chromium_with_its_table_and_plots() {
    let Some(browser) = chromium() else { return };
    let page = report_page("copy-for-chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    // The browser's own serialisation of what it built: tables with their rows, and the plots
    // as SVG elements with their text.
    let board = section(&dom, "<table id=\"leaderboard-table\">", "</table>");
    assert_eq!(board.matches("<tr class=").count(), 5, "{board}");
    assert!(dom.contains("<table id=\"layer-table\">"));
    assert_eq!(dom.matches("<svg ").count(), PlotKind::ALL.len());
    for kind in PlotKind::ALL {
        let fig = section(
            &dom,
            &format!("<figure id=\"plot-{}\"", kind.file_stem()),
            "</figure>",
        );
        assert!(fig.contains("<svg "), "{}", kind.file_stem());
        assert!(fig.contains(kind.title()), "{}", kind.file_stem());
    }
}

// ---- made-up studies: the plots' text, without training anything ----

fn space() -> SearchSpace {
    SearchSpace::from_str_named(IRIS, "made-up", "made-up.ron").unwrap()
}

/// `n` trials of the iris space whose score follows the learning rate, with a pruned and a
/// failed one when `mixed`.
fn made_up(n: usize, metric: Metric, mixed: bool) -> Vec<TrialRecord> {
    let space = space();
    let mut sampler = Strategy::Random.build(&space).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    (0..n)
        .map(|i| {
            let config: Config = sampler.suggest(&space, &[], &mut rng);
            let lr = match config["learning_rate"] {
                nas::space::ParamValue::Float(x) => x,
                _ => unreachable!(),
            };
            let score = 0.5 + 0.2 * lr.log10() + 0.3; // in [0.4, 0.6]
            let mut t = TrialRecord::new(i, config, i as u64);
            t.state = TrialState::Complete;
            t.cv_mean = Some(score);
            t.cv_std = Some(0.01);
            t.params = 40 + 10 * i;
            t.epochs = 3;
            t.intermediate = (1..=4)
                .map(|e| metric.to_loss(score * e as f64 / 4.0))
                .collect();
            if mixed && i == 1 {
                t.state = TrialState::Pruned;
                t.cv_mean = None;
            }
            if mixed && i == 2 {
                t.state = TrialState::Failed;
                t.cv_mean = None;
                t.intermediate.clear();
                t.error = Some("diverged".into());
            }
            t
        })
        .collect()
}

fn input<'a>(trials: &'a [TrialRecord], metric: Metric, space: &'a SearchSpace) -> PlotInput<'a> {
    PlotInput {
        study: "made-up",
        metric,
        objectives: &[],
        trials,
        space: Some(space),
        seed: 0,
    }
}

#[test]
fn pruned_and_failed_trials_are_marked_in_the_history() {
    let s = space();
    let trials = made_up(12, Metric::Accuracy, true);
    let texts =
        svg_texts(&plot::svg(PlotKind::History, &input(&trials, Metric::Accuracy, &s)).unwrap());
    for want in [
        "pruned trial (score when stopped)",
        "failed trial (no score)",
        "1 pruned",
        "1 failed",
    ] {
        assert!(has_text(&texts, want), "no `{want}` in {texts:?}");
    }
    let clean = made_up(12, Metric::Accuracy, false);
    let texts =
        svg_texts(&plot::svg(PlotKind::History, &input(&clean, Metric::Accuracy, &s)).unwrap());
    assert!(!has_text(&texts, "pruned trial"), "{texts:?}");
}

#[test]
fn a_regression_study_says_cv_rmse_and_lower_is_better_on_every_plot() {
    let s = space();
    let trials = made_up(10, Metric::Rmse, false);
    for kind in PlotKind::ALL {
        let texts = svg_texts(&plot::svg(kind, &input(&trials, Metric::Rmse, &s)).unwrap());
        assert!(has_text(&texts, "cv rmse"), "{kind:?}: {texts:?}");
        assert!(!has_text(&texts, "accuracy"), "{kind:?}: {texts:?}");
        if kind != PlotKind::Importance {
            assert!(has_text(&texts, "lower is better"), "{kind:?}: {texts:?}");
        }
    }
}

#[test]
fn a_study_without_complete_trials_still_gets_every_plot_with_a_note() {
    let s = space();
    for kind in PlotKind::ALL {
        let texts = svg_texts(&plot::svg(kind, &input(&[], Metric::Accuracy, &s)).unwrap());
        assert!(has_text(&texts, kind.title()), "{kind:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("no ") || t.starts_with("needs ")),
            "{kind:?}: {texts:?}"
        );
        // And its PNG renders.
        let svg = plot::svg(kind, &input(&[], Metric::Accuracy, &s)).unwrap();
        png_size(&plot::png_from_svg(&svg).unwrap());
    }
}

#[test]
fn the_importance_puts_first_the_parameter_that_sets_the_score() {
    let s = space();
    let trials = made_up(30, Metric::Accuracy, false);
    let imp = plot::importances(&input(&trials, Metric::Accuracy, &s));
    assert_eq!(
        imp.first().map(|p| p.0.as_str()),
        Some("learning_rate"),
        "{imp:?}"
    );
    assert!(imp[0].1 > 0.8, "{imp:?}");
    let total: f64 = imp.iter().map(|p| p.1).sum();
    assert!((total - 1.0).abs() < 1e-9, "{imp:?}");
    // Fixed parameters (optimizer, batch_size...) cannot matter and are not measured.
    assert!(
        imp.iter()
            .all(|p| p.0 != "optimizer" && p.0 != "batch_size"),
        "{imp:?}"
    );
}

#[test]
fn png_plots_have_their_text_drawn_when_a_system_font_exists() {
    if !plot::system_fonts_found() {
        skip(
            "png_plots_have_their_text_drawn",
            "NAS_REQUIRE_FONTS",
            "no system font was found, so PNG plots have no text (apt-get install fonts-dejavu-core)",
        );
        return;
    }
    let svg = |text: &str| {
        format!("<svg width=\"200\" height=\"60\" viewBox=\"0 0 200 60\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"40\" font-family=\"sans-serif\" font-size=\"24\">{text}</text></svg>")
    };
    let dark = |text: &str| {
        let png = plot::png_from_svg(&svg(text)).unwrap();
        let pixmap = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        pixmap.pixels().iter().filter(|p| p.red() < 128).count()
    };
    assert_eq!(dark(""), 0);
    assert!(dark("cv accuracy") > 100, "the text was not drawn");
}

#[test]
fn the_report_escapes_what_the_study_recorded() {
    let s = space();
    let trials = made_up(4, Metric::Accuracy, false);
    let meta = StudyMeta {
        name: "a<b>&\"c\"".into(),
        space_file: "x.ron".into(),
        space_source: format!("// <script>alert('x')</script>\n{IRIS}"),
        data: "iris".into(),
        task: s.task,
        metric: Metric::Accuracy,
        seed: 0,
        folds: 2,
        strategy: "random".into(),
        scheduler: "fifo".into(),
        objectives: Vec::new(),
    };
    let html = report::render(&Report {
        meta: &meta,
        trials: &trials,
        test: None,
        space: Some(&s),
        layers: Err("no <data>".into()),
    })
    .unwrap();
    assert!(!html.contains("<script"), "unescaped script");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("a&lt;b&gt;&amp;&quot;c&quot;"));
    assert!(!html.contains("a<b>"));
    assert!(html.contains("No layer table: no &lt;data&gt;"));
}

/// The same study scored by our fANOVA and by Optuna's (`FanovaImportanceEvaluator`, which needs
/// scikit-learn): the same order of the parameters that matter, each importance within 0.1 of
/// the mean of Optuna's over three seeds (its own spread from seed to seed is about 0.05).
#[test]
fn the_importances_agree_with_optunas_fanova() {
    let has = Command::new("python3")
        .args(["-c", "import optuna, sklearn"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        skip(
            "the_importances_agree_with_optunas_fanova",
            "NAS_REQUIRE_OPTUNA",
            "python3 cannot import optuna and sklearn (pip install optuna scikit-learn)",
        );
        return;
    }
    let s = space();
    let mut trials = made_up(40, Metric::Accuracy, false);
    // The score follows the learning rate, and the activation a little.
    for t in &mut trials {
        let lr = match t.config["learning_rate"] {
            nas::space::ParamValue::Float(x) => x,
            _ => unreachable!(),
        };
        let tanh = t.config["activation"] == nas::space::ParamValue::Cat(1);
        let score = 0.5 + 3.0 * lr + if tanh { 0.08 } else { 0.0 };
        t.cv_mean = Some(score);
        t.intermediate = vec![-score];
    }
    let dir = tempfile::tempdir().unwrap();
    let meta = StudyMeta {
        name: "imp".into(),
        space_file: "imp.ron".into(),
        space_source: IRIS.into(),
        data: "iris".into(),
        task: s.task,
        metric: Metric::Accuracy,
        seed: 0,
        folds: 2,
        strategy: "random".into(),
        scheduler: "fifo".into(),
        objectives: Vec::new(),
    };
    let mut storage = JournalStorage::open_or_create(dir.path(), meta).unwrap();
    for t in &trials {
        let n = storage.create_trial().unwrap();
        storage.set_params(n, t.config.clone(), t.seed).unwrap();
        storage.report(n, 1, t.intermediate[0]).unwrap();
        let mut rec = t.clone();
        rec.number = n;
        storage.finish_trial(rec).unwrap();
    }
    let ours = plot::importances(&input(storage.trials(), Metric::Accuracy, &s));
    let script = r#"
import json, sys, optuna
from optuna.storages import JournalStorage
try:
    from optuna.storages.journal import JournalFileBackend as Backend
except ImportError:
    from optuna.storages import JournalFileStorage as Backend
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="imp", storage=JournalStorage(Backend(sys.argv[1])))
runs = [get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=s)) for s in range(3)]
print(json.dumps({k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join("journal.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: std::collections::BTreeMap<String, f64> =
        serde_json::from_slice(&out.stdout).unwrap();
    for (name, v) in &ours {
        let t = theirs.get(name).copied().unwrap_or(0.0);
        assert!(
            (v - t).abs() < 0.1,
            "{name}: ours {v:.3}, Optuna {t:.3}\nours {ours:?}\nOptuna {theirs:?}"
        );
    }
    let top = |m: &[(String, f64)]| m.iter().take(2).map(|p| p.0.clone()).collect::<Vec<_>>();
    let mut theirs_sorted: Vec<(String, f64)> = theirs.into_iter().collect();
    theirs_sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(
        top(&ours),
        top(&theirs_sorted),
        "ours {ours:?}\nOptuna {theirs_sorted:?}"
    );
    eprintln!("ours {ours:?}\nOptuna {theirs_sorted:?}");
}
