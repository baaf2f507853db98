//! A study kept in a PostgreSQL database in Optuna's relational schema, shared by workers on any
//! number of machines, and by Optuna, optuna-dashboard and `nas` alike.
//!
//! The study maps onto Optuna's model as in the journal ([`super::mapping`]): the same
//! attributes, parameters with their distributions, values in the study's direction. Trial
//! numbers are given as Optuna gives them, under a lock on the study's row, so that workers never
//! share nor skip one; a finished trial is never written again. Each worker's running trials get a
//! heartbeat on the database's clock ([`heartbeat`]); a trial whose heartbeat is older than twice
//! the interval was lost with its worker, and is failed so that its configuration runs again.

mod conn;
mod heartbeat;
mod load;
mod schema;

use super::mapping::{directions, ending, param_repr, study_attrs};
use super::optuna::{
    objective_names, FAIL_REASON, LOST_STALE, META_ATTR, METRIC_NAMES_ATTR, TEST_ATTR,
};
use super::url::PostgresUrl;
use super::{Direction, Objectives, Storage, StudyError, StudyMeta, TestResult, TrialRecord};
use crate::space::{Config, SearchSpace};
use conn::Db;
use heartbeat::Heartbeat;
use load::{Known, Row};
use postgres::{Client, GenericClient};
use schema::Found;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// A study in a PostgreSQL database.
pub struct PostgresStorage {
    db: Db,
    study: i32,
    meta: StudyMeta,
    maximize: bool,
    /// The study's space, for the distributions written with parameters.
    space: Option<SearchSpace>,
    records: Vec<TrialRecord>,
    /// What the records do not hold, by trial number.
    known: Vec<Known>,
    /// The largest trial id read so far.
    last_id: i32,
    test: Option<TestResult>,
    interval: Duration,
    /// Started with this worker's first trial.
    heartbeat: Option<Heartbeat>,
    /// Trials this worker was told were lost while it ran them (warned once each).
    warned: HashSet<usize>,
}

impl PostgresStorage {
    /// Opens the study named `meta.name`, or creates it (and Optuna's schema when the database
    /// has none). An existing study keeps its own metadata. Running trials get a heartbeat every
    /// `interval`.
    pub fn open_or_create(
        url: &PostgresUrl,
        meta: StudyMeta,
        interval: Duration,
    ) -> Result<PostgresStorage, StudyError> {
        let mut db = Db::connect(url)?;
        match db.run(|c| match schema::inspect(c)? {
            Found::Empty => schema::create(c),
            found => Ok(found),
        })? {
            Found::Revision(r) => return Err(old_schema(url, &r)),
            Found::Current | Found::Empty => {}
        }
        let attrs = study_attrs(&meta)?;
        let study = db.run(|c| create_study(c, &meta, &attrs))?;
        Self::load(db, study, interval)
    }

    /// Opens the existing study `name`.
    pub fn open(url: &PostgresUrl, name: &str) -> Result<PostgresStorage, StudyError> {
        let mut db = Db::connect(url)?;
        match db.run(schema::inspect)? {
            Found::Empty => return Err(StudyError::Missing(name.to_string())),
            Found::Revision(r) => return Err(old_schema(url, &r)),
            Found::Current => {}
        }
        let study = db
            .run(|c| {
                c.query_opt(
                    "SELECT study_id FROM studies WHERE study_name = $1",
                    &[&name],
                )
            })?
            .map(|r| r.get::<_, i32>(0))
            .ok_or_else(|| StudyError::Missing(name.to_string()))?;
        Self::load(db, study, super::DEFAULT_HEARTBEAT)
    }

