//! Integration tests of the data module: loaders, their errors, built-ins, standardisation, splits, folds, augmentation.

use std::path::{Path, PathBuf};

use nas::data::{
    check_classes, kfold, load, load_builtin, load_test_file, parse_csv_bytes, train_test_split,
    Augment, BuiltinName, DataError, DataSource, Dataset, Features, InputShape, LoadOptions,
    Standardizer, TargetScaler, Targets, Task,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn builtin_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/builtin")
        .join(name)
}

/// CSV copies of the built-in data sets (`../shared/datasets/<name>/csv/`, committed so that the
/// tests run from any clone; see tests/fixtures/README.md).
fn fixture_csv(name: &str, file: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/csv")
        .join(name)
        .join(file);
    assert!(p.exists(), "{} is missing from the checkout", p.display());
    p
}

fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

fn f32_payload(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A valid 3-image 2x2 IDX directory with labels 0, 1, 2.
fn tiny_image_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_bytes(0x0803, &[3, 2, 2], &[0; 12]),
    );
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x0801, &[3], &[0, 1, 2]),
    );
    dir
}

fn csv_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    write(dir, name, text.as_bytes())
}

fn load_csv_text(text: &str) -> Result<Dataset, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let path = csv_file(dir.path(), "data.csv", text);
    load(
        &DataSource::parse(path.to_str().unwrap())?,
        &LoadOptions::default(),
    )
    .map(|s| s.train)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn digits() -> Dataset {
    load_builtin(BuiltinName::Digits).unwrap().train
}

// ---------- built-in data sets ----------

#[test]
fn builtin_digits_has_1437_train_and_360_test_images_of_1x8x8_in_10_classes() {
    let split = load(
        &DataSource::Builtin(BuiltinName::Digits),
        &LoadOptions::default(),
    )
    .unwrap();
    let test = split.test.unwrap();
    assert_eq!((split.train.len(), test.len()), (1437, 360));
    assert_eq!(split.train.shape, InputShape::new(1, 8, 8));
    assert_eq!(split.train.task(), Task::Classification);
    assert_eq!(split.train.n_outputs(), 10);
    assert_eq!(
        split.train.class_names,
        (0..10).map(|c| c.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        split.train.class_counts(),
        vec![142, 146, 142, 146, 145, 145, 145, 143, 139, 144]
    );
    assert_eq!(
        test.class_counts(),
        vec![36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    );
    let max = split.train.features.iter().fold(0.0f32, f32::max);
    assert_eq!(max, 255.0, "pixels stay in 0..255 before standardisation");
}

#[test]
fn builtin_iris_has_120_train_and_30_test_samples_in_three_named_classes() {
    let split = load_builtin(BuiltinName::Iris).unwrap();
    let test = split.test.unwrap();
    assert_eq!((split.train.len(), test.len()), (120, 30));
    assert_eq!(split.train.shape, InputShape::flat(4));
    assert_eq!(
        split.train.class_names,
        vec!["setosa", "versicolor", "virginica"]
    );
    assert_eq!(test.class_names, split.train.class_names);
    assert_eq!(split.train.class_counts(), vec![40, 40, 40]);
    assert_eq!(test.class_counts(), vec![10, 10, 10]);
}

#[test]
fn builtin_diabetes_is_a_regression_with_353_train_and_89_test_samples_of_10_features() {
    let split = load_builtin(BuiltinName::Diabetes).unwrap();
    let test = split.test.unwrap();
    assert_eq!((split.train.len(), test.len()), (353, 89));
    assert_eq!(split.train.task(), Task::Regression);
    assert_eq!((split.train.n_features(), split.train.n_outputs()), (10, 1));
    assert!(split.train.class_names.is_empty());
    let Targets::Values(y) = &split.train.targets else {
        panic!("regression targets expected")
    };
    assert!(y.iter().all(|v| (25.0..=346.0).contains(v)));
}

#[test]
fn builtin_names_parse_and_print_in_lower_case() {
    for b in BuiltinName::ALL {
        assert_eq!(b.to_string().parse::<BuiltinName>().unwrap(), b);
        assert_eq!(
            DataSource::parse(b.as_str()).unwrap(),
            DataSource::Builtin(b)
        );
    }
    assert_eq!(
        DataSource::parse("Digits").unwrap(),
        DataSource::Builtin(BuiltinName::Digits)
    );
}

// ---------- IDX and CSV agree ----------

fn assert_same_data(a: &Dataset, b: &Dataset, tolerance: f32) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.n_features(), b.n_features());
    for (x, y) in a.features.iter().zip(b.features.iter()) {
        assert!((x - y).abs() <= tolerance * x.abs().max(1.0), "{x} vs {y}");
    }
    match (&a.targets, &b.targets) {
        (Targets::Values(x), Targets::Values(y)) => {
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= tolerance * p.abs().max(1.0));
            }
        }
        (x, y) => assert_eq!(x, y),
    }
}

