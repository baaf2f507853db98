//! CSV loader: a header row, numeric feature columns and one label (classification) or target (regression) column.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::dataset::{numbered_class_names, Dataset, InputShape, Targets, Task};
use super::error::DataError;
use super::idx::io_error;

/// Splits one CSV record on commas; double-quoted fields may hold commas and `""` escapes.
pub(crate) fn split_record(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (',', false) => fields.push(std::mem::take(&mut field).trim().to_string()),
            _ => field.push(c),
        }
    }
    fields.push(field.trim().to_string());
    fields
}

/// A label cell written the same way whatever its spelling: `"1.0"` and `"1"` are both `"1"`.
fn canonical_label(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        _ => cell.to_string(),
    }
}

/// How to read the label/target column.
pub(crate) struct CsvSpec<'a> {
    pub target_column: Option<&'a str>,
    pub task: Option<Task>,
    /// Training data whose classes the labels must map onto (for a test file).
    pub like: Option<&'a Dataset>,
}

/// Reads a CSV file into a data set of shape `1x1xF`.
pub(crate) fn load_csv(path: &Path, spec: &CsvSpec<'_>) -> Result<Dataset, DataError> {
    let bytes = std::fs::read(path).map_err(|err| io_error(path, err))?;
    parse_csv(decode_utf8(&bytes, path)?, path, spec)
}

/// The bytes as text, or an error at the row and field of the first byte that is not UTF-8
/// (a Latin-1 export, say), which `read_to_string` would only report as "invalid data".
pub(crate) fn decode_utf8<'b>(bytes: &'b [u8], path: &Path) -> Result<&'b str, DataError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // The valid prefix is UTF-8 by construction, so the lossy conversion changes nothing.
        let prefix = String::from_utf8_lossy(&good[line_start..]);
        DataError::NotUtf8 {
            path: path.to_path_buf(),
            row: good.iter().filter(|&&b| b == b'\n').count() + 1,
            column: split_record(&prefix).len(),
        }
    })
}

/// Parses CSV text; `path` names the file in errors.
pub(crate) fn parse_csv(text: &str, path: &Path, spec: &CsvSpec<'_>) -> Result<Dataset, DataError> {
    let origin = path.display().to_string();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header_line)) = lines.next() else {
        return Err(DataError::Empty { origin });
    };
    let header = split_record(header_line.trim_start_matches('\u{feff}'));

    let target_name = match spec.target_column {
        Some(name) => name.to_string(),
        None if header.iter().any(|h| h == "label") => "label".to_string(),
        None if header.iter().any(|h| h == "target") => "target".to_string(),
        None => {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                wanted: "label` or `target".into(),
                columns: header.join(", "),
            })
        }
    };
    let positions: Vec<usize> = (0..header.len())
        .filter(|&j| header[j] == target_name)
        .collect();
    let target_col = match positions[..] {
        [j] => j,
        [] => {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                wanted: target_name,
                columns: header.join(", "),
            })
        }
        _ => {
            return Err(DataError::DuplicateColumn {
                path: path.to_path_buf(),
                name: target_name,
            })
        }
    };
    let n_features = header.len() - 1;
    if n_features == 0 {
        return Err(DataError::NoFeatures { origin });
    }

    let mut features = Vec::new();
    // (row number in the file, cell) of each label/target.
    let mut target_cells: Vec<(usize, String)> = Vec::new();
    for (row, line) in lines {
        let fields = split_record(line);
        if fields.len() != header.len() {
            return Err(DataError::RaggedRow {
                path: path.to_path_buf(),
                row,
                expected: header.len(),
                found: fields.len(),
            });
        }
        for (j, cell) in fields.iter().enumerate() {
            if j == target_col {
                continue;
            }
            features.push(parse_number(cell, path, row, j, &header[j])?);
        }
        target_cells.push((row, fields[target_col].clone()));
    }
    if target_cells.is_empty() {
        return Err(DataError::Empty { origin });
    }

    let task = match (spec.task, spec.like) {
        (Some(task), _) => task,
        (None, Some(like)) => like.task(),
        (None, None) => infer_task(&target_name, &target_cells),
    };
    let (targets, class_names) = match task {
        Task::Regression => {
            let mut values = Vec::with_capacity(target_cells.len());
            for (row, cell) in &target_cells {
                values.push(parse_number(cell, path, *row, target_col, &target_name)?);
            }
            (Targets::Values(values), Vec::new())
        }
        Task::Classification => {
            check_label_cells(&target_cells, path, target_col, &target_name)?;
            match spec.like {
                Some(like) => (
                    map_to_known_classes(&target_cells, like, &origin)?,
                    like.class_names.clone(),
                ),
                None => new_classes(&target_cells),
            }
        }
    };

    Ok(Dataset {
        name: dataset_name(path),
        shape: InputShape::flat(n_features),
        features: features.into(),
        targets,
        class_names,
    })
}

/// The file stem, or for `train.csv` / `test.csv` the folder (skipping one called `csv`): `digits/csv/train.csv` is `digits`.
fn dataset_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("csv");
    if matches!(stem, "train" | "test") {
        let mut dir = path.parent();
        if dir.and_then(|d| d.file_name()).and_then(|n| n.to_str()) == Some("csv") {
            dir = dir.and_then(|d| d.parent());
        }
        if let Some(name) = dir.and_then(|d| d.file_name()).and_then(|n| n.to_str()) {
            return name.to_string();
        }
    }
    stem.to_string()
}

