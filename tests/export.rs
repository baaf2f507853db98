//! Integration tests of model export: a saved and reloaded model predicts bit for bit as the
//! in-memory one, broken model directories are refused by name, and the CLI round trip works.

use nas::controller::FinalModel;
use nas::data::{load_builtin, BuiltinName, DataSplit, Dataset, Standardizer};
use nas::export::{
    load_model, save_model, stored_tensors, ExportError, LoadedModel, Predictions, Provenance,
    ARCHITECTURE_FILE, METRICS_FILE, PREPROCESSING_FILE, PROVENANCE_FILE, WEIGHTS_FILE,
};
use nas::space::decode::AugmentSettings;
use nas::space::{
    Activation, Architecture, BlockKind, Candidate, CnnArch, Downsample, MlpArch, OptimizerKind,
    TrainSettings,
};
use nas::study::{Metric, TestResult, TrialRecord};
use nas::train::{evaluate, fit, predict};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn settings(epochs: usize) -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerKind::Adam,
        learning_rate: 1e-2,
        batch_size: 32,
        weight_decay: 1e-4,
        max_epochs: epochs,
        patience: 2,
        augment: AugmentSettings::default(),
    }
}

fn mlp(hidden: Vec<usize>, batch_norm: bool) -> Candidate {
    Candidate {
        arch: Architecture::Mlp(MlpArch {
            hidden,
            activation: Activation::Relu,
            dropout: 0.1,
            batch_norm,
        }),
        train: settings(3),
    }
}

fn cnn() -> Candidate {
    Candidate {
        arch: Architecture::Cnn(CnnArch {
            stages: 2,
            blocks_per_stage: 1,
            block: BlockKind::Residual,
            width: 4,
            growth_rate: 4,
            expansion: 1,
            kernel: 3,
            downsample: Downsample::MaxPool,
            activation: Activation::Relu,
            dropout: 0.0,
            batch_norm: true,
        }),
        train: settings(2),
    }
}

/// Trains `cand` briefly as `train_final` would: standardised on the training part, one test evaluation.
fn final_model(
    cand: Candidate,
    split: DataSplit,
    max_train: usize,
) -> (FinalModel, Dataset, Dataset) {
    let n = split.train.len().min(max_train);
    let train = split.train.subset(&(0..n).collect::<Vec<_>>());
    let test = split.test.expect("built-in data sets have a test split");
    let standardizer = Standardizer::fit(&train, Standardizer::per_channel_for(&train.shape));
    let mut train_std = train.clone();
    standardizer.apply(&mut train_std);
    let mut test_std = test.clone();
    standardizer.apply(&mut test_std);
    let epochs = cand.train.max_epochs;
    let (mut trained, dev) =
        fit(&cand, &train_std, epochs, 7, &AtomicBool::new(false)).expect("training succeeds");
    let out = predict(&mut trained.net, &dev, &test_std);
    let m = evaluate(&out, &test_std.targets, trained.target);
    let metric = Metric::for_task(train.task());
    let model = FinalModel {
        trained,
        dev,
        standardizer,
        candidate: cand,
        test: TestResult {
            trial: 3,
            metric,
            test_score: m.score,
            test_loss: m.loss,
            test_samples: test.len(),
            train_samples: train.len(),
            epochs,
            seconds: 0.0,
        },
    };
    (model, train, test)
}

fn record() -> TrialRecord {
    let mut r = TrialRecord::new(3, Default::default(), 11);
    r.cv_mean = Some(0.9);
    r.cv_std = Some(0.01);
    r.fold_scores = vec![0.89, 0.91];
    r.epochs = 3;
    r
}

