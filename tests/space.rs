//! Search-space files: valid ones parse, every kind of mistake is reported as FILE:LINE:COLUMN.

use nas::space::{SearchSpace, SpaceError};
use std::path::Path;

fn parse(text: &str) -> Result<SearchSpace, SpaceError> {
    SearchSpace::from_str_named(text, "t", "spaces/t.ron")
}

/// The (line, column) an error points at, checking the message's `FILE:LINE:COLUMN:` prefix.
fn position(err: &SpaceError) -> (usize, usize, String) {
    let msg = err.to_string();
    match err {
        SpaceError::Invalid { line, col, .. } => {
            assert!(
                msg.starts_with(&format!("spaces/t.ron:{line}:{col}: ")),
                "message lacks FILE:LINE:COLUMN: {msg}"
            );
            (*line, *col, msg)
        }
        other => panic!("expected a positioned error, got {other}"),
    }
}

const MLP: &str = "(
    task: Classification,
    model: Mlp((
        depth: Range(1, 3),
        width: Choice([32, 64]),
    )),
    train: (
        optimizer: Choice([Adam, Sgd]),
        learning_rate: LogRange(1e-4, 1e-1),
        momentum: Range(0.8, 0.95),
    ),
)";

#[test]
fn every_shipped_space_file_is_valid() {
    for f in [
        "mlp",
        "mlp_regression",
        "cnn",
        "resnet",
        "densenet",
        "mobilenet",
    ] {
        let path = format!("{}/search_spaces/{f}.ron", env!("CARGO_MANIFEST_DIR"));
        let s = SearchSpace::from_file(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, f);
        assert!(!s.params.is_empty());
    }
}

#[test]
fn momentum_exists_only_when_the_optimizer_is_sgd() {
    let s = parse(MLP).unwrap();
    let m = s.param("momentum").unwrap();
    assert_eq!(m.conditions.len(), 1);
    assert_eq!(m.conditions[0].parent(), "optimizer");
}

#[test]
fn unknown_field_is_reported_at_its_line_and_column() {
    let text = MLP.replace(
        "        width: Choice([32, 64]),",
        "        widht: Choice([32, 64]),",
    );
    let (line, col, msg) = position(&parse(&text).unwrap_err());
    assert_eq!((line, col), (5, 14), "{msg}");
    assert!(msg.contains("widht"), "{msg}");
}

#[test]
fn wrong_type_is_reported_at_its_line() {
    let text = MLP.replace("depth: Range(1, 3)", "depth: Range(1, \"three\")");
    let (line, _, msg) = position(&parse(&text).unwrap_err());
    assert_eq!(line, 4, "{msg}");
}

#[test]
fn syntax_error_is_reported_at_its_line() {
    let text = MLP.replace("width: Choice([32, 64]),", "width: Choice([32, 64],");
    let (line, _, msg) = position(&parse(&text).unwrap_err());
    // RON notices the missing `)` where the next token fails to fit.
    assert!((5..=7).contains(&line), "{msg}");
}

#[test]
fn empty_range_names_the_parameter_and_its_line() {
    let text = MLP.replace("depth: Range(1, 3)", "depth: Range(3, 1)");
    let (line, col, msg) = position(&parse(&text).unwrap_err());
    assert_eq!((line, col), (4, 9), "{msg}");
    assert!(
        msg.contains("depth") && msg.contains("empty range"),
        "{msg}"
    );
}

#[test]
fn log_range_touching_zero_is_an_error() {
    let text = MLP.replace("LogRange(1e-4, 1e-1)", "LogRange(0.0, 1e-1)");
    let (line, _, msg) = position(&parse(&text).unwrap_err());
    assert_eq!(line, 9, "{msg}");
    assert!(
        msg.contains("learning_rate") && msg.contains("log"),
        "{msg}"
    );
}

#[test]
fn condition_on_a_value_the_parent_never_takes_is_an_error() {
    let text = MLP.replace("Choice([Adam, Sgd])", "Fixed(Adam)");
    let (line, _, msg) = position(&parse(&text).unwrap_err());
    assert_eq!(line, 10, "{msg}");
    assert!(
        msg.contains("momentum") && msg.contains("optimizer"),
        "{msg}"
    );
}

