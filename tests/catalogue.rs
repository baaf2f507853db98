//! The catalogue of bad inputs: each case runs the `nas` binary on one mistake and checks the
//! project's rule for bad input: exit code 2, one line on stderr that names the file (with its
//! position) or the flag and the problem, and nothing written or changed on disk. Each case pins
//! its exact message, and the README's "Errors you may see" section must show the ones marked.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// One bad input: what to put in a fresh directory, the command to run there, and the message
/// (after `nas: error: `) it must print. Paths are relative to that directory, so the messages
/// read as a user would see them and can be quoted in the README as they are.
struct Case {
    name: &'static str,
    setup: fn(&Path),
    args: &'static [&'static str],
    message: &'static str,
    /// Whether the README quotes this message (one entry per kind of error, not every variant).
    readme: bool,
}

const SPACE: &str = "(
    task: Classification,
    model: Mlp((
        depth: Fixed(1),
        width: Fixed(8),
    )),
    train: (
        learning_rate: Fixed(0.01),
        batch_size: Fixed(16),
        max_epochs: Fixed(2),
        patience: Fixed(1),
    ),
)
";

/// A space in the architecture language, one shared kernel.
const NET: &str = "(
    task: Classification,
    params: {\"k\": Choice([3, 5])},
    model: Sequential([Conv(channels: 4, kernel: Param(\"k\")), GlobalAvgPool]),
    train: (max_epochs: Fixed(2), patience: Fixed(1)),
)
";

/// The flags every search case shares: the smallest search that runs at all.
const TINY: [&str; 6] = ["--trials", "1", "--folds", "2", "--workers", "1"];

/// 40 rows, 3 features, two balanced classes: small enough to train in milliseconds.
fn csv_text(features: usize, label: impl Fn(usize) -> usize) -> String {
    let names: Vec<String> = (0..features).map(|j| format!("x{j}")).collect();
    let mut text = format!("{},label\n", names.join(","));
    for i in 0..40 {
        let y = label(i);
        let row: Vec<String> = (0..features)
            .map(|j| format!("{:.3}", ((i * 7 + j * 13) % 10) as f32 / 10.0 + y as f32))
            .collect();
        text.push_str(&format!("{},{y}\n", row.join(",")));
    }
    text
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

/// A space file and a CSV that `nas search` accepts; cases then spoil one of them.
fn good(dir: &Path) {
    write(dir, "my.ron", SPACE);
    write(dir, "my.csv", csv_text(3, |i| i % 2));
}

fn space(dir: &Path, text: impl AsRef<[u8]>) {
    good(dir);
    write(dir, "my.ron", text);
}

fn data(dir: &Path, text: impl AsRef<[u8]>) {
    good(dir);
    write(dir, "my.csv", text);
}

/// Replaces line `n` (1-based) of `text`.
fn with_line(text: &str, n: usize, line: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[n - 1] = line;
    lines.join("\n") + "\n"
}

/// An MNIST-style IDX directory of 40 4x4 images and their labels.
fn idx(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    good(dir);
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 40, 0, 0, 0, 4, 0, 0, 0, 4];
    images.extend((0..40 * 16).map(|i| (i * 37 % 256) as u8));
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 40];
    labels.extend((0..40).map(|i| (i % 2) as u8));
    (images, labels)
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run nas")
}

/// A finished two-trial study of `my.ron` on `my.csv`, under `results/my/`.
fn study(dir: &Path) {
    good(dir);
    let out = run_in(
        dir,
        &[
            "search", "--space", "my.ron", "--data", "my.csv", "--trials", "2",
        ]
        .into_iter()
        .chain(["--folds", "2", "--workers", "1", "--no-final", "--quiet"])
        .collect::<Vec<_>>(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The study with a line of garbage in the middle of its journal, as a hand edit might leave it.
fn garbled_study(dir: &Path) {
    study(dir);
    let path = dir.join("results/my/journal.log");
    let text = fs::read_to_string(&path).unwrap();
    write(
        dir,
        "results/my/journal.log",
        with_line(&text, 5, "this is not json"),
    );
}

/// The files of a model exported from the tiny study, made once for every model case.
fn exported_model() -> &'static BTreeMap<String, Vec<u8>> {
    static MODEL: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        study(tmp.path());
        let out = run_in(tmp.path(), &["export", "--study", "my", "--out", "model"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::read_dir(tmp.path().join("model"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, fs::read(e.path()).unwrap())
            })
            .collect()
    })
}

/// `model/` (the shared export) and `my.csv` to predict on.
fn model(dir: &Path) {
    good(dir);
    for (name, bytes) in exported_model() {
        write(dir, &format!("model/{name}"), bytes);
    }
}

/// Rewrites `model/weights.safetensors` with the safetensors crate after `edit` changes its
/// tensors (name, shape, little-endian bytes), keeping the file's metadata.
/// A tensor of a weights file: name, shape, little-endian bytes.
type Tensor = (String, Vec<usize>, Vec<u8>);

fn edit_weights(dir: &Path, edit: fn(&mut Vec<Tensor>)) {
    model(dir);
    let path = dir.join("model/weights.safetensors");
    let bytes = fs::read(&path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<Tensor> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    tensors.sort();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    fs::write(
        &path,
        safetensors::serialize(views, meta.metadata()).unwrap(),
    )
    .unwrap();
}

fn cases() -> Vec<Case> {
    vec![
        // ---- space files ----
        Case {
            name: "space file with a syntax error",
            setup: |d| space(d, "(\n    task: Classification,\n    model: Mlp((depth: Fixed(1)\n"),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:4:1: unexpected end of RON",
            readme: true,
        },
        Case {
            name: "space file with a misspelt field",
            setup: |d| space(d, SPACE.replace("width:", "widht:")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:5:14: unknown field `widht`; expected one of `depth`, `width`, `per_layer_width`, `activation`, `dropout`, `batch_norm`",
            readme: true,
        },
        Case {
            name: "space file with an empty range",
            setup: |d| space(d, SPACE.replace("depth: Fixed(1)", "depth: Range(5, 1)")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:4:9: `depth`: empty range: low 5 is above high 1",
            readme: true,
        },
        Case {
            name: "space file with a value of the wrong type",
            setup: |d| space(d, SPACE.replace("width: Fixed(8)", "width: Fixed(\"wide\")")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:5:22: `width`: expected integer",
            readme: true,
        },
        Case {
            name: "space file that is not UTF-8",
            setup: |d| space(d, b"(\n    task: Classif\xff\xfeication,\n)\n"),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:2:18: not valid UTF-8 text (save the file as UTF-8)",
            readme: true,
        },
        Case {
            name: "empty space file",
            setup: |d| space(d, ""),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:1:1: the file is empty; a search space is a RON struct `(task: .., model: .., train: ..)`",
            readme: true,
        },
        Case {
            name: "architecture language: an unknown part",
            setup: |d| space(d, NET.replace("Conv(", "Convolution(")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:4:24: unknown part `Convolution`; the parts are Linear, Conv, SeparableConv, Pool, Downsample, GlobalAvgPool, BatchNorm, Dropout, Act, Identity, Zero, Sequential, Repeat, OneOf, Residual, Dense, Cell, Named",
            readme: true,
        },
        Case {
            name: "architecture language: a shared parameter that is not declared",
            setup: |d| space(d, NET.replace("Param(\"k\")", "Param(\"kernel\")")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:4:56: no parameter `kernel` in `params: {..}` (it has `k`)",
            readme: true,
        },
        Case {
            name: "architecture language: an even kernel",
            setup: |d| space(d, NET.replace("Choice([3, 5])", "Choice([3, 4])")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:3:30: `kernel`: kernel size 4 must be an odd number >= 1 (\"same\" padding) (as used at line 4, column 50)",
            readme: false,
        },
        Case {
            name: "architecture language: free parameters but no model to search",
            setup: |d| space(d, "(\n    task: Classification,\n    params: {\"x\": Range(0.0, 1.0)},\n)\n"),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.ron:3:5: the file has `params` but no `model`: free parameters are for an objective of your own (the Rust API, nas::study::Study); `nas search` needs a `model`",
            readme: false,
        },
        Case {
            name: "missing space file",
            setup: good,
            args: &["search", "--space", "missing.ron", "--data", "my.csv"],
            message: "missing.ron: cannot read the search space: No such file or directory (os error 2)",
            readme: true,
        },
        Case {
            name: "a directory given as the space file",
            setup: |d| {
                good(d);
                fs::create_dir(d.join("spaces")).unwrap();
            },
            args: &["search", "--space", "spaces", "--data", "my.csv"],
            message: "spaces: cannot read the search space: Is a directory (os error 21)",
            readme: false,
        },
        Case {
            name: "grid search on a continuous space",
            setup: |d| space(d, SPACE.replace("Fixed(0.01)", "LogRange(0.001, 0.1)")),
            args: &["search", "--space", "my.ron", "--data", "my.csv", "--strategy", "grid"],
            message: "my.ron:8:9: grid search needs discrete parameters, but `learning_rate` is a continuous range [0.001, 0.1]; write it as Choice([..]) or Fixed(..), or use another strategy",
            readme: true,
        },
        // ---- data files ----
        Case {
            name: "CSV with a non-numeric cell",
            setup: |d| data(d, with_line(&csv_text(3, |i| i % 2), 5, "0.1,abc,0.3,1")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.csv: row 5, column 2 (`x1`): `abc` is not a number",
            readme: true,
        },
        Case {
            name: "CSV with a ragged row",
            setup: |d| data(d, with_line(&csv_text(3, |i| i % 2), 5, "0.1,0.3,1")),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.csv: row 5 has 3 fields but the header has 4",
            readme: true,
        },
        Case {
            name: "CSV without a label column",
            setup: |d| data(d, csv_text(3, |i| i % 2).replacen("label", "klass", 1)),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.csv: no `label` or `target` column (columns are: x0, x1, x2, klass)",
            readme: true,
        },
        Case {
            name: "CSV with a header only",
            setup: |d| data(d, "x0,x1,x2,label\n"),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.csv: the data set is empty",
            readme: true,
        },
        Case {
            name: "CSV of zero bytes",
            setup: |d| data(d, ""),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.csv: the data set is empty",
            readme: false,
        },
        Case {
            name: "classification CSV with one class",
            setup: |d| data(d, csv_text(3, |_| 1)),
            args: &["search", "--space", "my.ron", "--data", "my.csv"],
            message: "my.csv: every sample is of class `1`; classification needs at least two classes (is this a regression target?)",
            readme: true,
        },
        Case {
            name: "fewer samples than folds",
            setup: |d| data(d, "x0,x1,x2,label\n0,0,0,0\n1,1,1,1\n0,1,0,0\n1,0,1,1\n"),
            args: &["search", "--space", "my.ron", "--data", "my.csv", "--folds", "5"],
            message: "my.csv: cannot make 5 folds from 4 samples (need 1 <= k <= n)",
            readme: true,
        },
        Case {
            name: "truncated IDX file",
            setup: |d| {
                let (images, labels) = idx(d);
                write(d, "mnist/train-images-idx3-ubyte", &images[..300]);
                write(d, "mnist/train-labels-idx1-ubyte", labels);
            },
            args: &["search", "--space", "my.ron", "--data", "mnist"],
            message: "mnist/train-images-idx3-ubyte: truncated file: expected 656 bytes, found 300",
            readme: true,
        },
        Case {
            name: "IDX file with a bad magic number",
            setup: |d| {
                let (images, mut labels) = idx(d);
                labels[..4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
                write(d, "mnist/train-images-idx3-ubyte", images);
                write(d, "mnist/train-labels-idx1-ubyte", labels);
            },
            args: &["search", "--space", "my.ron", "--data", "mnist"],
            message: "mnist/train-labels-idx1-ubyte: wrong magic number: expected 0x00000801, found 0x12345678",
            readme: true,
        },
        Case {
            name: "missing data path",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv"],
            message: "missing.csv: no such file or directory",
            readme: true,
        },
        Case {
            name: "test set with another number of features",
            setup: |d| {
                good(d);
                write(d, "test.csv", csv_text(2, |i| i % 2));
            },
            args: &["search", "--space", "my.ron", "--data", "my.csv", "--test-data", "test.csv"],
            message: "test.csv: 2 features per sample, but the training data have 3",
            readme: true,
        },
        // ---- flags: checked before any data is read, so a missing data path loses to them ----
        Case {
            name: "--folds 0",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--folds", "0"],
            message: "--folds must be at least 1",
            readme: true,
        },
        Case {
            name: "--workers 0",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--workers", "0"],
            message: "--workers must be at least 1",
            readme: false,
        },
        Case {
            name: "--trials 0",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--trials", "0"],
            message: "--trials must be at least 1",
            readme: false,
        },
        Case {
            name: "a bad --time-budget",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--time-budget", "10x"],
            message: "--time-budget: unknown unit `x` in `10x` (use s, m or h)",
            readme: true,
        },
        Case {
            name: "an unknown --strategy",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--strategy", "bogus"],
            message: "--strategy: unknown search strategy `bogus` (expected random, grid, evolution, tpe, nsga2 or motpe)",
            readme: true,
        },
        Case {
            name: "an unknown --scheduler",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--scheduler", "bogus"],
            message: "--scheduler: unknown scheduler `bogus` (expected fifo, asha or hyperband)",
            readme: false,
        },
        Case {
            name: "a flag value that is not a number",
            setup: good,
            args: &["search", "--space", "my.ron", "--data", "missing.csv", "--trials", "many"],
            message: "invalid value 'many' for '--trials <TRIALS>': invalid digit found in string (try --help)",
            readme: true,
        },
        // ---- results ----
        Case {
            name: "results directory under a regular file",
            setup: |d| {
                good(d);
                write(d, "somefile", "not a directory");
            },
            args: &["search", "--space", "my.ron", "--data", "my.csv", "--results", "somefile/results"],
            message: "cannot create somefile/results: somefile is not a directory",
            readme: true,
        },
        Case {
            name: "results directory that is a regular file",
            setup: |d| {
                good(d);
                write(d, "somefile", "not a directory");
            },
            args: &["search", "--space", "my.ron", "--data", "my.csv", "--results", "somefile"],
            message: "cannot create somefile: somefile is not a directory",
            readme: false,
        },
        // ---- journal ----
        Case {
            name: "leaderboard of a journal with a garbage line",
            setup: garbled_study,
            args: &["leaderboard", "--study", "my"],
            message: "results/my/journal.log:5: cannot read the journal: not JSON at column 2 (expected ident)",
            readme: true,
        },
        Case {
            name: "search on a journal with a garbage line",
            setup: garbled_study,
            args: &["search", "--space", "my.ron", "--data", "my.csv", "--trials", "3"],
            message: "results/my/journal.log:5: cannot read the journal: not JSON at column 2 (expected ident)",
            readme: false,
        },
        Case {
            name: "export of a journal with a garbage line",
            setup: garbled_study,
            args: &["export", "--study", "my", "--out", "model"],
            message: "results/my/journal.log:5: cannot read the journal: not JSON at column 2 (expected ident)",
            readme: false,
        },
        Case {
            name: "export when the study's data file is gone",
            setup: |d| {
                study(d);
                fs::remove_file(d.join("my.csv")).unwrap();
            },
            args: &["export", "--study", "my", "--out", "model"],
            message: "my.csv: no such file or directory",
            readme: false,
        },
        Case {
            name: "export to a directory under a regular file",
            setup: |d| {
                study(d);
                write(d, "somefile", "not a directory");
            },
            args: &["export", "--study", "my", "--out", "somefile/model"],
            message: "cannot create somefile/model: somefile is not a directory",
            readme: false,
        },
        // ---- model directories ----
        Case {
            name: "model without weights.safetensors",
            setup: |d| {
                model(d);
                fs::remove_file(d.join("model/weights.safetensors")).unwrap();
            },
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "p.csv"],
            message: "model/weights.safetensors: missing file; an exported model directory holds architecture.ron, weights.safetensors, preprocessing.json, metrics.json, provenance.json",
            readme: true,
        },
        Case {
            name: "model with a tensor missing",
            setup: |d| edit_weights(d, |t| t.retain(|(name, _, _)| name != "layers.2.bias")),
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "p.csv"],
            message: "model/weights.safetensors: missing tensor `layers.2.bias` (the architecture needs shape [2])",
            readme: true,
        },
        Case {
            name: "model with a tensor of the wrong shape",
            setup: |d| {
                edit_weights(d, |t| {
                    let w = t.iter_mut().find(|(name, _, _)| name == "layers.0.weight").unwrap();
                    w.1.reverse();
                })
            },
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "p.csv"],
            message: "model/weights.safetensors: tensor `layers.0.weight` has shape [8, 3], but the architecture needs [3, 8]",
            readme: true,
        },
        Case {
            name: "evaluate a model with a tensor of the wrong shape",
            setup: |d| {
                edit_weights(d, |t| {
                    let w = t.iter_mut().find(|(name, _, _)| name == "layers.0.weight").unwrap();
                    w.1.reverse();
                })
            },
            args: &["evaluate", "--model", "model", "--data", "my.csv"],
            message: "model/weights.safetensors: tensor `layers.0.weight` has shape [8, 3], but the architecture needs [3, 8]",
            readme: false,
        },
        Case {
            name: "model with a weights file that is not safetensors",
            setup: |d| {
                model(d);
                write(d, "model/weights.safetensors", "not tensors");
            },
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "p.csv"],
            message: "model/weights.safetensors: cannot parse: not a safetensors file (HeaderTooLarge)",
            readme: false,
        },
        Case {
            name: "model without architecture.ron",
            setup: |d| {
                model(d);
                fs::remove_file(d.join("model/architecture.ron")).unwrap();
            },
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "p.csv"],
            message: "model/architecture.ron: missing file; an exported model directory holds architecture.ron, weights.safetensors, preprocessing.json, metrics.json, provenance.json",
            readme: false,
        },
        Case {
            name: "model with a corrupt architecture.ron",
            setup: |d| {
                model(d);
                write(d, "model/architecture.ron", "(format: 1, architecture: Mlp((\n");
            },
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "p.csv"],
            message: "model/architecture.ron:2:1: cannot parse: Unexpected end of RON",
            readme: true,
        },
        Case {
            name: "model without preprocessing.json",
            setup: |d| {
                model(d);
                fs::remove_file(d.join("model/preprocessing.json")).unwrap();
            },
            args: &["evaluate", "--model", "model", "--data", "my.csv"],
            message: "model/preprocessing.json: missing file; an exported model directory holds architecture.ron, weights.safetensors, preprocessing.json, metrics.json, provenance.json",
            readme: false,
        },
        Case {
            name: "model with a corrupt preprocessing.json",
            setup: |d| {
                model(d);
                write(d, "model/preprocessing.json", "{\"format\": 1, \"task\": \n");
            },
            args: &["evaluate", "--model", "model", "--data", "my.csv"],
            message: "model/preprocessing.json:2:0: cannot parse: EOF while parsing a value",
            readme: true,
        },
        Case {
            name: "missing model directory",
            setup: good,
            args: &["predict", "--model", "nomodel", "--data", "my.csv"],
            message: "nomodel: not a model directory (`nas export --out DIR` writes one)",
            readme: true,
        },
        Case {
            name: "predict on data with another number of features",
            setup: |d| {
                model(d);
                write(d, "new.csv", csv_text(2, |i| i % 2));
            },
            args: &["predict", "--model", "model", "--data", "new.csv", "--out", "p.csv"],
            message: "new.csv: 2 features per sample, but the model takes 3",
            readme: true,
        },
        Case {
            name: "evaluate on data with another number of features",
            setup: |d| {
                model(d);
                write(d, "new.csv", csv_text(2, |i| i % 2));
            },
            args: &["evaluate", "--model", "model", "--data", "new.csv"],
            message: "new.csv: 2 features per sample, but the model takes 3",
            readme: false,
        },
        Case {
            name: "predict on a CSV that is not UTF-8",
            setup: |d| {
                model(d);
                write(d, "new.csv", b"x0,x1,x2\n0.1,0.2,0.3\n0.1,\xff,0.3\n");
            },
            args: &["predict", "--model", "model", "--data", "new.csv", "--out", "p.csv"],
            message: "new.csv: row 3, column 2: not valid UTF-8 text (save the file as UTF-8)",
            readme: false,
        },
        Case {
            name: "predict on a CSV with a non-numeric cell",
            setup: |d| {
                model(d);
                write(d, "new.csv", "x0,x1,x2\n0.1,0.2,0.3\n0.1,abc,0.3\n");
            },
            args: &["predict", "--model", "model", "--data", "new.csv", "--out", "p.csv"],
            message: "new.csv: row 3, column 2 (`x1`): `abc` is not a number",
            readme: false,
        },
        Case {
            name: "predictions written under a regular file",
            setup: |d| {
                model(d);
                write(d, "somefile", "not a directory");
            },
            args: &["predict", "--model", "model", "--data", "my.csv", "--out", "somefile/p.csv"],
            message: "cannot create somefile/p.csv: Not a directory (os error 20)",
            readme: true,
        },
    ]
}

/// Every file under `dir` with its bytes, to show that a refused command changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if path.is_dir() {
                stack.push(path);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// What `case` got wrong, if anything.
fn check(case: &Case) -> Option<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    (case.setup)(dir);
    let before = snapshot(dir);
    let mut args = case.args.to_vec();
    if args[0] == "search" {
        for pair in TINY.chunks(2) {
            if !args.contains(&pair[0]) {
                args.extend(pair);
            }
        }
    }
    let out = run_in(dir, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let want = format!("nas: error: {}\n", case.message);
    let mut wrong = Vec::new();
    if out.status.code() != Some(2) {
        wrong.push(format!("exit code {:?}, not 2", out.status.code()));
    }
    if stderr != want {
        wrong.push(format!("stderr\n      {stderr:?}\n    not\n      {want:?}"));
    }
    let after = snapshot(dir);
    let changed: Vec<_> = after
        .keys()
        .chain(before.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| k.display().to_string())
        .collect();
    if !changed.is_empty() {
        wrong.push(format!("it wrote or changed {changed:?}"));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{}: `nas {}`: {}",
            case.name,
            args.join(" "),
            wrong.join("; ")
        )
    })
}

#[test]
fn every_bad_input_exits_2_with_one_line_and_writes_nothing() {
    let failures: Vec<String> = cases().iter().filter_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases break the rule:\n  {}",
        failures.len(),
        cases().len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_readme_shows_the_messages_the_catalogue_produces() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let missing: Vec<String> = cases()
        .iter()
        .filter(|c| c.readme)
        .map(|c| format!("nas: error: {}", c.message))
        .filter(|line| !readme.lines().any(|l| l.trim() == line))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not show:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_good_inputs_the_cases_spoil_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    good(tmp.path());
    let mut args = vec![
        "search",
        "--space",
        "my.ron",
        "--data",
        "my.csv",
        "--no-final",
    ];
    args.extend(TINY);
    let out = run_in(tmp.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (images, labels) = idx(tmp.path());
    write(tmp.path(), "mnist/train-images-idx3-ubyte", images);
    write(tmp.path(), "mnist/train-labels-idx1-ubyte", labels);
    let mut args = vec![
        "search",
        "--space",
        "my.ron",
        "--data",
        "mnist",
        "--study",
        "idx",
        "--no-final",
    ];
    args.extend(TINY);
    let out = run_in(tmp.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path();
    model(dir);
    let out = run_in(
        dir,
        &[
            "predict", "--model", "model", "--data", "my.csv", "--out", "p.csv",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