fn provenance() -> Provenance {
    Provenance::new("unit", 3, 0, 11, "space.ron", "builtin", 2)
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

fn prediction_bits(p: &Predictions) -> Vec<u32> {
    match p {
        Predictions::Classes { rows, .. } => rows
            .iter()
            .flat_map(|r| {
                std::iter::once(r.class as u32).chain(r.probabilities.iter().map(|x| x.to_bits()))
            })
            .collect(),
        Predictions::Values(v) => bits(v),
    }
}

/// Saves, reloads, and checks outputs and predictions on the raw test set are bit-identical.
fn round_trip(cand: Candidate, split: DataSplit, max_train: usize, dir: &Path) -> LoadedModel {
    let (mut model, train, test) = final_model(cand, split, max_train);
    let mut test_std = test.clone();
    model.standardizer.apply(&mut test_std);
    let expected = predict(&mut model.trained.net, &model.dev, &test_std);
    let expected_state = model.trained.net.snapshot();
    save_model(dir, &mut model, &train, &record(), &provenance()).expect("model saves");

    let mut loaded = load_model(dir).expect("model loads");
    assert_eq!(loaded.preprocessing.standardizer, model.standardizer);
    assert_eq!(loaded.preprocessing.target_scale, model.trained.target);
    assert_eq!(loaded.spec.architecture, model.candidate.arch);
    assert_eq!(loaded.provenance.nas_version, env!("CARGO_PKG_VERSION"));
    // JSON keeps floats to within an ulp; the exact test is on the tensors and outputs below.
    let t = &loaded.metrics.test;
    assert_eq!(
        (t.trial, t.test_samples),
        (model.test.trial, model.test.test_samples)
    );
    assert!(
        (t.test_score - model.test.test_score).abs()
            <= 1e-12 * model.test.test_score.abs().max(1.0)
    );
    let got_state = loaded.net.snapshot();
    assert_eq!(got_state.len(), expected_state.len());
    for ((n1, v1), (n2, v2)) in got_state.iter().zip(&expected_state) {
        assert_eq!(n1, n2);
        assert_eq!(bits(v1), bits(v2), "tensor {n1} differs after reloading");
    }

    let got = loaded
        .outputs(&test.features.to_f32(), "test")
        .expect("outputs");
    assert_eq!(got.len(), expected.len());
    assert_eq!(bits(&got), bits(&expected), "raw outputs differ");
    let want = Predictions::from_outputs(&expected, &loaded.preprocessing);
    let have = loaded.predict(&test).expect("predicts");
    assert_eq!(have.len(), test.len());
    assert_eq!(prediction_bits(&have), prediction_bits(&want));
    loaded
}

#[test]
fn reloaded_mlp_predicts_bit_identically_to_the_in_memory_model() {
    let tmp = tempfile::tempdir().unwrap();
    let split = load_builtin(BuiltinName::Iris).unwrap();
    let mut loaded = round_trip(mlp(vec![16, 8], true), split, usize::MAX, tmp.path());
    let test = load_builtin(BuiltinName::Iris).unwrap().test.unwrap();
    match loaded.predict(&test).unwrap() {
        Predictions::Classes { class_names, rows } => {
            assert_eq!(class_names.len(), 3);
            for r in &rows {
                let sum: f32 = r.probabilities.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
                assert!(r.class < 3);
            }
        }
        other => panic!("expected classes, got {other:?}"),
    }
    let m = loaded.evaluate(&test).unwrap();
    assert!((m.score - loaded.metrics.test.test_score).abs() < 1e-12);
}

#[test]
fn reloaded_cnn_with_batch_norm_predicts_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let split = load_builtin(BuiltinName::Digits).unwrap();
    assert!(split.train.shape.is_image());
    let mut loaded = round_trip(cnn(), split, 300, tmp.path());
    // Training moved the running statistics away from their initial values, and they were restored.
    let mut moved = false;
    loaded.net.visit_state(&mut |_, s| {
        moved |=
            s.running_mean.iter().any(|m| *m != 0.0) || s.running_var.iter().any(|v| *v != 1.0);
    });
    assert!(moved, "running statistics were not exercised");
    let names = stored_tensors(&tmp.path().join(WEIGHTS_FILE)).unwrap();
    assert!(names
        .keys()
        .any(|k| k.contains(".shortcut.") && k.ends_with("running_var")));
}

/// A network of the architecture language, decoded from `cells.ron`: a cell with its chosen ops,
/// a residual reduction with a projection, and batch norms.
fn cell_network() -> Candidate {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/cells.ron");
    let space = nas::space::SearchSpace::from_file(&path).unwrap();
    let mut config = nas::space::Config::new();
    for p in &space.params {
        // The first choice or the low end everywhere, except every edge of cell 1 a conv3x3.
        let v = match &p.dist {
            nas::space::Distribution::Categorical { choices }
                if p.name.starts_with("cell1.edge") =>
            {
                let i = choices
                    .iter()
                    .position(|c| c.to_string() == "conv3x3")
                    .unwrap();
                nas::space::ParamValue::Cat(i)
            }
            nas::space::Distribution::Categorical { .. } => nas::space::ParamValue::Cat(0),
            nas::space::Distribution::Int { low, .. } => nas::space::ParamValue::Int(*low),
            nas::space::Distribution::Float { low, .. } => nas::space::ParamValue::Float(*low),
        };
        if p.is_active(&config) {
            config.insert(p.name.clone(), v);
        }
    }
    space.validate_config(&config).unwrap();
    let mut cand = space.decode(&config);
    cand.train = settings(2);
    cand
}