    /// The `nas` study whose trials changed last, if the database holds any.
    pub fn latest_study(url: &PostgresUrl) -> Result<Option<String>, StudyError> {
        let mut db = Db::connect(url)?;
        if db.run(schema::inspect)? != Found::Current {
            return Ok(None);
        }
        let row = db.run(|c| {
            c.query_opt(
                "SELECT s.study_name FROM studies s \
                 JOIN study_system_attributes a ON a.study_id = s.study_id AND a.key = $1 \
                 LEFT JOIN trials t ON t.study_id = s.study_id \
                 GROUP BY s.study_id, s.study_name \
                 ORDER BY max(coalesce(t.datetime_complete, t.datetime_start)) DESC NULLS LAST, \
                 s.study_id DESC LIMIT 1",
                &[&META_ATTR],
            )
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn load(mut db: Db, study: i32, interval: Duration) -> Result<PostgresStorage, StudyError> {
        let url = db.url().to_string();
        let attrs = db.run(|c| {
            c.query(
                "SELECT key, value_json FROM study_system_attributes WHERE study_id = $1 \
                 AND key = $2 UNION ALL SELECT 'user:' || key, value_json \
                 FROM study_user_attributes WHERE study_id = $1 AND key = $3",
                &[&study, &META_ATTR, &TEST_ATTR],
            )
        })?;
        let mut meta = None;
        let mut test = None;
        for r in attrs {
            let (key, text): (String, Option<String>) = (r.get(0), r.get(1));
            let text = text.unwrap_or_default();
            if key == META_ATTR {
                meta = Some(serde_json::from_str::<StudyMeta>(&text).map_err(|e| {
                    StudyError::Database {
                        url: url.clone(),
                        message: format!("study attribute `{META_ATTR}`: {e}"),
                    }
                })?);
            } else {
                match serde_json::from_str(&text) {
                    Ok(t) => test = Some(t),
                    Err(e) => eprintln!("nas: warning: ignoring an unreadable `{TEST_ATTR}`: {e}"),
                }
            }
        }
        let meta = meta.ok_or_else(|| StudyError::Database {
            url: url.clone(),
            message: "the study was not created by nas (no `nas_meta` attribute)".into(),
        })?;
        let space =
            SearchSpace::from_str_named(&meta.space_source, &meta.name, &meta.space_file).ok();
        let mut s = PostgresStorage {
            db,
            study,
            // Intermediate values are the score's, in its direction, whichever objective comes
            // first.
            maximize: meta.metric.higher_is_better(),
            meta,
            space,
            records: Vec::new(),
            known: Vec::new(),
            last_id: 0,
            test,
            interval,
            heartbeat: None,
            warned: HashSet::new(),
        };
        s.refresh()?;
        Ok(s)
    }

    /// The trials to read again: those not finished at the last read.
    fn unfinished(&self) -> Vec<i32> {
        self.known
            .iter()
            .filter(|k| !k.finished)
            .map(|k| k.id)
            .collect()
    }

    /// Puts freshly read trials in place.
    fn apply(&mut self, rows: Vec<Row>) -> Result<(), StudyError> {
        for row in rows {
            let (record, known) =
                load::record(&row, &self.meta).map_err(|message| StudyError::Database {
                    url: self.db.url().to_string(),
                    message,
                })?;
            self.last_id = self.last_id.max(known.id);
            self.place(record, known);
        }
        Ok(())
    }

    fn place(&mut self, record: TrialRecord, known: Known) {
        let n = record.number;
        if n < self.records.len() && self.known[n].id == known.id {
            self.records[n] = record;
            self.known[n] = known;
        } else if n == self.records.len() {
            self.records.push(record);
            self.known.push(known);
        } else {
            // Numbers out of order (not from Optuna's numbering): keep them sorted.
            match self.known.iter().position(|k| k.id == known.id) {
                Some(i) => {
                    self.records[i] = record;
                    self.known[i] = known;
                }
                None => {
                    self.records.push(record);
                    self.known.push(known);
                }
            }
            let mut both: Vec<_> = self.records.drain(..).zip(self.known.drain(..)).collect();
            both.sort_by_key(|(r, _)| r.number);
            (self.records, self.known) = both.into_iter().unzip();
        }
    }

    /// A trial of this study by number, with its id.
    fn id_of(&self, number: usize) -> Result<i32, StudyError> {
        self.known
            .get(number)
            .filter(|_| self.records[number].number == number)
            .map(|k| k.id)
            .ok_or(StudyError::NoTrial(number))
    }

    /// Reads one trial again, after this worker wrote it.
    fn reload(&mut self, id: i32) -> Result<(), StudyError> {
        let study = self.study;
        let rows = self.db.run(|c| load::rows(c, study, i32::MAX, &[id]))?;
        self.apply(rows)
    }

    /// The value as Optuna sees it: the objective in the study's direction.
    fn directed(&self, loss: f64) -> f64 {
        if self.maximize {
            -loss
        } else {
            loss
        }
    }

    /// Whether trial `id` was failed as lost; then warns once that this worker's result for it
    /// is not recorded (another worker runs its configuration again).
    fn lost_while_running(&mut self, c_number: usize, id: i32) -> Result<bool, StudyError> {
        let reason: Option<String> = self
            .db
            .run(|c| {
                c.query_opt(
                    "SELECT value_json FROM trial_user_attributes WHERE trial_id = $1 AND key = $2",
                    &[&id, &FAIL_REASON],
                )
            })?
            .and_then(|r| r.get(0));
        let lost = reason.as_deref() == Some(json!(LOST_STALE).to_string().as_str());
        if lost && self.warned.insert(c_number) {
            eprintln!(
                "nas: warning: trial {c_number} was failed as lost by another worker while this one ran it (no heartbeat within the grace period); its result is not recorded"
            );
        }
        if let Some(h) = &self.heartbeat {
            h.remove(id);
        }
        Ok(lost)
    }
}

fn old_schema(url: &PostgresUrl, revision: &str) -> StudyError {
    StudyError::Database {
        url: url.to_string(),
        message: format!(
            "the database holds Optuna's schema at revision {revision}, and nas writes {}: upgrade it with `optuna storage upgrade --storage URL`",
            schema::ALEMBIC_REVISION
        ),
    }
}

/// The id of study `meta.name`, created with its direction and attributes if it is new; an
/// existing study gets the attributes it lacks (one Optuna made, or one made before `nas` named
/// its objective).
fn create_study(
    c: &mut Client,
    meta: &StudyMeta,
    (system, user): &Attrs,
) -> Result<i32, postgres::Error> {
    let mut tx = c.transaction()?;
    // The unique index on the name makes a second worker wait here for the first to commit.
    let created = tx.query_opt(
        "INSERT INTO studies (study_name) VALUES ($1) ON CONFLICT (study_name) DO NOTHING \
         RETURNING study_id",
        &[&meta.name],
    )?;
    let study: i32 = match created {
        Some(r) => r.get(0),
        None => tx
            .query_one(
                "SELECT study_id FROM studies WHERE study_name = $1",
                &[&meta.name],
            )?
            .get(0),
    };
    // One direction per objective: Optuna's multi-objective encoding. A study that exists keeps
    // its own (the unique index on (study_id, objective)).
    for (objective, d) in directions(meta).into_iter().enumerate() {
        let direction = match d {
            Direction::Maximize => "MAXIMIZE",
            Direction::Minimize => "MINIMIZE",
        };
        tx.execute(
            "INSERT INTO study_directions (direction, study_id, objective) \
             VALUES ($1::text::studydirection, $2, $3) ON CONFLICT DO NOTHING",
            &[&direction, &study, &(objective as i32)],
        )?;
    }
    let has_meta: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM study_system_attributes WHERE study_id = $1 AND key = $2)",
            &[&study, &META_ATTR],
        )?
        .get(0);
    if !has_meta {
        for (k, v) in system {
            set_attr(&mut tx, Table::StudySystem, study, k, v)?;
        }
        for (k, v) in user {
            set_attr(&mut tx, Table::StudyUser, study, k, v)?;
        }
    }
    let stored: Option<String> = tx
        .query_one(
            "SELECT value_json FROM study_system_attributes WHERE study_id = $1 AND key = $2",
            &[&study, &META_ATTR],
        )?
        .get(0);
    let objectives = stored
        .and_then(|t| serde_json::from_str::<StudyMeta>(&t).ok())
        .map_or_else(|| Objectives::of(meta), |m| Objectives::of(&m));
    if let Some(names) = objective_names(&objectives) {
        tx.execute(
            "INSERT INTO study_system_attributes (study_id, key, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT (study_id, key) DO NOTHING",
            &[&study, &METRIC_NAMES_ATTR, &names.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(study)
}

type Attrs = (Vec<(&'static str, Value)>, Vec<(&'static str, Value)>);

/// The attribute tables.
#[derive(Clone, Copy)]
enum Table {
    StudySystem,
    StudyUser,
}

/// The trial attribute tables.
#[derive(Clone, Copy)]
enum TrialTable {
    User,
    System,
}

/// Sets attribute `key` of the study or trial `id` to `v`, as JSON text (Optuna's `value_json`).
fn set_attr(
    c: &mut impl GenericClient,
    table: Table,
    id: i32,
    key: &str,
    v: &Value,
) -> Result<u64, postgres::Error> {
    let sql = match table {
        Table::StudySystem => {
            "INSERT INTO study_system_attributes (study_id, key, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT (study_id, key) DO UPDATE SET value_json = EXCLUDED.value_json"
        }
        Table::StudyUser => {
            "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT (study_id, key) DO UPDATE SET value_json = EXCLUDED.value_json"
        }
    };
    c.execute(sql, &[&id, &key, &v.to_string()])
}

/// Sets several user (or system) attributes of trial `id` in one statement.
fn set_trial_attrs(
    c: &mut impl GenericClient,
    id: i32,
    table: TrialTable,
    attrs: &[(&str, Value)],
) -> Result<u64, postgres::Error> {
    let keys: Vec<&str> = attrs.iter().map(|(k, _)| *k).collect();
    let values: Vec<String> = attrs.iter().map(|(_, v)| v.to_string()).collect();
    let sql = match table {
        TrialTable::System => {
            "INSERT INTO trial_system_attributes (trial_id, key, value_json) \
             SELECT $1::int4, k, v FROM unnest($2::text[], $3::text[]) AS a(k, v) \
             ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json"
        }
        TrialTable::User => {
            "INSERT INTO trial_user_attributes (trial_id, key, value_json) \
             SELECT $1::int4, k, v FROM unnest($2::text[], $3::text[]) AS a(k, v) \
             ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json"
        }
    };
    c.execute(sql, &[&id, &keys, &values])
}

/// Records the parameters of trial `id` (name, distribution JSON, internal value).
fn set_params(
    c: &mut impl GenericClient,
    id: i32,
    params: &[(String, String, f64)],
) -> Result<u64, postgres::Error> {
    let names: Vec<&str> = params.iter().map(|(n, _, _)| n.as_str()).collect();
    let dists: Vec<&str> = params.iter().map(|(_, d, _)| d.as_str()).collect();
    let values: Vec<f64> = params.iter().map(|(_, _, v)| *v).collect();
    c.execute(
        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
         SELECT $1::int4, n, v, d FROM unnest($2::text[], $3::float8[], $4::text[]) AS p(n, v, d) \
         ON CONFLICT (trial_id, param_name) DO UPDATE \
         SET param_value = EXCLUDED.param_value, distribution_json = EXCLUDED.distribution_json",
        &[&id, &names, &values, &dists],
    )
}

/// Records intermediate values of trial `id`: (step, value in the study's direction).
fn set_intermediate(
    c: &mut impl GenericClient,
    id: i32,
    steps: &[(i32, f64)],
) -> Result<u64, postgres::Error> {
    let numbers: Vec<i32> = steps.iter().map(|(s, _)| *s).collect();
    let stored: Vec<(Option<f64>, &str)> = steps.iter().map(|(_, v)| load::to_stored(*v)).collect();
    let values: Vec<Option<f64>> = stored.iter().map(|(v, _)| *v).collect();
    let kinds: Vec<&str> = stored.iter().map(|(_, k)| *k).collect();
    c.execute(
        "INSERT INTO trial_intermediate_values \
         (trial_id, step, intermediate_value, intermediate_value_type) \
         SELECT $1::int4, s, v, t::trialintermediatevaluetype \
         FROM unnest($2::int4[], $3::float8[], $4::text[]) AS i(s, v, t) \
         ON CONFLICT (trial_id, step) DO UPDATE SET intermediate_value = EXCLUDED.intermediate_value, \
         intermediate_value_type = EXCLUDED.intermediate_value_type",
        &[&id, &numbers, &values, &kinds],
    )
}

/// Locks trial `id` for this transaction and says whether it still runs.
fn lock_running(c: &mut impl GenericClient, id: i32) -> Result<bool, postgres::Error> {
    let row = c.query_opt(
        "SELECT state::text FROM trials WHERE trial_id = $1 FOR UPDATE",
        &[&id],
    )?;
    Ok(row.is_some_and(|r| r.get::<_, String>(0) == "RUNNING"))
}

/// What a write to a trial found.
enum Written {
    Done,
    /// The trial had already finished: nothing was written.
    Finished,
}

impl Storage for PostgresStorage {
    fn meta(&self) -> &StudyMeta {
        &self.meta
    }

    fn trials(&self) -> &[TrialRecord] {
        &self.records
    }

    fn refresh(&mut self) -> Result<(), StudyError> {
        let (study, after, again) = (self.study, self.last_id, self.unfinished());
        let rows = self.db.run(|c| load::rows(c, study, after, &again))?;
        self.apply(rows)
    }

    fn create_trial_within(&mut self, limit: Option<usize>) -> Result<Option<usize>, StudyError> {
        let (study, after, again) = (self.study, self.last_id, self.unfinished());
        let (records, known, meta) = (&self.records, &self.known, &self.meta);
        let (rows, created) = self.db.run(|c| {
            let mut tx = c.transaction()?;
            // Optuna's own lock: whoever holds the study's row counts the trials and adds one.
            tx.execute(
                "SELECT 1 FROM studies WHERE study_id = $1 FOR UPDATE",
                &[&study],
            )?;
            let rows = load::rows(&mut tx, study, after, &again)?;
            let counted = records
                .iter()
                .zip(known)
                .filter(|(r, k)| k.finished && super::counts_toward_total(r))
                .count()
                + rows
                    .iter()
                    .filter_map(|row| load::record(row, meta).ok())
                    .filter(|(r, _)| super::counts_toward_total(r))
                    .count();
            if limit.is_some_and(|n| counted >= n) {
                tx.commit()?;
                return Ok((rows, None));
            }
            let number: i64 = tx
                .query_one("SELECT count(*) FROM trials WHERE study_id = $1", &[&study])?
                .get(0);
            let number = number as i32;
            let id: i32 = tx
                .query_one(
                    "INSERT INTO trials (number, study_id, state, datetime_start) \
                     VALUES ($1, $2, 'RUNNING', now() AT TIME ZONE 'UTC') RETURNING trial_id",
                    &[&number, &study],
                )?
                .get(0);
            tx.execute(
                "INSERT INTO trial_heartbeats (trial_id, heartbeat) \
                 VALUES ($1, now() AT TIME ZONE 'UTC')",
                &[&id],
            )?;
            tx.commit()?;
            Ok((rows, Some((id, number))))
        })?;
        self.apply(rows)?;
        let Some((id, number)) = created else {
            return Ok(None);
        };
        let number = number as usize;
        self.last_id = self.last_id.max(id);
        self.place(
            TrialRecord::new(number, Config::new(), 0),
            Known {
                id,
                finished: false,
                curve: Default::default(),
            },
        );
        let interval = self.interval;
        let url = self.db.url().clone();
        self.heartbeat
            .get_or_insert_with(|| Heartbeat::start(&url, interval))
            .add(id);
        Ok(Some(number))
    }

    fn set_params(&mut self, number: usize, config: Config, seed: u64) -> Result<(), StudyError> {
        let id = self.id_of(number)?;
        let params: Vec<(String, String, f64)> = config
            .iter()
            .map(|(k, v)| {
                let (dist, internal) = param_repr(self.space.as_ref(), k, v);
                (k.clone(), dist, internal.as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        let written = self.db.run(|c| {
            let mut tx = c.transaction()?;
            if !lock_running(&mut tx, id)? {
                return Ok(Written::Finished);
            }
            set_params(&mut tx, id, &params)?;
            set_trial_attrs(&mut tx, id, TrialTable::User, &[("seed", json!(seed))])?;
            tx.commit()?;
            Ok(Written::Done)
        })?;
        match written {
            Written::Done => {
                let r = &mut self.records[number];
                r.config = config;
                r.seed = seed;
                Ok(())
            }
            Written::Finished if self.lost_while_running(number, id)? => Ok(()),
            Written::Finished => Err(finished(number)),
        }
    }

    fn report(&mut self, number: usize, epoch: usize, value: f64) -> Result<(), StudyError> {
        if !value.is_finite() {
            return Ok(());
        }
        let id = self.id_of(number)?;
        let (step, v) = (epoch as i32, self.directed(value));
        let written = self.db.run(|c| {
            c.execute(
                "INSERT INTO trial_intermediate_values \
                 (trial_id, step, intermediate_value, intermediate_value_type) \
                 SELECT $1, $2, $3, 'FINITE' WHERE EXISTS \
                 (SELECT 1 FROM trials WHERE trial_id = $1 AND state = 'RUNNING') \
                 ON CONFLICT (trial_id, step) DO UPDATE \
                 SET intermediate_value = EXCLUDED.intermediate_value, \
                 intermediate_value_type = EXCLUDED.intermediate_value_type",
                &[&id, &step, &v],
            )
        })?;
        if written == 0 {
            return match self.lost_while_running(number, id)? {
                true => Ok(()),
                false => Err(finished(number)),
            };
        }
        let sign = if self.maximize { -1.0 } else { 1.0 };
        let k = &mut self.known[number];
        k.curve.insert(step, v);
        self.records[number].intermediate = k.curve.values().map(|v| sign * v).collect();
        Ok(())
    }

    fn finish_trial(&mut self, record: TrialRecord) -> Result<(), StudyError> {
        let number = record.number;
        let id = self.id_of(number)?;
        let old = &self.records[number];
        let params: Vec<(String, String, f64)> = record
            .config
            .iter()
            .filter(|(k, v)| old.config.get(*k) != Some(*v))
            .map(|(k, v)| {
                let (dist, internal) = param_repr(self.space.as_ref(), k, v);
                (k.clone(), dist, internal.as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        let curve = &self.known[number].curve;
        let steps: Vec<(i32, f64)> = record
            .intermediate
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i32 + 1, self.directed(*v)))
            .filter(|(s, v)| v.is_finite() && curve.get(s) != Some(v))
            .collect();
        let end = ending(&record, old.seed, &Objectives::of(&self.meta), |v| {
            self.directed(v)
        })?;
        let code = load::state_name(end.state);
        let values: Vec<(Option<f64>, &str)> =
            end.values.iter().map(|v| load::to_stored(*v)).collect();
        let written = self.db.run(|c| {
            let mut tx = c.transaction()?;
            if !lock_running(&mut tx, id)? {
                return Ok(Written::Finished);
            }
            if !params.is_empty() {
                set_params(&mut tx, id, &params)?;
            }
            if !steps.is_empty() {
                set_intermediate(&mut tx, id, &steps)?;
            }
            set_trial_attrs(&mut tx, id, TrialTable::User, &end.attrs)?;
            if !end.system.is_empty() {
                set_trial_attrs(&mut tx, id, TrialTable::System, &end.system)?;
            }
            for (objective, (v, kind)) in values.iter().enumerate() {
                tx.execute(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) \
                     VALUES ($1, $2, $3, $4::text::trialvaluetype) \
                     ON CONFLICT (trial_id, objective) \
                     DO UPDATE SET value = EXCLUDED.value, value_type = EXCLUDED.value_type",
                    &[&id, &(objective as i32), v, kind],
                )?;
            }
            tx.execute(
                "UPDATE trials SET state = $2::text::trialstate, \
                 datetime_complete = now() AT TIME ZONE 'UTC' WHERE trial_id = $1",
                &[&id, &code],
            )?;
            tx.commit()?;
            Ok(Written::Done)
        })?;
        if let Some(h) = &self.heartbeat {
            h.remove(id);
        }
        match written {
            Written::Done => self.reload(id),
            Written::Finished if self.lost_while_running(number, id)? => self.reload(id),
            Written::Finished => Err(finished(number)),
        }
    }

    fn recover_stale(&mut self) -> Result<Vec<Config>, StudyError> {
        let study = self.study;
        let grace = 2.0 * self.interval.as_secs_f64();
        let mine = self
            .heartbeat
            .as_ref()
            .map(Heartbeat::ids)
            .unwrap_or_default();
        let reason = json!(LOST_STALE);
        let failed = self.db.run(|c| {
            let mut tx = c.transaction()?;
            // SKIP LOCKED: of two workers that see one stale trial, one fails it.
            let ids: Vec<i32> = tx
                .query(
                    "SELECT t.trial_id FROM trials t \
                     JOIN trial_heartbeats h ON h.trial_id = t.trial_id \
                     WHERE t.study_id = $1 AND t.state = 'RUNNING' AND NOT t.trial_id = ANY($3) \
                     AND h.heartbeat < (now() AT TIME ZONE 'UTC') - make_interval(secs => $2) \
                     FOR UPDATE OF t SKIP LOCKED",
                    &[&study, &grace, &mine],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for id in &ids {
                set_trial_attrs(
                    &mut tx,
                    *id,
                    TrialTable::User,
                    &[(FAIL_REASON, reason.clone()), ("error", reason.clone())],
                )?;
                tx.execute(
                    "UPDATE trials SET state = 'FAIL', datetime_complete = now() AT TIME ZONE 'UTC' \
                     WHERE trial_id = $1",
                    &[id],
                )?;
            }
            tx.commit()?;
            Ok(ids)
        })?;
        if failed.is_empty() {
            return Ok(Vec::new());
        }
        self.refresh()?;
        let failed: HashSet<i32> = failed.into_iter().collect();
        Ok(self
            .records
            .iter()
            .zip(&self.known)
            .filter(|(r, k)| failed.contains(&k.id) && !r.config.is_empty())
            .map(|(r, _)| r.config.clone())
            .collect())
    }

    fn set_test_result(&mut self, result: TestResult) -> Result<(), StudyError> {
        let value = serde_json::to_value(&result).map_err(|e| StudyError::Database {
            url: self.db.url().to_string(),
            message: e.to_string(),
        })?;
        let study = self.study;
        self.db
            .run(|c| set_attr(c, Table::StudyUser, study, TEST_ATTR, &value))?;
        self.test = Some(result);
        Ok(())
    }

    fn test_result(&self) -> Option<&TestResult> {
        self.test.as_ref()
    }

    fn location(&self) -> String {
        format!("{} (study `{}`)", self.db.url(), self.meta.name)
    }
}

fn finished(number: usize) -> StudyError {
    StudyError::Conflict(format!("trial {number} has already finished"))
}

#[cfg(test)]
mod tests {
    use super::super::optuna::state;
    use super::*;

    #[test]
    fn states_have_their_optuna_names() {
        for code in [
            state::RUNNING,
            state::COMPLETE,
            state::PRUNED,
            state::FAIL,
            state::WAITING,
        ] {
            assert_eq!(load::state_code(load::state_name(code)), code);
        }
        assert_eq!(load::to_stored(f64::NAN), (None, "NAN"));
        assert_eq!(load::to_stored(0.5), (Some(0.5), "FINITE"));
    }
}
