//! IDX files (the MNIST format): a generic big-endian header parser and a loader for `train-*` / `t10k-*` directories.

use std::path::{Path, PathBuf};

use super::dataset::{
    check_class_count, numbered_class_names, Dataset, Features, InputShape, Targets,
};
use super::error::DataError;

/// Element type of an IDX array, the third byte of the magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElemType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl ElemType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => Self::U8,
            0x09 => Self::I8,
            0x0B => Self::I16,
            0x0C => Self::I32,
            0x0D => Self::F32,
            0x0E => Self::F64,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            Self::U8 => 0x08,
            Self::I8 => 0x09,
            Self::I16 => 0x0B,
            Self::I32 => 0x0C,
            Self::F32 => 0x0D,
            Self::F64 => 0x0E,
        }
    }

    /// The type named by the last part of a conventional file name (`...-idx1-ubyte`).
    fn from_suffix(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "ubyte" => Self::U8,
            "sbyte" | "byte" => Self::I8,
            "short" => Self::I16,
            "int" => Self::I32,
            "float" => Self::F32,
            "double" => Self::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    pub(crate) fn is_integer(self) -> bool {
        !matches!(self, Self::F32 | Self::F64)
    }

    fn read(self, b: &[u8]) -> f32 {
        match self {
            Self::U8 => f32::from(b[0]),
            Self::I8 => f32::from(b[0] as i8),
            Self::I16 => f32::from(i16::from_be_bytes([b[0], b[1]])),
            Self::I32 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Self::F32 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            Self::F64 => {
                f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    }
}

/// A decoded IDX array; bytes are kept as bytes, other values are widened (or, for f64,
/// narrowed) to `f32`.
#[derive(Clone, Debug)]
pub(crate) struct IdxArray {
    pub dims: Vec<usize>,
    pub elem: ElemType,
    pub data: Features,
}

/// The magic number a conventional file name promises, e.g. `train-images-idx3-ubyte` -> 0x00000803.
pub(crate) fn magic_from_name(name: &str) -> Option<u32> {
    let mut parts = name.rsplit('-');
    let elem = ElemType::from_suffix(parts.next()?)?;
    let ndims: u8 = parts.next()?.strip_prefix("idx")?.parse().ok()?;
    Some(u32::from_be_bytes([0, 0, elem.code(), ndims]))
}

/// Decodes an IDX file held in memory; `path` only names it in errors.
pub(crate) fn parse_idx(
    bytes: &[u8],
    path: &Path,
    expected_magic: Option<u32>,
) -> Result<IdxArray, DataError> {
    let truncated = |expected: usize| DataError::Truncated {
        path: path.to_path_buf(),
        expected: expected as u64,
        actual: bytes.len() as u64,
    };
    let Some(head) = bytes.get(..4) else {
        return Err(truncated(4));
    };
    let found = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if let Some(expected) = expected_magic {
        if expected != found {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                expected,
                found,
            });
        }
    }
    let bad = |reason: &str| DataError::BadIdxHeader {
        path: path.to_path_buf(),
        found,
        reason: reason.to_string(),
    };
    if head[0] != 0 || head[1] != 0 {
        return Err(bad("the first two bytes must be zero"));
    }
    let elem = ElemType::from_code(head[2]).ok_or_else(|| {
        bad("unknown element type byte (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)")
    })?;
    let ndims = usize::from(head[3]);
    if ndims == 0 {
        return Err(bad("zero dimensions"));
    }
    let header_len = 4 + 4 * ndims;
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return Err(truncated(header_len));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let data_len = dims
        .iter()
        .try_fold(elem.size(), |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header_len))
        .ok_or_else(|| bad("dimensions too large"))?;
    if bytes.len() < data_len {
        return Err(truncated(data_len));
    }
    if bytes.len() > data_len {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected: data_len as u64,
            actual: bytes.len() as u64,
        });
    }
    let values = &bytes[header_len..];
    // Bytes stay bytes (each the value it stands for); other types become floats.
    let data = if elem == ElemType::U8 {
        Features::Bytes(values.to_vec())
    } else {
        Features::Floats(
            values
                .chunks_exact(elem.size())
                .map(|c| elem.read(c))
                .collect(),
        )
    };
    Ok(IdxArray { dims, elem, data })
}