#[test]
fn reloaded_network_of_the_architecture_language_predicts_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let split = load_builtin(BuiltinName::Digits).unwrap();
    let cand = cell_network();
    assert!(matches!(cand.arch, Architecture::Net(_)));
    round_trip(cand, split, 300, tmp.path());
    let names = stored_tensors(&tmp.path().join(WEIGHTS_FILE)).unwrap();
    assert!(names.keys().any(|k| k.contains(".edge0_1.")), "{names:?}");
    assert!(names.keys().any(|k| k.contains(".shortcut.")), "{names:?}");
}

#[test]
fn reloaded_regression_model_returns_values_in_target_units() {
    let tmp = tempfile::tempdir().unwrap();
    let split = load_builtin(BuiltinName::Diabetes).unwrap();
    let mut loaded = round_trip(mlp(vec![8], false), split, usize::MAX, tmp.path());
    let test = load_builtin(BuiltinName::Diabetes).unwrap().test.unwrap();
    let Predictions::Values(v) = loaded.predict(&test).unwrap() else {
        panic!("expected values");
    };
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    // Diabetes progression is in the tens to hundreds; standardised outputs would be near 0.
    assert!(mean > 20.0, "mean prediction {mean} is not in target units");
}

fn saved_iris(dir: &Path) {
    let split = load_builtin(BuiltinName::Iris).unwrap();
    let (mut model, train, _) = final_model(mlp(vec![8], true), split, usize::MAX);
    save_model(dir, &mut model, &train, &record(), &provenance()).unwrap();
}

/// Rewrites the weights file after `edit` changed its (name, shape, values) list.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data().to_vec();
            let n = data.len() / 4;
            let shape = stored_tensors(&path).unwrap()[&name].clone();
            assert_eq!(shape.iter().product::<usize>(), n);
            (name, shape, data)
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let blob = safetensors::serialize(views, &None).unwrap();
    std::fs::write(&path, blob).unwrap();
}

fn load_error(dir: &Path) -> String {
    match load_model(dir) {
        Ok(_) => panic!("{} was accepted", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_tensor_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    saved_iris(tmp.path());
    rewrite_weights(tmp.path(), |t| t.retain(|(n, _, _)| n != "layers.0.weight"));
    let msg = load_error(tmp.path());
    assert!(
        msg.contains(WEIGHTS_FILE) && msg.contains("missing tensor `layers.0.weight`"),
        "{msg}"
    );
}

#[test]
fn a_missing_running_statistic_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    saved_iris(tmp.path());
    rewrite_weights(tmp.path(), |t| {
        t.retain(|(n, _, _)| n != "layers.1.running_var")
    });
    let msg = load_error(tmp.path());
    assert!(
        msg.contains("missing tensor `layers.1.running_var`"),
        "{msg}"
    );
}

#[test]
fn a_wrong_shaped_tensor_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    saved_iris(tmp.path());
    rewrite_weights(tmp.path(), |t| {
        for (n, s, d) in t.iter_mut() {
            if n == "layers.0.bias" {
                s[0] += 1;
                d.extend_from_slice(&0f32.to_le_bytes());
            }
        }
    });
    let msg = load_error(tmp.path());
    assert!(
        msg.contains(WEIGHTS_FILE) && msg.contains("`layers.0.bias` has shape [9]"),
        "{msg}"
    );

    let tmp = tempfile::tempdir().unwrap();
    saved_iris(tmp.path());
    rewrite_weights(tmp.path(), |t| {
        for (n, s, _) in t.iter_mut() {
            if n == "layers.0.weight" {
                s.swap(0, 1);
            }
        }
    });
    let msg = load_error(tmp.path());
    assert!(msg.contains("`layers.0.weight` has shape [8, 4]"), "{msg}");
}