/// Class labels may be names, but not blank, NaN or infinite.
fn check_label_cells(
    cells: &[(usize, String)],
    path: &Path,
    col: usize,
    name: &str,
) -> Result<(), DataError> {
    for (row, cell) in cells {
        let at = format!("row {row}, column {} (`{name}`)", col + 1);
        if cell.is_empty() {
            return Err(DataError::NotAClassLabel {
                origin: path.display().to_string(),
                at,
                value: cell.clone(),
            });
        }
        if let Ok(v) = cell.parse::<f32>() {
            if !v.is_finite() {
                return Err(DataError::NonFinite {
                    origin: path.display().to_string(),
                    at,
                    value: v,
                });
            }
        }
    }
    Ok(())
}

fn parse_number(
    cell: &str,
    path: &Path,
    row: usize,
    col: usize,
    name: &str,
) -> Result<f32, DataError> {
    let v: f32 = cell.parse().map_err(|_| DataError::NotANumber {
        path: path.to_path_buf(),
        row,
        column: col + 1,
        name: name.to_string(),
        value: cell.to_string(),
    })?;
    if !v.is_finite() {
        return Err(DataError::NonFinite {
            origin: path.display().to_string(),
            at: format!("row {row}, column {} (`{name}`)", col + 1),
            value: v,
        });
    }
    Ok(v)
}

/// `label` means classification and `target` regression; another column is a classification
/// when every value is a non-negative integer or not a number at all.
fn infer_task(column: &str, cells: &[(usize, String)]) -> Task {
    match column {
        "label" => Task::Classification,
        "target" => Task::Regression,
        _ => {
            let numbers: Option<Vec<f64>> =
                cells.iter().map(|(_, c)| c.parse::<f64>().ok()).collect();
            match numbers {
                None => Task::Classification,
                Some(v) if v.iter().all(|x| *x >= 0.0 && x.fract() == 0.0) => Task::Classification,
                Some(_) => Task::Regression,
            }
        }
    }
}

/// Labels that are exactly `0..k-1` are used as they are; anything else is mapped, in sorted
/// order (numeric when every label is a number), onto `0..k-1`, keeping the original spellings as class names.
fn new_classes(cells: &[(usize, String)]) -> (Targets, Vec<String>) {
    let canon: Vec<String> = cells.iter().map(|(_, c)| canonical_label(c)).collect();
    let ints: Option<BTreeSet<i64>> = canon.iter().map(|c| c.parse::<i64>().ok()).collect();
    let names: Vec<String> = match ints {
        Some(set) if set.iter().copied().eq(0..set.len() as i64) => numbered_class_names(set.len()),
        Some(set) => set.iter().map(|v| v.to_string()).collect(),
        None => {
            let floats: Option<Vec<f64>> = canon.iter().map(|c| c.parse::<f64>().ok()).collect();
            let mut distinct: Vec<String> = canon
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if floats.is_some() {
                distinct.sort_by(|a, b| {
                    let (x, y) = (
                        a.parse::<f64>().unwrap_or(0.0),
                        b.parse::<f64>().unwrap_or(0.0),
                    );
                    x.total_cmp(&y)
                });
            }
            distinct
        }
    };
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let labels = canon
        .iter()
        .map(|c| index.get(c.as_str()).copied().unwrap_or(0))
        .collect();
    let n_classes = names.len();
    (Targets::Classes { labels, n_classes }, names)
}

/// Maps test labels onto the classes of the training data `like`, by class name.
fn map_to_known_classes(
    cells: &[(usize, String)],
    like: &Dataset,
    origin: &str,
) -> Result<Targets, DataError> {
    let n_classes = like.n_classes().unwrap_or(0);
    let names = if like.class_names.is_empty() {
        numbered_class_names(n_classes)
    } else {
        like.class_names.clone()
    };
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut labels = Vec::with_capacity(cells.len());
    for (row, cell) in cells {
        let canon = canonical_label(cell);
        match index.get(canon.as_str()) {
            Some(&l) => labels.push(l),
            None => {
                let at = format!("row {row}");
                // A number beyond the classes reads better as "out of range" than as an unknown name.
                if let (Ok(label), true) = (
                    canon.parse::<usize>(),
                    names == numbered_class_names(n_classes),
                ) {
                    return Err(DataError::LabelOutOfRange {
                        origin: origin.to_string(),
                        at,
                        label,
                        n_classes,
                    });
                }
                return Err(DataError::UnknownClass {
                    origin: origin.to_string(),
                    at,
                    label: cell.clone(),
                    known: names.join(", "),
                });
            }
        }
    }
    Ok(Targets::Classes { labels, n_classes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_their_commas() {
        assert_eq!(
            split_record(r#"1, "a,b" ,"say ""hi""""#),
            vec!["1", "a,b", r#"say "hi""#]
        );
    }

    #[test]
    fn labels_written_as_floats_count_as_integers() {
        let (t, names) = new_classes(&[(2, "1.0".into()), (3, "0".into())]);
        assert_eq!(
            t,
            Targets::Classes {
                labels: vec![1, 0],
                n_classes: 2
            }
        );
        assert_eq!(names, vec!["0", "1"]);
    }

    #[test]
    fn sparse_integer_labels_are_mapped_in_numeric_order() {
        let (t, names) = new_classes(&[(2, "10".into()), (3, "2".into()), (4, "-1".into())]);
        assert_eq!(
            t,
            Targets::Classes {
                labels: vec![2, 1, 0],
                n_classes: 3
            }
        );
        assert_eq!(names, vec!["-1", "2", "10"]);
    }
}