/// Builds a data set from a features array and a labels/targets array.
/// Integer targets become class labels (`n_classes` = largest label + 1), float targets regression values.
pub(crate) fn dataset_from_arrays(
    name: &str,
    features: IdxArray,
    features_path: &Path,
    targets: IdxArray,
    targets_path: &Path,
) -> Result<Dataset, DataError> {
    let fbad = |reason: &str| DataError::BadIdxHeader {
        path: features_path.to_path_buf(),
        found: magic_of(&features),
        reason: reason.to_string(),
    };
    let shape = match features.dims[..] {
        [_, f] => InputShape::flat(f),
        [_, h, w] => InputShape::new(1, h, w),
        [_, c, h, w] => InputShape::new(c, h, w),
        [_] => return Err(fbad("a features file needs at least 2 dimensions (N x F)")),
        _ => {
            return Err(fbad(
                "a features file has at most 4 dimensions (N x C x H x W)",
            ))
        }
    };
    let n = features.dims[0];
    let n_targets = match targets.dims[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(DataError::BadIdxHeader {
                path: targets_path.to_path_buf(),
                found: magic_of(&targets),
                reason: format!(
                    "a labels/targets file must be one-dimensional, found dimensions {:?}",
                    targets.dims
                ),
            })
        }
    };
    if n != n_targets {
        return Err(DataError::CountMismatch {
            features: features_path.to_path_buf(),
            n_features: n,
            targets: targets_path.to_path_buf(),
            n_targets,
        });
    }
    if n == 0 {
        return Err(DataError::Empty {
            origin: features_path.display().to_string(),
        });
    }
    if shape.is_empty() {
        return Err(DataError::NoFeatures {
            origin: features_path.display().to_string(),
        });
    }
    let per = shape.len();
    if let Some((k, v)) = features.data.first_non_finite() {
        return Err(DataError::NonFinite {
            origin: features_path.display().to_string(),
            at: format!("sample {}, value {}", k / per, k % per),
            value: v,
        });
    }
    let (targets, class_names) = if targets.elem.is_integer() {
        let mut labels = Vec::with_capacity(n);
        for (i, v) in targets.data.iter().enumerate() {
            if v < 0.0 {
                return Err(DataError::NotAClassLabel {
                    origin: targets_path.display().to_string(),
                    at: format!("sample {i}"),
                    value: v.to_string(),
                });
            }
            labels.push(v as usize);
        }
        let n_classes = labels.iter().max().map_or(0, |m| m + 1);
        check_class_count(n_classes, &targets_path.display().to_string())?;
        (
            Targets::Classes { labels, n_classes },
            numbered_class_names(n_classes),
        )
    } else {
        if let Some((i, v)) = targets
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(DataError::NonFinite {
                origin: targets_path.display().to_string(),
                at: format!("sample {i}"),
                value: v,
            });
        }
        (Targets::Values(targets.data.into_f32()), Vec::new())
    };
    Ok(Dataset {
        name: name.to_string(),
        shape,
        features: features.data,
        targets,
        class_names,
    })
}

fn magic_of(a: &IdxArray) -> u32 {
    u32::from_be_bytes([0, 0, a.elem.code(), a.dims.len() as u8])
}

/// Which part of a data set a file prefix names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Train,
    Test,
}

impl Part {
    fn prefix(self) -> &'static str {
        match self {
            Part::Train => "train-",
            Part::Test => "t10k-",
        }
    }
}

/// The features file and the labels/targets file of one part.
#[derive(Clone, Debug)]
pub(crate) struct PartFiles {
    pub features: PathBuf,
    pub targets: PathBuf,
}

/// Finds `<prefix>{images,features}-*` and `<prefix>{labels,targets}-*` in `dir`; `None` when neither exists.
pub(crate) fn find_part(dir: &Path, part: Part) -> Result<Option<PartFiles>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|err| io_error(dir, err))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| io_error(dir, err))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(part.prefix()) && !name.ends_with(".gz") {
                names.push(name.to_string());
            }
        }
    }
    // Sorted so that the choice among several candidates does not depend on directory order.
    names.sort();
    let features = names
        .iter()
        .find(|n| n.contains("-images-") || n.contains("-features-"));
    let targets = names
        .iter()
        .find(|n| n.contains("-labels-") || n.contains("-targets-"));
    let p = part.prefix();
    match (features, targets) {
        (None, None) => Ok(None),
        (Some(f), Some(t)) => Ok(Some(PartFiles {
            features: dir.join(f),
            targets: dir.join(t),
        })),
        (Some(_), None) => Err(DataError::MissingFile {
            dir: dir.to_path_buf(),
            expected: format!("{p}labels-idx1-ubyte (or {p}targets-idx1-float)"),
        }),
        (None, Some(_)) => Err(DataError::MissingFile {
            dir: dir.to_path_buf(),
            expected: format!("{p}images-idx3-ubyte (or {p}features-idx2-float)"),
        }),
    }
}

