//! Errors raised while reading a search space, each pointing at `FILE:LINE:COLUMN`.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpaceError {
    #[error("{file}: cannot read the search space: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}:{col}: {message}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
}

impl SpaceError {
    /// An error at the first place in `text` where `key:` is written (1-based line and column),
    /// or at the start of the file when the key is absent.
    pub(crate) fn at_key(text: &str, file: &str, key: &str, message: String) -> SpaceError {
        let (line, col) = find_key(text, key).unwrap_or((1, 1));
        SpaceError::Invalid {
            file: file.to_string(),
            line,
            col,
            message,
        }
    }
}

/// Locates `key` followed by optional blanks and a colon, as a whole word, outside comments.
pub(crate) fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    for (ln, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut start = 0;
        while let Some(off) = code[start..].find(key) {
            let at = start + off;
            let before_ok = at == 0
                || !code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let rest = code[at + key.len()..].trim_start();
            if before_ok && rest.starts_with(':') {
                let col = code[..at].chars().count() + 1;
                return Some((ln + 1, col));
            }
            start = at + key.len();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find_key;

    #[test]
    fn find_key_skips_longer_names_and_comments() {
        let text = "(\n  // depth: 3\n  max_depth: 1,\n    depth: Range(1, 2),\n)";
        assert_eq!(find_key(text, "depth"), Some((4, 5)));
    }
}