#[test]
fn empty_choice_is_an_error() {
    let text = MLP.replace("Choice([32, 64])", "Choice([])");
    let (line, _, msg) = position(&parse(&text).unwrap_err());
    assert_eq!(line, 5, "{msg}");
}

#[test]
fn out_of_bounds_values_are_errors() {
    let text = MLP.replace("momentum: Range(0.8, 0.95)", "momentum: Range(0.8, 1.5)");
    let (line, _, msg) = position(&parse(&text).unwrap_err());
    assert_eq!(line, 10, "{msg}");
}

#[test]
fn the_binary_prints_file_line_column_and_exits_with_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ron");
    std::fs::write(
        &path,
        MLP.replace("depth: Range(1, 3)", "depth: Range(3, 1)"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(["search", "--space"])
        .arg(&path)
        .args(["--results"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4:9:", path.display())),
        "stderr: {stderr}"
    );
}

#[test]
fn a_space_file_that_is_not_utf8_points_at_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ron");
    // A Latin-1 `é` (0xE9) in a comment on line 2, after the 10 characters `    // caf`: column 11.
    std::fs::write(&path, b"(\n    // caf\xE9\n    task: Classification,\n)").unwrap();
    let err = SearchSpace::from_file(&path).unwrap_err();
    match &err {
        SpaceError::Invalid { line, col, .. } => assert_eq!((*line, *col), (2, 11), "{err}"),
        other => panic!("expected a positioned error, got {other}"),
    }
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

/// Spaces that leave every optional field out, so the golden file also covers each default domain
/// and each conditional parameter (the shipped files write most fields).
const GOLDEN_INLINE: [(&str, &str); 6] = [
    ("defaults_mlp", "(task: Classification, model: Mlp(()))"),
    ("defaults_cnn", "(task: Classification, model: Cnn(()))"),
    (
        "per_layer_mlp",
        "(task: Regression, model: Mlp((depth: Range(0, 4), per_layer_width: Choice([false, true]))),
          train: (optimizer: Choice([Adam, Sgd])))",
    ),
    (
        "dense_defaults",
        "(task: Classification, model: Cnn((block: Choice([Plain, Dense, Separable]))),
          train: (optimizer: Fixed(Sgd)))",
    ),
    (
        "separable_written",
        "(task: Classification, model: Cnn((block: Choice([Residual, Separable]),
          expansion: Choice([2, 6]))),
          train: (optimizer: Choice([Sgd, Adam]), momentum: Range(0.5, 0.99)),
          augment: (shift: Range(0, 2), hflip: Choice([false, true]), noise: LogRange(0.01, 0.1)))",
    ),
    (
        "fixed_everything_mlp",
        "(task: Classification, model: Mlp((depth: Fixed(2), width: Fixed(7),
          per_layer_width: Fixed(true), activation: Fixed(Gelu), dropout: Fixed(0.25),
          batch_norm: Fixed(true))),
          train: (optimizer: Fixed(Sgd), learning_rate: Fixed(0.5), momentum: Fixed(0.0),
          batch_size: Fixed(3), weight_decay: Fixed(0.125), max_epochs: Fixed(9), patience: Fixed(2)))",
    ),
];

/// What every shipped space (and the inline ones above) validates to, and what 20 seeded random
/// configurations of each decode to, as text.
fn golden_samples() -> String {
    use nas::search::Strategy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::fmt::Write as _;

    let spaces = golden_spaces();
    let mut out = String::new();
    for (name, space) in &spaces {
        writeln!(
            out,
            "=== {name} family={:?} task={:?}",
            space.family, space.task
        )
        .unwrap();
        for p in &space.params {
            // The fields the golden file was written with (a parameter's default is not in it).
            writeln!(
                out,
                "param ParamSpec {{ name: {:?}, dist: {:?}, conditions: {:?} }}",
                p.name, p.dist, p.conditions
            )
            .unwrap();
        }
        for seed in 0..20u64 {
            let mut sampler = Strategy::Random.build(space).unwrap();
            let cfg = sampler.suggest(space, &[], &mut ChaCha8Rng::seed_from_u64(seed));
            writeln!(out, "--- {name} seed {seed}").unwrap();
            writeln!(out, "config {cfg:?}").unwrap();
            writeln!(
                out,
                "json {}",
                serde_json::Value::Object(space.config_json(&cfg))
            )
            .unwrap();
            writeln!(out, "candidate {:?}", space.decode(&cfg)).unwrap();
        }
    }
    out
}