pub(crate) fn io_error(path: &Path, err: std::io::Error) -> DataError {
    if err.kind() == std::io::ErrorKind::NotFound {
        DataError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}

fn read_array(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|err| io_error(path, err))?;
    parse_named(&bytes, path)
}

/// Decodes an IDX file held in memory, checking the magic number its conventional name promises.
fn parse_named(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    let expected = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(magic_from_name);
    parse_idx(bytes, path, expected)
}

/// Builds one part from a features file and a labels/targets file held in memory, as
/// [`load_part`] does from disk; the paths name the files in errors.
pub(crate) fn parse_part(
    name: &str,
    features: &[u8],
    features_path: &Path,
    targets: &[u8],
    targets_path: &Path,
) -> Result<Dataset, DataError> {
    let f = parse_named(features, features_path)?;
    let t = parse_named(targets, targets_path)?;
    dataset_from_arrays(name, f, features_path, t, targets_path)
}

/// Loads one part of an IDX directory.
pub(crate) fn load_part(name: &str, files: &PartFiles) -> Result<Dataset, DataError> {
    let features = read_array(&files.features)?;
    let targets = read_array(&files.targets)?;
    dataset_from_arrays(name, features, &files.features, targets, &files.targets)
}

/// One part of an IDX directory and the file its labels/targets came from (named in errors).
pub(crate) struct LoadedPart {
    pub data: Dataset,
    pub targets: PathBuf,
}

/// The training part of an IDX directory and its test part when there is one.
pub(crate) struct DirParts {
    pub train: LoadedPart,
    pub test: Option<LoadedPart>,
}

/// Loads the training part (required) and the test part (optional) of an IDX directory.
pub(crate) fn load_dir(dir: &Path) -> Result<DirParts, DataError> {
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let name = dataset_name(dir);
    let train_files = find_part(dir, Part::Train)?.ok_or_else(|| DataError::MissingFile {
        dir: dir.to_path_buf(),
        expected: "train-images-idx3-ubyte (or train-features-idx2-float) with train-labels-idx1-ubyte (or train-targets-idx1-float)".into(),
    })?;
    let part = |files: PartFiles| -> Result<LoadedPart, DataError> {
        Ok(LoadedPart {
            data: load_part(&name, &files)?,
            targets: files.targets,
        })
    };
    let train = part(train_files)?;
    let test = match find_part(dir, Part::Test)? {
        Some(files) => Some(part(files)?),
        None => None,
    };
    Ok(DirParts { train, test })
}

/// A readable name for a directory of IDX files: its own name, or its parent's when it is called `idx`.
pub(crate) fn dataset_name(dir: &Path) -> String {
    let own = dir.file_name().and_then(|n| n.to_str()).unwrap_or("data");
    if own == "idx" {
        if let Some(parent) = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
        {
            return parent.to_string();
        }
    }
    own.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn conventional_names_give_their_magic_numbers() {
        assert_eq!(magic_from_name("train-images-idx3-ubyte"), Some(0x0803));
        assert_eq!(magic_from_name("t10k-labels-idx1-ubyte"), Some(0x0801));
        assert_eq!(magic_from_name("train-features-idx2-float"), Some(0x0D02));
        assert_eq!(magic_from_name("train-targets-idx1-float"), Some(0x0D01));
        assert_eq!(magic_from_name("whatever"), None);
    }

    #[test]
    fn int16_and_float64_arrays_decode() {
        let mut b = header(0x0B01, &[2]);
        b.extend_from_slice(&(-3i16).to_be_bytes());
        b.extend_from_slice(&7i16.to_be_bytes());
        let a = parse_idx(&b, Path::new("x"), None).unwrap();
        assert_eq!(a.data, vec![-3.0, 7.0]);

        let mut b = header(0x0E02, &[1, 1]);
        b.extend_from_slice(&1.5f64.to_be_bytes());
        let a = parse_idx(&b, Path::new("x"), None).unwrap();
        assert_eq!(a.dims, vec![1, 1]);
        assert_eq!(a.data, vec![1.5]);
    }

    #[test]
    fn a_short_header_is_reported_as_truncated() {
        let b = header(0x0803, &[1]);
        let err = parse_idx(&b, Path::new("x"), None).unwrap_err();
        assert!(matches!(
            err,
            DataError::Truncated {
                expected: 16,
                actual: 8,
                ..
            }
        ));
    }
}