#[test]
fn an_unexpected_tensor_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    saved_iris(tmp.path());
    rewrite_weights(tmp.path(), |t| {
        t.push((
            "layers.9.weight".into(),
            vec![1],
            1f32.to_le_bytes().to_vec(),
        ))
    });
    let msg = load_error(tmp.path());
    assert!(msg.contains("unexpected tensor `layers.9.weight`"), "{msg}");
}

#[test]
fn a_missing_file_is_refused_by_name() {
    for file in [
        ARCHITECTURE_FILE,
        WEIGHTS_FILE,
        PREPROCESSING_FILE,
        METRICS_FILE,
        PROVENANCE_FILE,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        saved_iris(tmp.path());
        std::fs::remove_file(tmp.path().join(file)).unwrap();
        let msg = load_error(tmp.path());
        assert!(msg.contains(file) && msg.contains("missing file"), "{msg}");
    }
}

#[test]
fn preprocessing_that_disagrees_with_the_architecture_is_refused() {
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let tmp = tempfile::tempdir().unwrap();
        saved_iris(tmp.path());
        let path = tmp.path().join(PREPROCESSING_FILE);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
        load_error(tmp.path())
    };
    let msg = edit(&|v| {
        v["standardizer"]["mean"].as_array_mut().unwrap().pop();
    });
    assert!(
        msg.contains(PREPROCESSING_FILE) && msg.contains("3 means") && msg.contains("4 features"),
        "{msg}"
    );
    let msg = edit(&|v| v["input_shape"]["width"] = 5.into());
    assert!(
        msg.contains(PREPROCESSING_FILE) && msg.contains("input shape 1x1x5"),
        "{msg}"
    );
    let msg = edit(&|v| {
        v["class_names"].as_array_mut().unwrap().pop();
    });
    assert!(msg.contains("2 class names"), "{msg}");
}

#[test]
fn predicting_rows_of_the_wrong_width_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    saved_iris(tmp.path());
    let mut loaded = load_model(tmp.path()).unwrap();
    let err = loaded
        .predict_features(&[1.0, 2.0, 3.0], "three.csv")
        .unwrap_err();
    assert!(
        matches!(err, ExportError::FeatureMismatch { expected: 4, .. }),
        "{err}"
    );
}

fn nas(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("the nas binary runs")
}