/// The spaces of the golden file: every shipped one, then the inline ones.
fn golden_spaces() -> Vec<(String, SearchSpace)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    let mut spaces: Vec<(String, SearchSpace)> = files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                SearchSpace::from_file(p).unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect();
    for (name, text) in GOLDEN_INLINE {
        spaces.push((
            name.to_string(),
            SearchSpace::from_str_named(text, name, name).unwrap_or_else(|e| panic!("{e}")),
        ));
    }
    spaces
}

/// What the networks of 20 seeded configurations of every short-form space are, layer by layer:
/// each parameter's name, size and a checksum of its initial values, on image and 1-D inputs.
fn golden_networks() -> String {
    use dfdx::prelude::Cpu;
    use nas::data::InputShape;
    use nas::search::Strategy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::fmt::Write as _;

    let dev = Cpu::default();
    let mut out = String::new();
    for (name, space) in golden_spaces() {
        if space.family != nas::space::Family::Mlp && space.family != nas::space::Family::Cnn {
            continue;
        }
        for seed in 0..20u64 {
            let mut sampler = Strategy::Random.build(&space).unwrap();
            let cfg = sampler.suggest(&space, &[], &mut ChaCha8Rng::seed_from_u64(seed));
            let cand = space.decode(&cfg);
            for shape in [InputShape::new(1, 8, 8), InputShape::new(1, 1, 16)] {
                writeln!(out, "--- {name} seed {seed} shape {shape}").unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                match nas::nn::build_network(&cand.arch, shape, 10, &mut rng, &dev) {
                    Err(_) => writeln!(out, "impossible").unwrap(),
                    Ok(mut net) => {
                        writeln!(out, "params {} macs {}", net.param_count, net.macs).unwrap();
                        for (p, v) in net.snapshot() {
                            let sum: f64 = v
                                .iter()
                                .enumerate()
                                .map(|(i, x)| *x as f64 * (1.0 + (i % 7) as f64))
                                .sum();
                            writeln!(out, "{p} {} {sum:.6e}", v.len()).unwrap();
                        }
                    }
                }
            }
        }
    }
    out
}

/// Compares `got` with the golden file `name` (rewritten first under `UPDATE_GOLDEN=1`).
fn check_golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "golden output differs from {} at line {}:\n got: {:?}\nwant: {:?}",
            path.display(),
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

/// The short forms build the same networks (layers, parameter names, initial weights) as
/// before the architecture language: `UPDATE_GOLDEN=1` rewrites the file.
#[test]
fn short_form_networks_match_the_golden_file() {
    check_golden("networks.txt", &golden_networks());
}

/// Refactoring the space must not change what users get: set `UPDATE_GOLDEN=1` to rewrite the
/// file only when a change is intended (and say so in the commit).
#[test]
fn sampled_configurations_and_their_candidates_match_the_golden_file() {
    check_golden("space_samples.txt", &golden_samples());
}

#[test]
fn an_unknown_field_lists_the_fields_of_its_part_in_file_order() {
    let err = parse(&MLP.replace("width:", "widht:")).unwrap_err();
    let (_, _, msg) = position(&err);
    assert!(
        msg.ends_with("unknown field `widht`; expected one of `depth`, `width`, `per_layer_width`, `activation`, `dropout`, `batch_norm`"),
        "{msg}"
    );
    let err = parse("(task: Classification, model: Cnn(()), train: (lr: Fixed(0.1)))").unwrap_err();
    assert!(
        err.to_string().ends_with("unknown field `lr`; expected one of `optimizer`, `learning_rate`, `momentum`, `batch_size`, `weight_decay`, `max_epochs`, `patience`"),
        "{err}"
    );
}

