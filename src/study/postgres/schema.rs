//! Optuna's relational schema (`optuna/storages/_rdb/models.py` at alembic revision `v3.2.0.a`),
//! created once per database, also when several workers start at the same moment.
//!
//! The tables, columns, types, enum types, constraints and indexes are those Optuna's own
//! `create_all` makes on PostgreSQL (a test compares `pg_dump --schema-only` of both), so Optuna
//! and optuna-dashboard open the database as one of their own and may write to it too.

use postgres::{Client, GenericClient};

/// `version_info.schema_version`, which Optuna froze when it moved to alembic.
pub const SCHEMA_VERSION: i32 = 12;
/// The alembic revision of the schema, the head that current Optuna (3.2 and later) expects.
pub const ALEMBIC_REVISION: &str = "v3.2.0.a";

/// A key of PostgreSQL's advisory locks, held while the schema is created ("nas-sch").
const SCHEMA_LOCK: i64 = 0x006e_6173_2d73_6368;

const ENUMS: &[(&str, &str)] = &[
    ("studydirection", "'NOT_SET', 'MINIMIZE', 'MAXIMIZE'"),
    (
        "trialstate",
        "'RUNNING', 'COMPLETE', 'PRUNED', 'FAIL', 'WAITING'",
    ),
    ("trialvaluetype", "'FINITE', 'INF_POS', 'INF_NEG'"),
    (
        "trialintermediatevaluetype",
        "'FINITE', 'INF_POS', 'INF_NEG', 'NAN'",
    ),
];

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS studies (
    study_id SERIAL PRIMARY KEY,
    study_name VARCHAR(512) NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_studies_study_name ON studies (study_name);
CREATE TABLE IF NOT EXISTS study_directions (
    study_direction_id SERIAL PRIMARY KEY,
    direction studydirection NOT NULL,
    study_id INTEGER NOT NULL REFERENCES studies (study_id),
    objective INTEGER NOT NULL,
    UNIQUE (study_id, objective)
);
CREATE TABLE IF NOT EXISTS study_user_attributes (
    study_user_attribute_id SERIAL PRIMARY KEY,
    study_id INTEGER REFERENCES studies (study_id),
    key VARCHAR(512),
    value_json TEXT,
    UNIQUE (study_id, key)
);
CREATE TABLE IF NOT EXISTS study_system_attributes (
    study_system_attribute_id SERIAL PRIMARY KEY,
    study_id INTEGER REFERENCES studies (study_id),
    key VARCHAR(512),
    value_json TEXT,
    UNIQUE (study_id, key)
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id SERIAL PRIMARY KEY,
    number INTEGER,
    study_id INTEGER REFERENCES studies (study_id),
    state trialstate NOT NULL,
    datetime_start TIMESTAMP WITHOUT TIME ZONE,
    datetime_complete TIMESTAMP WITHOUT TIME ZONE
);
CREATE INDEX IF NOT EXISTS ix_trials_study_id ON trials (study_id);
CREATE TABLE IF NOT EXISTS trial_user_attributes (
    trial_user_attribute_id SERIAL PRIMARY KEY,
    trial_id INTEGER REFERENCES trials (trial_id),
    key VARCHAR(512),
    value_json TEXT,
    UNIQUE (trial_id, key)
);
CREATE TABLE IF NOT EXISTS trial_system_attributes (
    trial_system_attribute_id SERIAL PRIMARY KEY,
    trial_id INTEGER REFERENCES trials (trial_id),
    key VARCHAR(512),
    value_json TEXT,
    UNIQUE (trial_id, key)
);
CREATE TABLE IF NOT EXISTS trial_params (
    param_id SERIAL PRIMARY KEY,
    trial_id INTEGER REFERENCES trials (trial_id),
    param_name VARCHAR(512),
    param_value DOUBLE PRECISION,
    distribution_json TEXT,
    UNIQUE (trial_id, param_name)
);
CREATE TABLE IF NOT EXISTS trial_values (
    trial_value_id SERIAL PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials (trial_id),
    objective INTEGER NOT NULL,
    value DOUBLE PRECISION,
    value_type trialvaluetype NOT NULL,
    UNIQUE (trial_id, objective)
);
CREATE TABLE IF NOT EXISTS trial_intermediate_values (
    trial_intermediate_value_id SERIAL PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials (trial_id),
    step INTEGER NOT NULL,
    intermediate_value DOUBLE PRECISION,
    intermediate_value_type trialintermediatevaluetype NOT NULL,
    UNIQUE (trial_id, step)
);
CREATE TABLE IF NOT EXISTS trial_heartbeats (
    trial_heartbeat_id SERIAL PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials (trial_id),
    heartbeat TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    UNIQUE (trial_id)
);
CREATE TABLE IF NOT EXISTS version_info (
    version_info_id INTEGER NOT NULL PRIMARY KEY,
    schema_version INTEGER,
    library_version VARCHAR(256),
    CONSTRAINT version_info_version_info_id_check CHECK (version_info_id = 1)
);
CREATE TABLE IF NOT EXISTS alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
"#;

/// What a database holds of the schema.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// Optuna's schema at the revision `nas` writes.
    Current,
    /// No schema yet.
    Empty,
    /// Another revision (an older Optuna made it): `optuna storage upgrade` brings it forward.
    Revision(String),
}

/// What the database holds, without waiting for anyone.
pub fn inspect(c: &mut impl GenericClient) -> Result<Found, postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('alembic_version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(Found::Empty);
    }
    let row = c.query_opt("SELECT version_num FROM alembic_version LIMIT 1", &[])?;
    Ok(match row.map(|r| r.get::<_, String>(0)) {
        Some(v) if v == ALEMBIC_REVISION => Found::Current,
        Some(v) => Found::Revision(v),
        None => Found::Empty,
    })
}

/// Creates whatever is missing of the schema, in one transaction under an advisory lock: of
/// several workers that start together one creates it and the others find it made.
pub fn create(c: &mut Client) -> Result<Found, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    let found = inspect(&mut tx)?;
    if found != Found::Empty {
        tx.commit()?;
        return Ok(found);
    }
    for (name, values) in ENUMS {
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_type WHERE typname = $1 \
                 AND typnamespace = current_schema()::regnamespace)",
                &[name],
            )?
            .get(0);
        if !exists {
            tx.batch_execute(&format!("CREATE TYPE {name} AS ENUM ({values})"))?;
        }
    }
    tx.batch_execute(TABLES)?;
    let library = format!("nas {}", env!("CARGO_PKG_VERSION"));
    tx.execute(
        "INSERT INTO version_info (version_info_id, schema_version, library_version) \
         VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
        &[&SCHEMA_VERSION, &library],
    )?;
    tx.execute(
        "INSERT INTO alembic_version (version_num) SELECT $1::text \
         WHERE NOT EXISTS (SELECT 1 FROM alembic_version)",
        &[&ALEMBIC_REVISION],
    )?;
    tx.commit()?;
    Ok(Found::Current)
}