#[test]
fn the_embedded_idx_files_load_as_an_idx_directory_like_the_builtin() {
    for name in BuiltinName::ALL {
        let from_dir = load(
            &DataSource::IdxDir(builtin_dir(name.as_str())),
            &LoadOptions::default(),
        )
        .unwrap();
        let builtin = load_builtin(name).unwrap();
        assert_same_data(&from_dir.train, &builtin.train, 0.0);
        assert_same_data(&from_dir.test.unwrap(), &builtin.test.unwrap(), 0.0);
        assert_eq!(from_dir.train.shape, builtin.train.shape);
    }
}

#[test]
fn the_csv_copies_of_the_data_sets_agree_with_the_embedded_idx_files() {
    for name in BuiltinName::ALL {
        let (train, test) = (
            fixture_csv(name.as_str(), "train.csv"),
            fixture_csv(name.as_str(), "test.csv"),
        );
        let source = DataSource::Csv {
            train,
            test: Some(test),
        };
        let csv = load(&source, &LoadOptions::default()).unwrap();
        let builtin = load_builtin(name).unwrap();
        // CSV holds float64 text, IDX float32: equal to float32 rounding.
        assert_same_data(&csv.train, &builtin.train, 1e-6);
        assert_same_data(&csv.test.unwrap(), &builtin.test.unwrap(), 1e-6);
        assert_eq!(csv.train.task(), builtin.train.task());
    }
}

#[test]
fn a_csv_written_from_iris_reads_back_the_same_data() {
    let iris = load_builtin(BuiltinName::Iris).unwrap().train;
    let mut text = String::from("a,b,c,d,label\n");
    for i in 0..iris.len() {
        let row: Vec<String> = iris.sample(i).iter().map(|v| v.to_string()).collect();
        text += &format!("{},{}\n", row.join(","), iris.labels().unwrap()[i]);
    }
    let back = load_csv_text(&text).unwrap();
    assert_same_data(&back, &iris, 0.0);
    assert_eq!(back.name, "data");
}

// ---------- IDX errors ----------

#[test]
fn idx_with_wrong_magic_number_names_the_file_and_both_numbers() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_bytes(0x0801, &[3, 2, 2], &[0; 12]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                expected: 0x0803,
                found: 0x0801,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(
        msg.contains("0x00000803") && msg.contains("0x00000801"),
        "{msg}"
    );
}

#[test]
fn idx_file_with_an_unconventional_name_and_a_garbage_header_is_not_an_idx_file() {
    let dir = tiny_image_dir();
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    write(dir.path(), "train-images-custom", b"GIF89a....");
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::BadIdxHeader { .. }), "{err:?}");
    assert!(err.to_string().contains("train-images-custom"));
}

#[test]
fn idx_directory_without_labels_names_the_missing_file() {
    let dir = tiny_image_dir();
    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn idx_directory_without_training_files_says_which_files_were_expected() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn idx_test_images_without_test_labels_name_the_missing_test_file() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &idx_bytes(0x0803, &[1, 2, 2], &[0; 4]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
}

#[test]
fn idx_directory_with_only_training_files_has_no_test_split() {
    let dir = tiny_image_dir();
    let split = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(split.test.is_none());
    assert_eq!(split.train.shape, InputShape::new(1, 2, 2));
    assert_eq!(split.train.n_outputs(), 3);
}

#[test]
fn idx_image_and_label_counts_that_disagree_report_both_counts() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x0801, &[2], &[0, 1]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                n_features: 3,
                n_targets: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("train-labels-idx1-ubyte"),
        "{msg}"
    );
    assert!(
        msg.contains("3 samples") && msg.contains("2 labels"),
        "{msg}"
    );
}

#[test]
fn truncated_idx_file_reports_expected_and_actual_bytes() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_bytes(0x0803, &[3, 2, 2], &[0; 10]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 28,
                actual: 26,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("28") && msg.contains("26"),
        "{msg}"
    );
}

#[test]
fn idx_file_longer_than_its_header_says_is_rejected() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x0801, &[3], &[0, 1, 2, 9]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TrailingBytes {
                expected: 11,
                actual: 12,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn idx_float_features_with_nan_name_the_file_and_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let feats = f32_payload(&[1.0, 2.0, 3.0, f32::NAN]);
    write(
        dir.path(),
        "train-features-idx2-float",
        &idx_bytes(0x0D02, &[2, 2], &feats),
    );
    write(
        dir.path(),
        "train-targets-idx1-float",
        &idx_bytes(0x0D01, &[2], &f32_payload(&[0.5, 1.5])),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::NonFinite { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("train-features-idx2-float") && msg.contains("sample 1"),
        "{msg}"
    );
}

#[test]
fn idx_float_features_with_float_targets_are_a_regression_and_with_byte_labels_a_classification() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-features-idx2-float",
        &idx_bytes(0x0D02, &[2, 3], &f32_payload(&[1.0; 6])),
    );
    write(
        dir.path(),
        "train-targets-idx1-float",
        &idx_bytes(0x0D01, &[2], &f32_payload(&[0.5, 1.5])),
    );
    let reg = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap()
    .train;
    assert_eq!(reg.task(), Task::Regression);
    assert_eq!(reg.shape, InputShape::flat(3));
    assert_eq!(reg.targets, Targets::Values(vec![0.5, 1.5]));

    std::fs::remove_file(dir.path().join("train-targets-idx1-float")).unwrap();
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x0801, &[2], &[1, 0]),
    );
    let cls = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap()
    .train;
    assert_eq!(
        cls.targets,
        Targets::Classes {
            labels: vec![1, 0],
            n_classes: 2
        }
    );
}