#[test]
fn a_field_written_twice_is_an_error() {
    let err = parse("(task: Classification, model: Mlp((depth: Fixed(1), depth: Fixed(2))))")
        .unwrap_err();
    assert!(err.to_string().contains("duplicate field `depth`"), "{err}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_field() {
    let err = parse("(task: Classification, model: Cnn((block: Fixed(Wide))))").unwrap_err();
    assert!(err.to_string().contains("`block`"), "{err}");
    let err = parse("(task: Classification, model: Mlp((dropout: Fixed(true))))").unwrap_err();
    assert!(err.to_string().contains("`dropout`"), "{err}");
}

/// The example of the architecture language in `search_spaces/README.md` is a valid space.
#[test]
fn the_readme_example_of_the_architecture_language_is_a_valid_space() {
    let readme = include_str!("../search_spaces/README.md");
    let start = readme
        .find("## The architecture language")
        .and_then(|i| readme[i..].find("```ron").map(|j| i + j + "```ron".len()))
        .expect("the README shows an example");
    let end = start + readme[start..].find("```").unwrap();
    let space = parse(&readme[start..end]).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = space.params.iter().map(|p| p.name.as_str()).collect();
    for want in ["conv1.channels", "kernel", "stage2.times", "one_of1"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

/// What `nas space show --expanded` writes for a short form is a valid `model:` of the
/// architecture language, and it builds the same network as the short form (parameter count and
/// multiply-adds), for every shipped short-form space and 10 seeds.
#[test]
fn the_expansion_of_a_short_form_reads_back_as_the_same_network() {
    use nas::data::InputShape;
    use nas::search::Strategy;
    use nas::space::arch::Node;
    use nas::space::Architecture;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    let shape = InputShape::new(1, 8, 8);
    for (name, space) in golden_spaces() {
        for seed in 0..10u64 {
            let mut sampler = Strategy::Random.build(&space).unwrap();
            let cfg = sampler.suggest(&space, &[], &mut ChaCha8Rng::seed_from_u64(seed));
            let arch = space.decode(&cfg).arch;
            if matches!(arch, Architecture::Net(_)) {
                continue;
            }
            let text = format!(
                "(task: {:?}, model: {})",
                space.task,
                Node::to_ron(&arch.nodes())
            );
            let again = parse(&text).unwrap_or_else(|e| panic!("{name} seed {seed}: {e}\n{text}"));
            let net = again.decode(&nas::space::Config::new()).arch;
            let (a, b) = (
                nas::nn::cost(&arch, shape, 10).unwrap(),
                nas::nn::cost(&net, shape, 10).unwrap(),
            );
            assert_eq!(
                (a.params, a.macs),
                (b.params, b.macs),
                "{name} seed {seed}\n{text}"
            );
        }
    }
}

// ---------- `nas space show | sample | check` ----------

fn nas_space(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nas"))
        .arg("space")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The size of a discrete space is the number of points grid search enumerates, with every
/// conditional parameter counted only where it exists; a space with a continuous range says so.
#[test]
fn the_size_of_a_discrete_space_is_what_grid_search_enumerates() {
    use nas::search::GridSampler;
    let mut discrete = 0;
    for (name, space) in golden_spaces() {
        let size = space.size();
        match GridSampler::new(&space) {
            Ok(grid) => {
                assert_eq!(size.finite(), Some(grid.len() as u128), "{name}");
                discrete += 1;
            }
            Err(_) if size.continuous.is_empty() => panic!("{name}: no grid, yet {size}"),
            Err(_) => assert!(size.to_string().starts_with("continuous ("), "{name}"),
        }
    }
    assert!(discrete >= 3, "only {discrete} discrete spaces");
}

#[test]
fn nas_space_show_lists_every_parameter_with_domain_default_condition_and_the_size() {
    let out = stdout_of(&nas_space(&["show", "search_spaces/mlp.ron"]));
    let space = SearchSpace::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/mlp.ron"),
    )
    .unwrap();
    let header = out.lines().nth(2).unwrap();
    let cells: Vec<&str> = header
        .split('│')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells, ["parameter", "domain", "default", "exists when"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("│ ") && !l.contains("exists when"))
        .map(|l| {
            l.split('│')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let want: Vec<&str> = space.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, want);
    let row = |n: &str| rows.iter().find(|r| r[0] == n).unwrap().clone();
    assert_eq!(
        row("depth"),
        ["depth", "Range(1, 3)", "Range(1, 3)", "always"]
    );
    assert_eq!(
        row("momentum"),
        [
            "momentum",
            "Range(0.8, 0.99)",
            "Fixed(0.9)",
            "optimizer in {sgd}"
        ]
    );
    assert_eq!(
        row("width_2")[3],
        "per_layer_width in {true} and depth >= 2"
    );
    assert!(
        out.contains("size of the space: continuous (4 continuous parameters: dropout, learning_rate, momentum, weight_decay); the discrete ones make "),
        "{out}"
    );

    let out = stdout_of(&nas_space(&["show", "search_spaces/bench_cnn.ron"]));
    let bench = SearchSpace::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/bench_cnn.ron"),
    )
    .unwrap();
    let n = nas::search::GridSampler::new(&bench).unwrap().len() as u64;
    assert!(
        out.contains(&format!(
            "size of the space: {} configurations",
            nas::space::thousands(n)
        )),
        "{out}"
    );
    // A parameter of a part's choice has no default of its own.
    let out = stdout_of(&nas_space(&["show", "search_spaces/cells.ron"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("│ cell1.edge0_1 ") && l.contains("│ -  ")),
        "{out}"
    );
    let out = stdout_of(&nas_space(&["show", "search_spaces/cnn.ron", "--expanded"]));
    assert!(out.contains("\nmodel: Sequential(["), "{out}");
}

#[test]
fn nas_space_sample_prints_networks_with_their_parameters_and_multiply_adds() {
    use nas::data::InputShape;
    use nas::search::Strategy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    let file = "search_spaces/cnn.ron";
    let out = stdout_of(&nas_space(&["sample", file, "-n", "3", "--seed", "4"]));
    assert!(out.starts_with(&format!(
        "{file}: 3 configurations drawn with seed 4, counted on digits (input 1x8x8, 10 outputs)\n"
    )));
    let space = SearchSpace::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut sampler = Strategy::Random.build(&space).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 3, "{out}");
    for i in 0..3 {
        let config = sampler.suggest(&space, &[], &mut rng);
        let json = serde_json::Value::Object(space.config_json(&config));
        assert_eq!(lines[1 + 3 * i], format!("{i}: {json}"));
        let c = nas::nn::cost(&space.decode(&config).arch, InputShape::new(1, 8, 8), 10).unwrap();
        assert_eq!(
            lines[3 + 3 * i],
            format!(
                "   {} parameters, {} multiply-adds per sample",
                nas::space::thousands(c.params as u64),
                nas::space::thousands(c.macs)
            )
        );
    }
    let again = stdout_of(&nas_space(&["sample", file, "-n", "3", "--seed", "4"]));
    assert_eq!(again, out, "the same seed draws the same networks");
    let other = stdout_of(&nas_space(&["sample", file, "-n", "3", "--seed", "5"]));
    assert_ne!(other, out);
}

#[test]
fn nas_space_check_exits_0_for_a_valid_space_and_2_for_an_invalid_or_impossible_one() {
    let out = nas_space(&["check", "search_spaces/cells.ron", "--samples", "20"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout_of(&out).contains("0 of 20 random configurations (0.0%) are impossible"));

    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.ron");
    std::fs::write(&typo, MLP.replace("width:", "widht:")).unwrap();
    let impossible = dir.path().join("deep.ron");
    std::fs::write(
        &impossible,
        "(task: Classification, model: Cnn((stages: Fixed(6))))",
    )
    .unwrap();
    for (file, says) in [
        (
            &typo,
            format!("{}:5:14: unknown field `widht`", typo.display()),
        ),
        (
            &impossible,
            format!(
                "{}: none of 20 random configurations can be built on digits (input 1x8x8)",
                impossible.display()
            ),
        ),
    ] {
        let out = nas_space(&["check", file.to_str().unwrap(), "--samples", "20"]);
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("nas: error: {says}")), "{err}");
    }
}
