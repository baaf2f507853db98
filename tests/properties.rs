//! Property tests of the four parsers of user files (search space, IDX, CSV, journal): arbitrary
//! and mutated inputs never panic, and every error names the file. A short, always-run cousin of
//! the `cargo fuzz` targets in `fuzz/`.

use std::path::Path;
use std::sync::OnceLock;

use nas::data::{parse_csv_bytes, parse_idx_bytes, LoadOptions, Task};
use nas::search::TrialState;
use nas::space::{Config, ParamValue, SearchSpace, SpaceError};
use nas::study::{JournalStorage, Metric, Storage, StudyMeta, TrialRecord};
use proptest::prelude::*;

/// Few cases, no persistence file: the suite stays fast and writes nothing into the tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One byte edit: (where, what, which byte). Positions wrap around the input length.
type Edit = (usize, u8, u8);

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 1..8)
}

/// Applies replace / insert / delete / truncate edits to a valid input.
fn mutate(valid: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for &(pos, op, byte) in edits {
        let at = if b.is_empty() { 0 } else { pos % b.len() };
        match op {
            0 if !b.is_empty() => b[at] = byte,
            1 => b.insert(at, byte),
            2 if !b.is_empty() => {
                b.remove(at);
            }
            _ => b.truncate(at),
        }
    }
    b
}

// ---------- search spaces ----------

const SPACES: [&str; 3] = [
    include_str!("../search_spaces/mlp.ron"),
    include_str!("../search_spaces/cnn.ron"),
    include_str!("../search_spaces/densenet.ron"),
];

fn check_space(bytes: &[u8]) -> Result<(), TestCaseError> {
    match SearchSpace::from_bytes_named(bytes, "p", "p.ron") {
        Ok(_) => Ok(()),
        Err(SpaceError::Invalid {
            file, line, col, ..
        }) => {
            prop_assert_eq!(file, "p.ron");
            prop_assert!(line >= 1 && col >= 1, "position {}:{}", line, col);
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("not a positioned error: {e}"))),
    }
}

// ---------- IDX ----------

const IDX_FEATURES: &[u8] = include_bytes!("../data/builtin/iris/t10k-features-idx2-float");
const IDX_LABELS: &[u8] = include_bytes!("../data/builtin/iris/t10k-labels-idx1-ubyte");

fn check_idx(features: &[u8], labels: &[u8], conventional: bool) -> Result<(), TestCaseError> {
    // Conventional names also check the magic number; neutral names let mutations go deeper.
    let (fp, tp) = if conventional {
        ("d/train-features-idx2-float", "d/train-labels-idx1-ubyte")
    } else {
        ("d/features.idx", "d/labels.idx")
    };
    for task in [None, Some(Task::Classification), Some(Task::Regression)] {
        let opts = LoadOptions {
            task,
            ..LoadOptions::default()
        };
        if let Err(e) = parse_idx_bytes(features, Path::new(fp), labels, Path::new(tp), &opts) {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(fp) || msg.contains(tp),
                "names no file: {}",
                msg
            );
        }
    }
    Ok(())
}

// ---------- CSV ----------

const CSV: &str = "\u{feff}sepal, \"petal,width\" ,label\n5.1,0.2,setosa\n\n4.9,\"1.5\",versicolor\r\n6.3,2.5e0,\"vir\"\"ginica\"\n";

fn check_csv(bytes: &[u8]) -> Result<(), TestCaseError> {
    for task in [None, Some(Task::Classification), Some(Task::Regression)] {
        let opts = LoadOptions {
            task,
            ..LoadOptions::default()
        };
        match parse_csv_bytes(bytes, Path::new("d/p.csv"), &opts) {
            Ok(ds) => prop_assert_eq!(ds.features.len(), ds.len() * ds.n_features()),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("d/p.csv"), "names no file: {}", msg);
            }
        }
    }
    Ok(())
}

// ---------- journal ----------

/// A real journal with one complete trial, written once through the public storage API.
fn journal() -> &'static [u8] {
    static JOURNAL: OnceLock<Vec<u8>> = OnceLock::new();
    JOURNAL.get_or_init(|| {
        let source = "(task: Classification, model: Mlp((depth: Fixed(1), width: Fixed(8))))";
        let space = SearchSpace::from_str_named(source, "p", "p.ron").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let meta = StudyMeta {
            name: "p".into(),
            space_file: "p.ron".into(),
            space_source: source.into(),
            data: "iris".into(),
            task: Task::Classification,
            metric: Metric::Accuracy,
            seed: 1,
            folds: 2,
            strategy: "random".into(),
            scheduler: "fifo".into(),
            objectives: Vec::new(),
        };
        let mut s = JournalStorage::open_or_create(dir.path(), meta).unwrap();
        let number = s.create_trial().unwrap();
        // Every parameter of this space is fixed: the first (only) choice of each active one.
        let mut config = Config::new();
        for p in &space.params {
            if p.is_active(&config) {
                config.insert(p.name.clone(), ParamValue::Cat(0));
            }
        }
        s.set_params(number, config.clone(), 7).unwrap();
        s.report(number, 1, 0.75).unwrap();
        let mut record = TrialRecord::new(number, config, 7);
        record.state = TrialState::Complete;
        record.cv_mean = Some(0.75);
        record.cv_std = Some(0.0);
        record.fold_scores = vec![0.75, 0.75];
        record.epochs = 1;
        record.budget = 2;
        s.finish_trial(record).unwrap();
        std::fs::read(dir.path().join(JournalStorage::FILE)).unwrap()
    })
}

fn check_journal(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(JournalStorage::FILE), bytes).unwrap();
    // Either outcome is fine; a panic fails the property.
    if let Ok(s) = JournalStorage::open(dir.path()) {
        let _ = s.trials().len();
    }
    Ok(())
}

#[test]
fn the_journal_fixture_replays() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(JournalStorage::FILE), journal()).unwrap();
    let s = JournalStorage::open(dir.path()).unwrap();
    assert_eq!(s.trials().len(), 1);
    assert_eq!(s.trials()[0].state, TrialState::Complete);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_space_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_space(&bytes)?;
    }

    #[test]
    fn mutated_search_spaces_parse_or_name_file_line_and_column(i in 0..SPACES.len(), e in edits()) {
        check_space(&mutate(SPACES[i].as_bytes(), &e))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_idx_loader(
        f in prop::collection::vec(any::<u8>(), 0..64),
        t in prop::collection::vec(any::<u8>(), 0..32),
        conventional in any::<bool>(),
    ) {
        check_idx(&f, &t, conventional)?;
    }

    #[test]
    fn mutated_idx_files_load_or_name_a_file(
        fe in edits(),
        te in edits(),
        which in 0u8..3,
        conventional in any::<bool>(),
    ) {
        // Mutate the features, the labels, or both.
        let f = if which != 1 { mutate(IDX_FEATURES, &fe) } else { IDX_FEATURES.to_vec() };
        let t = if which != 0 { mutate(IDX_LABELS, &te) } else { IDX_LABELS.to_vec() };
        check_idx(&f, &t, conventional)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_csv_loader(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_csv(&bytes)?;
    }

    #[test]
    fn mutated_csv_files_load_or_name_the_file(e in edits()) {
        check_csv(&mutate(CSV.as_bytes(), &e))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_journal_replay(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_journal(&bytes)?;
    }

    #[test]
    fn mutated_journals_never_panic_the_replay(e in edits()) {
        check_journal(&mutate(journal(), &e))?;
    }
}