#[test]
fn idx_test_label_beyond_the_training_classes_is_out_of_range() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &idx_bytes(0x0803, &[1, 2, 2], &[0; 4]),
    );
    write(
        dir.path(),
        "t10k-labels-idx1-ubyte",
        &idx_bytes(0x0801, &[1], &[7]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                label: 7,
                n_classes: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_missing_idx_directory_is_not_found() {
    let err = load(
        &DataSource::IdxDir("/no/such/dir".into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("/no/such/dir"));
}

// ---------- CSV errors ----------

#[test]
fn csv_non_numeric_cell_names_the_file_the_row_and_the_column() {
    let err = load_csv_text("a,b,label\n1,2,0\n3,oops,1\n").unwrap_err();
    assert!(
        matches!(&err, DataError::NotANumber { row: 3, column: 2, name, value, .. } if name == "b" && value == "oops"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("data.csv") && msg.contains("row 3") && msg.contains("`b`"),
        "{msg}"
    );
}

#[test]
fn csv_ragged_row_reports_its_row_and_both_field_counts() {
    let err = load_csv_text("a,b,label\n1,2,0\n3,1\n").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::RaggedRow {
                row: 3,
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("data.csv"));
}

#[test]
fn csv_without_label_or_target_column_lists_the_columns_it_has() {
    let err = load_csv_text("a,b,y\n1,2,0\n").unwrap_err();
    assert!(matches!(err, DataError::MissingColumn { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("label") && msg.contains("target") && msg.contains("a, b, y"),
        "{msg}"
    );
}

#[test]
fn csv_named_target_column_that_is_absent_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = csv_file(dir.path(), "d.csv", "a,b,label\n1,2,0\n");
    let opts = LoadOptions {
        target_column: Some("price".into()),
        ..LoadOptions::default()
    };
    let err = load(
        &DataSource::Csv {
            train: path,
            test: None,
        },
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(&err, DataError::MissingColumn { wanted, .. } if wanted == "price"),
        "{err:?}"
    );
}

#[test]
fn csv_nan_or_infinite_cells_name_the_row_and_column() {
    for bad in ["NaN", "inf", "-inf"] {
        let err = load_csv_text(&format!("a,b,label\n1,2,0\n3,{bad},1\n")).unwrap_err();
        assert!(matches!(err, DataError::NonFinite { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("data.csv") && msg.contains("row 3") && msg.contains("`b`"),
            "{msg}"
        );
    }
}

#[test]
fn csv_blank_or_nan_class_labels_are_rejected_with_their_row() {
    let err = load_csv_text("a,label\n1,cat\n2,\n").unwrap_err();
    assert!(matches!(err, DataError::NotAClassLabel { .. }), "{err:?}");
    assert!(err.to_string().contains("row 3"), "{err}");
    let err = load_csv_text("a,label\n1,0\n2,NaN\n").unwrap_err();
    assert!(matches!(err, DataError::NonFinite { .. }), "{err:?}");
}

#[test]
fn csv_train_and_test_files_take_their_folder_name() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("flowers").join("csv");
    std::fs::create_dir_all(&sub).unwrap();
    let train = csv_file(&sub, "train.csv", "x,label\n1,0\n2,1\n");
    let split = load(
        &DataSource::Csv { train, test: None },
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(split.train.name, "flowers");
}

#[test]
fn forcing_regression_on_an_idx_classification_applies_to_both_splits() {
    let opts = LoadOptions {
        task: Some(Task::Regression),
        ..LoadOptions::default()
    };
    let split = load(&DataSource::Builtin(BuiltinName::Iris), &opts).unwrap();
    assert_eq!(split.train.task(), Task::Regression);
    assert_eq!(split.test.unwrap().task(), Task::Regression);
    assert!(split.train.class_names.is_empty());

    let opts = LoadOptions {
        task: Some(Task::Classification),
        ..LoadOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-features-idx2-float",
        &idx_bytes(0x0D02, &[2, 1], &f32_payload(&[1.0, 2.0])),
    );
    write(
        dir.path(),
        "train-targets-idx1-float",
        &idx_bytes(0x0D01, &[2], &f32_payload(&[0.5, 1.5])),
    );
    let err = load(&DataSource::IdxDir(dir.path().into()), &opts).unwrap_err();
    assert!(matches!(err, DataError::NotAClassLabel { .. }), "{err:?}");
}

#[test]
fn csv_with_only_a_header_is_an_empty_data_set() {
    let err = load_csv_text("a,b,label\n").unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("data.csv"));
    assert!(matches!(
        load_csv_text("").unwrap_err(),
        DataError::Empty { .. }
    ));
}

#[test]
fn a_missing_csv_file_is_not_found() {
    let err = load(
        &DataSource::parse("/no/such/file.csv").unwrap(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
}

#[test]
fn csv_string_labels_become_sorted_class_names() {
    let ds = load_csv_text("x,label\n1,dog\n2,cat\n3,emu\n4,cat\n").unwrap();
    assert_eq!(ds.class_names, vec!["cat", "dog", "emu"]);
    assert_eq!(
        ds.targets,
        Targets::Classes {
            labels: vec![1, 0, 2, 0],
            n_classes: 3
        }
    );
}

#[test]
fn csv_target_column_is_a_regression_and_blank_lines_and_quotes_are_tolerated() {
    let ds = load_csv_text("\"a\",b,target\n1,2,0.5\n\n3,4,7\n").unwrap();
    assert_eq!(ds.task(), Task::Regression);
    assert_eq!(ds.targets, Targets::Values(vec![0.5, 7.0]));
    assert_eq!(ds.features, vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn csv_chosen_target_column_infers_the_task_from_its_values_and_the_task_option_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = csv_file(
        dir.path(),
        "d.csv",
        "y,a,b\n1,0.1,0.2\n0,0.3,0.4\n2,0.5,0.6\n",
    );
    let source = DataSource::Csv {
        train: path.clone(),
        test: None,
    };
    let opts = LoadOptions {
        target_column: Some("y".into()),
        ..LoadOptions::default()
    };
    let ds = load(&source, &opts).unwrap().train;
    assert_eq!(ds.task(), Task::Classification);
    assert_eq!(ds.features, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);

    let opts = LoadOptions {
        task: Some(Task::Regression),
        ..opts
    };
    assert_eq!(
        load(&source, &opts).unwrap().train.targets,
        Targets::Values(vec![1.0, 0.0, 2.0])
    );

    let path = csv_file(dir.path(), "e.csv", "y,a\n1.5,0\n0.25,1\n");
    let opts = LoadOptions {
        target_column: Some("y".into()),
        ..LoadOptions::default()
    };
    let ds = load(
        &DataSource::Csv {
            train: path,
            test: None,
        },
        &opts,
    )
    .unwrap()
    .train;
    assert_eq!(ds.task(), Task::Regression);
}

#[test]
fn shape_option_that_does_not_match_the_feature_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    // Two classes: a single one is refused before the shape matters.
    let path = csv_file(dir.path(), "d.csv", "a,b,c,d,label\n1,2,3,4,0\n5,6,7,8,1\n");
    let source = DataSource::Csv {
        train: path,
        test: None,
    };
    let opts = LoadOptions {
        shape: Some("3x1".parse().unwrap()),
        ..LoadOptions::default()
    };
    let err = load(&source, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ShapeMismatch {
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("1x3x1"));

    let opts = LoadOptions {
        shape: Some("2x2".parse().unwrap()),
        ..LoadOptions::default()
    };
    assert_eq!(
        load(&source, &opts).unwrap().train.shape,
        InputShape::new(1, 2, 2)
    );
}

// ---------- held-out test files ----------

#[test]
fn a_test_csv_maps_its_labels_onto_the_training_classes() {
    let dir = tempfile::tempdir().unwrap();
    let train = csv_file(dir.path(), "train.csv", "x,label\n1,dog\n2,cat\n");
    let test = csv_file(dir.path(), "test.csv", "x,label\n5,dog\n");
    let split = load(
        &DataSource::Csv {
            train,
            test: Some(test),
        },
        &LoadOptions::default(),
    )
    .unwrap();
    let test = split.test.unwrap();
    assert_eq!(
        test.targets,
        Targets::Classes {
            labels: vec![1],
            n_classes: 2
        }
    );
    assert_eq!(test.class_names, vec!["cat", "dog"]);
}

#[test]
fn a_test_file_with_an_unseen_class_or_other_features_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let train = load_csv_text("x,label\n1,dog\n2,cat\n").unwrap();
    let unseen = csv_file(dir.path(), "unseen.csv", "x,label\n5,emu\n");
    let err = load_test_file(&unseen, &LoadOptions::default(), &train).unwrap_err();
    assert!(
        matches!(&err, DataError::UnknownClass { label, .. } if label == "emu"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unseen.csv"));

    let wide = csv_file(dir.path(), "wide.csv", "x,z,label\n5,6,dog\n");
    let err = load_test_file(&wide, &LoadOptions::default(), &train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::FeatureMismatch {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );

    let numbered = load_csv_text("x,label\n1,0\n2,1\n").unwrap();
    let big = csv_file(dir.path(), "big.csv", "x,label\n5,4\n");
    let err = load_test_file(&big, &LoadOptions::default(), &numbered).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                label: 4,
                n_classes: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_idx_directory_serves_as_test_data_with_the_training_shape() {
    let digits = load_builtin(BuiltinName::Digits).unwrap();
    let test = load_test_file(
        &builtin_dir("digits"),
        &LoadOptions::default(),
        &digits.train,
    )
    .unwrap();
    assert_same_data(&test, &digits.test.unwrap(), 0.0);

    let iris = load_builtin(BuiltinName::Iris).unwrap().train;
    let err = load_test_file(&builtin_dir("digits"), &LoadOptions::default(), &iris).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::FeatureMismatch {
                expected: 4,
                found: 64,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------- sources, shapes, validation ----------

#[test]
fn data_source_specs_name_builtins_directories_and_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        DataSource::parse(d).unwrap(),
        DataSource::IdxDir(dir.path().into())
    );
    assert_eq!(
        DataSource::parse("a.csv").unwrap(),
        DataSource::Csv {
            train: "a.csv".into(),
            test: None
        }
    );
    assert_eq!(
        DataSource::parse("a.csv,b.csv").unwrap(),
        DataSource::Csv {
            train: "a.csv".into(),
            test: Some("b.csv".into())
        }
    );
    assert!(matches!(
        DataSource::parse("mnist-nowhere").unwrap_err(),
        DataError::UnknownSource { .. }
    ));
}

#[test]
fn input_shapes_parse_three_two_or_one_dimensions_and_print_as_cxhxw() {
    assert_eq!(
        "3x32x32".parse::<InputShape>().unwrap(),
        InputShape::new(3, 32, 32)
    );
    assert_eq!(
        "8x8".parse::<InputShape>().unwrap(),
        InputShape::new(1, 8, 8)
    );
    assert_eq!(
        "1x40".parse::<InputShape>().unwrap(),
        InputShape::new(1, 1, 40)
    );
    assert_eq!(
        "40".parse::<InputShape>().unwrap(),
        InputShape::new(1, 1, 40)
    );
    assert_eq!(InputShape::new(1, 8, 8).to_string(), "1x8x8");
    assert_eq!(InputShape::new(3, 4, 5).len(), 60);
    for bad in ["", "0x8", "a", "1x2x3x4", "-1"] {
        assert!(
            matches!(
                bad.parse::<InputShape>().unwrap_err(),
                DataError::BadShape { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn validate_catches_non_finite_values_labels_out_of_range_and_bad_lengths() {
    let good = digits().subset(&[0, 1, 2]);
    assert!(good.validate().is_ok());

    let mut nan = good.clone();
    nan.features.floats_mut()[70] = f32::NAN;
    assert!(matches!(
        nan.validate().unwrap_err(),
        DataError::NonFinite { .. }
    ));

    let mut out = good.clone();
    out.targets = Targets::Classes {
        labels: vec![0, 1, 10],
        n_classes: 10,
    };
    assert!(matches!(
        out.validate().unwrap_err(),
        DataError::LabelOutOfRange {
            label: 10,
            n_classes: 10,
            ..
        }
    ));

    let mut short = good.clone();
    short.features.floats_mut().pop();
    assert!(matches!(
        short.validate().unwrap_err(),
        DataError::Inconsistent { .. }
    ));

    assert!(matches!(
        good.subset(&[]).validate().unwrap_err(),
        DataError::Empty { .. }
    ));
}

#[test]
fn subset_and_sample_pick_whole_samples_in_the_given_order() {
    let ds = digits();
    let sub = ds.subset(&[5, 2]);
    assert_eq!(sub.len(), 2);
    assert_eq!(sub.sample(0), ds.sample(5));
    assert_eq!(sub.sample(1), ds.sample(2));
    assert_eq!(
        sub.labels().unwrap(),
        &[ds.labels().unwrap()[5], ds.labels().unwrap()[2]]
    );
    assert_eq!(sub.n_outputs(), 10);
}

#[test]
fn byte_images_load_as_bytes_and_subsets_keep_them() {
    let ds = digits();
    assert!(matches!(ds.features, Features::Bytes(_)), "digits as bytes");
    assert!(matches!(ds.subset(&[5, 2]).features, Features::Bytes(_)));
    // The bytes stand for whole numbers up to 255, as IDX bytes do.
    let values = ds.features.to_f32();
    let max = values.iter().copied().fold(0.0f32, f32::max);
    assert!(
        max > 127.0,
        "values past 127 (a signed reading would differ): {max}"
    );
    assert!(values
        .iter()
        .all(|&v| v.fract() == 0.0 && (0.0..=255.0).contains(&v)));
    // Equality compares values, however they are stored.
    assert_eq!(
        Features::Bytes(vec![0, 200]),
        Features::Floats(vec![0.0, 200.0])
    );
    assert_ne!(
        Features::Bytes(vec![0, 200]),
        Features::Floats(vec![0.0, 200.5])
    );
}

// ---------- standardisation ----------

#[test]
fn standardisation_uses_only_training_statistics() {
    let split = load_builtin(BuiltinName::Iris).unwrap();
    let (mut train, mut test) = (split.train, split.test.unwrap());
    let s = Standardizer::fit(&train, false);
    let manual_mean0 = (0..train.len())
        .map(|i| train.sample(i).get(0))
        .sum::<f32>()
        / train.len() as f32;
    assert!((s.mean[0] - manual_mean0).abs() < 1e-4);
    let refit_on_test = Standardizer::fit(&test, false);
    assert_ne!(s, refit_on_test);

    s.apply(&mut train);
    s.apply(&mut test);
    for f in 0..4 {
        let col: Vec<f32> = (0..train.len()).map(|i| train.sample(i).get(f)).collect();
        let mean = col.iter().sum::<f32>() / col.len() as f32;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / col.len() as f32;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "feature {f}: {mean} {var}"
        );
    }
    // The test set is transformed with the training statistics, so it is not exactly centred.
    let test_mean0 =
        (0..test.len()).map(|i| test.sample(i).get(0)).sum::<f32>() / test.len() as f32;
    assert!(test_mean0.abs() > 1e-4);
}

#[test]
fn constant_pixels_standardise_to_zero() {
    let mut ds = digits();
    let s = Standardizer::fit(&ds, false);
    // Pixel 0 (top-left corner) is blank in every digit.
    assert_eq!((s.mean[0], s.std[0]), (0.0, 1.0));
    s.apply(&mut ds);
    assert!(ds.features.iter().all(|v| v.is_finite()));
    assert!((0..ds.len()).all(|i| ds.sample(i).get(0) == 0.0));
}

#[test]
fn per_channel_standardisation_keeps_one_statistic_per_channel() {
    let mut ds = digits();
    let s = Standardizer::fit(&ds, true);
    assert_eq!((s.mean.len(), s.std.len()), (1, 1));
    let mean = ds.features.iter().map(f64::from).sum::<f64>() / ds.features.len() as f64;
    assert!((f64::from(s.mean[0]) - mean).abs() < 1e-3);
    s.apply(&mut ds);
    let after = ds.features.iter().map(f64::from).sum::<f64>() / ds.features.len() as f64;
    assert!(after.abs() < 1e-4);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Standardizer>(&json).unwrap(), s);
}

#[test]
fn the_target_scaler_round_trips_to_original_units() {
    let mut ds = load_builtin(BuiltinName::Diabetes).unwrap().train;
    let Targets::Values(original) = ds.targets.clone() else {
        panic!("regression targets expected")
    };
    let scaler = TargetScaler::fit(&ds);
    scaler.apply(&mut ds);
    let Targets::Values(scaled) = &ds.targets else {
        panic!("regression targets expected")
    };
    let mean = scaled.iter().sum::<f32>() / scaled.len() as f32;
    assert!(mean.abs() < 1e-4);
    for (s, o) in scaled.iter().zip(&original) {
        assert!((scaler.invert(*s) - o).abs() < 1e-3);
    }
    assert_eq!(TargetScaler::fit(&digits()), TargetScaler::identity());
}

// ---------- splits and folds ----------

#[test]
fn train_test_split_is_stratified_and_deterministic_for_a_seed() {
    let ds = digits();
    let (train, test) = train_test_split(&ds, 0.2, &mut rng(7));
    assert_eq!(
        train_test_split(&ds, 0.2, &mut rng(7)),
        (train.clone(), test.clone())
    );
    assert_ne!(train_test_split(&ds, 0.2, &mut rng(8)).1, test);
    let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..ds.len()).collect::<Vec<_>>());
    let counts = ds.class_counts();
    let test_counts = ds.subset(&test).class_counts();
    for (c, (&n, &t)) in counts.iter().zip(&test_counts).enumerate() {
        assert_eq!(t, (n as f64 * 0.2).round() as usize, "class {c}");
    }
}

#[test]
fn train_test_split_keeps_at_least_one_sample_of_each_class_in_train() {
    let ds = load_csv_text("x,label\n1,0\n2,1\n3,1\n").unwrap();
    let (train, test) = train_test_split(&ds, 0.9, &mut rng(0));
    assert_eq!(ds.subset(&train).class_counts(), vec![1, 1]);
    assert_eq!(test.len(), 1);
}

#[test]
fn stratified_folds_partition_the_data_and_keep_class_proportions_within_one_sample() {
    let ds = digits();
    let folds = kfold(&ds, 5, &mut rng(3)).unwrap();
    assert_eq!(folds.len(), 5);
    let mut seen = vec![0; ds.len()];
    for fold in &folds {
        for &i in &fold.valid {
            seen[i] += 1;
        }
        let mut union: Vec<usize> = fold.train.iter().chain(&fold.valid).copied().collect();
        union.sort_unstable();
        assert_eq!(
            union,
            (0..ds.len()).collect::<Vec<_>>(),
            "train is the complement of valid"
        );
    }
    assert!(
        seen.iter().all(|&s| s == 1),
        "valid sets partition the samples"
    );
    let sizes: Vec<usize> = folds.iter().map(|f| f.valid.len()).collect();
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    let per_fold: Vec<Vec<usize>> = folds
        .iter()
        .map(|f| ds.subset(&f.valid).class_counts())
        .collect();
    for c in 0..10 {
        let counts: Vec<usize> = per_fold.iter().map(|p| p[c]).collect();
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "class {c}: {counts:?}"
        );
    }
    assert_eq!(
        kfold(&ds, 5, &mut rng(3)).unwrap(),
        folds,
        "same seed, same folds"
    );
}

#[test]
fn regression_folds_partition_the_data() {
    let ds = load_builtin(BuiltinName::Diabetes).unwrap().train;
    let folds = kfold(&ds, 4, &mut rng(1)).unwrap();
    let mut all: Vec<usize> = folds.iter().flat_map(|f| f.valid.clone()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..ds.len()).collect::<Vec<_>>());
    assert!(folds
        .iter()
        .all(|f| f.train.len() + f.valid.len() == ds.len()));
}

#[test]
fn a_single_fold_holds_out_a_stratified_fifth() {
    let ds = load_builtin(BuiltinName::Iris).unwrap().train;
    let folds = kfold(&ds, 1, &mut rng(0)).unwrap();
    assert_eq!(folds.len(), 1);
    assert_eq!(ds.subset(&folds[0].valid).class_counts(), vec![8, 8, 8]);
    assert_eq!(folds[0].train.len(), 96);
}

#[test]
fn zero_folds_or_more_folds_than_samples_are_errors() {
    let ds = load_csv_text("x,label\n1,0\n2,1\n3,1\n").unwrap();
    assert!(matches!(
        kfold(&ds, 0, &mut rng(0)).unwrap_err(),
        DataError::BadFoldCount { k: 0, n: 3 }
    ));
    assert!(matches!(
        kfold(&ds, 4, &mut rng(0)).unwrap_err(),
        DataError::BadFoldCount { k: 4, n: 3 }
    ));
    assert_eq!(kfold(&ds, 3, &mut rng(0)).unwrap().len(), 3);
}

// ---------- augmentation ----------

#[test]
fn disabled_augmentation_is_the_identity() {
    let ds = digits().subset(&[0, 1, 2, 3]);
    let mut batch = ds.features.to_f32().into_owned();
    let aug = Augment::default();
    assert!(aug.is_identity());
    aug.apply_batch(&mut batch, ds.shape, &mut rng(0));
    assert_eq!(ds.features, batch);
}

#[test]
fn augmentation_keeps_the_batch_shape_and_is_reproducible_for_a_seed() {
    let ds = digits().subset(&[0, 1, 2, 3]);
    let aug = Augment {
        shift: 2,
        hflip: true,
        noise_std: 0.1,
    };
    assert!(!aug.is_identity());
    assert!(aug.validate().is_ok());
    let mut a = ds.features.to_f32().into_owned();
    let mut b = ds.features.to_f32().into_owned();
    aug.apply_batch(&mut a, ds.shape, &mut rng(5));
    aug.apply_batch(&mut b, ds.shape, &mut rng(5));
    assert_eq!(a.len(), ds.features.len());
    assert_eq!(a, b);
    assert_ne!(ds.features, a);
    assert!(a.iter().all(|v| v.is_finite()));
    assert!(Augment {
        noise_std: -1.0,
        ..Augment::default()
    }
    .validate()
    .is_err());
}

#[test]
fn an_absurd_number_of_classes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-features-idx2-float",
        &idx_bytes(0x0D02, &[1, 1], &f32_payload(&[1.0])),
    );
    let label = 1_000_000i32.to_be_bytes();
    write(
        dir.path(),
        "train-labels-idx1-int",
        &idx_bytes(0x0C01, &[1], &label),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::TooManyClasses { .. }), "{err:?}");
    assert!(err.to_string().contains("train-labels-idx1-int"));
}

// ---------- degenerate classification data ----------

#[test]
fn a_one_class_csv_is_refused_naming_the_file_and_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = csv_file(
        dir.path(),
        "one.csv",
        "a,b,label\n1,2,cat\n3,4,cat\n5,6,cat\n",
    );
    let err = load(
        &DataSource::parse(path.to_str().unwrap()).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::OneClass { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(path.to_str().unwrap()), "{msg}");
    assert!(msg.contains("`cat`"), "{msg}");
}

#[test]
fn one_class_idx_labels_are_refused_naming_the_labels_file() {
    let dir = tiny_image_dir();
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        // Labels 2, 2, 2: three classes by count, but only one holds samples.
        &idx_bytes(0x0801, &[3], &[2, 2, 2]),
    );
    let err = load(
        &DataSource::IdxDir(dir.path().into()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::OneClass { .. }), "{err:?}");
    assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn one_class_is_refused_for_in_memory_csv_bytes_too() {
    let err = parse_csv_bytes(
        b"x,label\n1,0\n2,0\n",
        Path::new("mem.csv"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("mem.csv: "), "{err}");
}

#[test]
fn a_one_class_test_file_is_still_accepted() {
    // Held-out data may legitimately hold a single class; only training data must have two.
    let dir = tempfile::tempdir().unwrap();
    let train = csv_file(dir.path(), "train.csv", "x,label\n1,0\n2,1\n");
    let test = csv_file(dir.path(), "test.csv", "x,label\n3,1\n");
    let split = load(
        &DataSource::Csv {
            train,
            test: Some(test),
        },
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(split.test.unwrap().len(), 1);
}

#[test]
fn classes_smaller_than_the_fold_count_are_named_in_warnings() {
    let ds = load_csv_text("x,label\n1,a\n2,a\n3,a\n4,b\n5,b\n6,c\n").unwrap();
    let warnings = check_classes(&ds, 3).unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("class `b` has 2 samples, fewer than the 3 folds"));
    assert!(warnings[1].contains("class `c` has 1 sample,"));
    assert!(check_classes(&ds, 1).unwrap().is_empty());
}

#[test]
fn check_classes_refuses_one_class_and_ignores_regression() {
    let mut ds = load_csv_text("x,label\n1,0\n2,1\n").unwrap();
    ds.targets = Targets::Classes {
        labels: vec![1, 1],
        n_classes: 2,
    };
    assert!(matches!(
        check_classes(&ds, 3),
        Err(DataError::OneClass { .. })
    ));
    let reg = load_csv_text("x,target\n1,0.5\n2,0.5\n").unwrap();
    assert!(check_classes(&reg, 10).unwrap().is_empty());
}

#[test]
fn check_classes_warns_about_a_class_the_labels_skip() {
    let mut ds = load_csv_text("x,label\n1,0\n2,1\n3,2\n4,2\n").unwrap();
    // As IDX labels 0 and 2 load: three classes, the middle one without samples.
    ds.targets = Targets::Classes {
        labels: vec![0, 2, 0, 2],
        n_classes: 3,
    };
    let warnings = check_classes(&ds, 2).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("class `1` has no samples"),
        "{warnings:?}"
    );
}

#[test]
fn nas_search_on_a_one_class_csv_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = csv_file(
        dir.path(),
        "one.csv",
        "a,b,label\n1,2,0\n3,4,0\n5,6,0\n7,8,0\n",
    );
    let space = Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/mlp.ron");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas"))
        .arg("search")
        .arg("--space")
        .arg(&space)
        .arg("--data")
        .arg(&csv)
        .args(["--trials", "1", "--no-final", "--results"])
        .arg(dir.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(csv.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("two classes"), "{stderr}");
}

// ---------- text that is not UTF-8 ----------

#[test]
fn a_csv_that_is_not_utf8_names_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // Latin-1 `é` (0xE9) in the third field of the second row.
    let path = write(dir.path(), "latin1.csv", b"a,b,label\n1,2,caf\xE9\n");
    let err = load(
        &DataSource::parse(path.to_str().unwrap()).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::NotUtf8 {
                row: 2,
                column: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("latin1.csv: row 2, column 3"),
        "{err}"
    );
}

// ---------- found by fuzzing (fuzz/README.md) ----------

#[test]
fn float_idx_targets_read_as_classes_name_the_targets_file() {
    // fuzz `idx`: `--task classification` on a non-integral float target named the data set
    // (`d: ... is not a usable class label`), not the file holding the value.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-features-idx2-float",
        &idx_bytes(0x0D02, &[2, 1], &f32_payload(&[1.0, 2.0])),
    );
    let targets = write(
        dir.path(),
        "train-targets-idx1-float",
        &idx_bytes(0x0D01, &[2], &f32_payload(&[0.0, 127.5])),
    );
    let opts = LoadOptions {
        task: Some(Task::Classification),
        ..LoadOptions::default()
    };
    let err = load(&DataSource::IdxDir(dir.path().into()), &opts).unwrap_err();
    assert!(matches!(err, DataError::NotAClassLabel { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(targets.to_str().unwrap()),
        "{err}"
    );
}