fn check(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "nas failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nas search` of `trials` trials of the space file `space` into `results`, study `study`: 2
/// folds, one worker, no final retraining.
fn search_study(space: &str, trials: &str, results: &str, study: &str) {
    check(&nas(&[
        "search",
        "--space",
        space,
        "--trials",
        trials,
        "--folds",
        "2",
        "--results",
        results,
        "--study",
        study,
        "--workers",
        "1",
        "--quiet",
        "--no-final",
    ]));
}

const TINY_SPACE: &str = r#"(
    task: Classification,
    data: "iris",
    model: Mlp((
        depth: Fixed(1),
        width: Choice([8, 12]),
        activation: Fixed(Relu),
        dropout: Fixed(0.0),
        batch_norm: Fixed(true),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: Fixed(0.02),
        batch_size: Fixed(16),
        weight_decay: Fixed(0.0001),
        max_epochs: Fixed(3),
        patience: Fixed(2),
    ),
)
"#;

/// An MLP reads images standardised per channel (one mean and deviation over all pixels), as a
/// CNN does and as the peer's `search.py` does for images; per pixel, digits' border pixels,
/// zero in nearly every image, were blown up wherever they were not. Tabular data (iris) keeps
/// one statistic per feature. Checked on the model a search exports, the statistics it saves.
#[test]
fn an_mlp_on_images_is_standardised_per_channel_and_tabular_data_per_feature() {
    for (data, per_channel, stats) in [("digits", true, 1), ("iris", false, 4)] {
        let tmp = tempfile::tempdir().unwrap();
        let p = |s: &str| tmp.path().join(s).display().to_string();
        let space = TINY_SPACE
            .replace("data: \"iris\"", &format!("data: \"{data}\""))
            .replace("max_epochs: Fixed(3)", "max_epochs: Fixed(1)");
        std::fs::write(p("tiny.ron"), space).unwrap();
        let results = p("results");
        search_study(&p("tiny.ron"), "1", &results, "s");
        let model = p("model");
        check(&nas(&[
            "export",
            "--results",
            &results,
            "--study",
            "s",
            "--out",
            &model,
        ]));
        let s = load_model(Path::new(&model))
            .unwrap()
            .preprocessing
            .standardizer;
        assert_eq!(s.per_channel, per_channel, "{data}");
        assert_eq!((s.mean.len(), s.std.len()), (stats, stats), "{data}");
    }
}

#[test]
fn cli_exports_a_study_then_predicts_and_evaluates_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).display().to_string();
    std::fs::write(p("tiny.ron"), TINY_SPACE).unwrap();
    let results = p("results");
    search_study(&p("tiny.ron"), "2", &results, "tiny");
    let model = p("model");
    let out = nas(&[
        "export",
        "--results",
        &results,
        "--study",
        "tiny",
        "--out",
        &model,
    ]);
    check(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("test"));
    for f in [
        ARCHITECTURE_FILE,
        WEIGHTS_FILE,
        PREPROCESSING_FILE,
        METRICS_FILE,
        PROVENANCE_FILE,
    ] {
        assert!(
            tmp.path().join("model").join(f).is_file(),
            "{f} not written"
        );
    }
    let loaded = load_model(Path::new(&model)).unwrap();
    assert_eq!(loaded.provenance.study, "tiny");

    // Features only, then the same rows with a label column, which is ignored.
    let test = load_builtin(BuiltinName::Iris).unwrap().test.unwrap();
    let mut features_only = String::from("a,b,c,d\n");
    let mut labelled = String::from("a,b,label,c,d\n");
    for i in 0..test.len() {
        let x: Vec<String> = test.sample(i).iter().map(|v| v.to_string()).collect();
        features_only.push_str(&format!("{}\n", x.join(",")));
        labelled.push_str(&format!(
            "{},{},{},{},{}\n",
            x[0], x[1], test.class_names[0], x[2], x[3]
        ));
    }
    std::fs::write(p("features.csv"), features_only).unwrap();
    std::fs::write(p("labelled.csv"), labelled).unwrap();
    check(&nas(&[
        "predict",
        "--model",
        &model,
        "--data",
        &p("features.csv"),
        "--out",
        &p("pred.csv"),
    ]));
    let pred = std::fs::read_to_string(p("pred.csv")).unwrap();
    let lines: Vec<&str> = pred.lines().collect();
    assert_eq!(
        lines.len(),
        test.len() + 1,
        "one header line and one line per row"
    );
    assert_eq!(
        lines[0],
        "row,class,prob_setosa,prob_versicolor,prob_virginica"
    );
    assert!(lines[1].starts_with("0,"));
    let out = nas(&["predict", "--model", &model, "--data", &p("labelled.csv")]);
    check(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        pred,
        "stdout differs from --out"
    );

    let out = nas(&["evaluate", "--model", &model, "--data", "iris"]);
    check(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("accuracy") && text.contains("n 30"), "{text}");

    std::fs::write(p("narrow.csv"), "a,b,c\n1,2,3\n").unwrap();
    let out = nas(&["predict", "--model", &model, "--data", &p("narrow.csv")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("3 features per sample, but the model takes 4"));
    std::fs::remove_file(tmp.path().join("model").join(WEIGHTS_FILE)).unwrap();
    let out = nas(&["predict", "--model", &model, "--data", &p("features.csv")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(WEIGHTS_FILE));
}

/// Evaluation runs in chunks whose size follows the network's widest layer; a sample's output
/// must not depend on which chunk it is in (batch norm uses its running statistics), so the
/// outputs of the whole test set at once equal those of each sample alone, bit for bit.
#[test]
fn evaluation_outputs_do_not_depend_on_the_chunk_a_sample_is_in() {
    for cand in [cnn(), mlp(vec![16, 8], true)] {
        let split = load_builtin(BuiltinName::Digits).expect("digits");
        let (mut model, _, test) = final_model(cand, split, 300);
        let mut test_std = test.subset(&(0..40).collect::<Vec<_>>());
        model.standardizer.apply(&mut test_std);
        let k = model.trained.net.n_outputs;
        let together = predict(&mut model.trained.net, &model.dev, &test_std);
        assert_eq!(together.len(), 40 * k);
        for i in 0..40 {
            let alone = predict(&mut model.trained.net, &model.dev, &test_std.subset(&[i]));
            assert_eq!(
                bits(&alone),
                bits(&together[i * k..(i + 1) * k]),
                "sample {i}"
            );
        }
    }
}
