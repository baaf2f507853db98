//! Where studies are stored, as `--storage` names it, checked before any work: the journal under
//! the results directory (the default) or a PostgreSQL database in Optuna's schema.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;

/// A checked storage location.
#[derive(Clone, Debug)]
pub enum StorageUrl {
    /// One Optuna journal per study, `<results>/<study>/journal.log`.
    Journal { results: PathBuf },
    /// A PostgreSQL database that holds any number of studies.
    Postgres(Box<PostgresUrl>),
}

/// A PostgreSQL connection URL, parsed; shown without its password.
#[derive(Clone)]
pub struct PostgresUrl {
    pub(crate) config: postgres::Config,
    shown: String,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("`{0}` is not a storage nas knows: give postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave --storage out for the journal under --results")]
    Unknown(String),
    #[error("{url}: {message}")]
    BadPostgres { url: String, message: String },
}

impl StorageUrl {
    /// The storage `flag` names (`None`: the journal under `results`).
    pub fn parse(flag: Option<&str>, results: &Path) -> Result<StorageUrl, UrlError> {
        let Some(text) = flag.map(str::trim) else {
            return Ok(StorageUrl::journal(results));
        };
        if text == "journal" {
            return Ok(StorageUrl::journal(results));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(UrlError::Unknown(redact(text)));
        };
        // SQLAlchemy's `postgresql+psycopg2://`, as Optuna users write it, names a driver.
        let base = scheme.split('+').next().unwrap_or(scheme);
        if !matches!(base, "postgresql" | "postgres") {
            return Err(UrlError::Unknown(redact(text)));
        }
        let plain = format!("postgresql://{rest}");
        let shown = redact(&plain);
        let bad = |message: String| UrlError::BadPostgres {
            url: shown.clone(),
            message,
        };
        let config = postgres::Config::from_str(&plain).map_err(|e| bad(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(bad("the URL names no host".into()));
        }
        Ok(StorageUrl::Postgres(Box::new(PostgresUrl {
            config,
            shown,
        })))
    }

    /// The journal under `results`.
    pub fn journal(results: &Path) -> StorageUrl {
        StorageUrl::Journal {
            results: results.to_path_buf(),
        }
    }

    /// Where the studies are, for messages: the results directory, or the database's URL.
    pub fn place(&self) -> String {
        match self {
            StorageUrl::Journal { results } => results.display().to_string(),
            StorageUrl::Postgres(url) => url.to_string(),
        }
    }
}

/// `url` without the password of its user part or of a `password=` option.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon..at, "");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("password="))
            .collect();
        out = format!("{head}{}", kept.join("&"));
        out = out.trim_end_matches(['?', '&']).to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgresql://nas:s3cret@db:5432/nas"),
            "postgresql://nas@db:5432/nas"
        );
        assert_eq!(
            redact("postgresql://db/nas?user=a&password=x&sslmode=disable"),
            "postgresql://db/nas?user=a&sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://db/nas?password=x"),
            "postgresql://db/nas"
        );
        let url = StorageUrl::parse(Some("postgresql://u:pw@h:5/d"), Path::new("r"));
        assert_eq!(url.map(|u| u.place()), Ok("postgresql://u@h:5/d".into()));
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let r = Path::new("results");
        assert!(matches!(
            StorageUrl::parse(None, r),
            Ok(StorageUrl::Journal { .. })
        ));
        assert!(matches!(
            StorageUrl::parse(Some("postgresql+psycopg2://u@h/d"), r),
            Ok(StorageUrl::Postgres(_))
        ));
        assert!(matches!(
            StorageUrl::parse(Some("mysql://u:pw@h/d"), r),
            Err(UrlError::Unknown(u)) if u == "mysql://u@h/d"
        ));
        assert!(matches!(
            StorageUrl::parse(Some("postgresql://u@h:notaport/d"), r),
            Err(UrlError::BadPostgres { .. })
        ));
    }
}
