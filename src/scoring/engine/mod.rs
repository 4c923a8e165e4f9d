//! The scoring loop: every round, one query per server tells which lab
//! databases changed; only those are evaluated again (a few at a time per
//! server), the rest keep their cached result; then a new board is published.
//! Between full rounds (which read labs and participants again), a look
//! every `scoring.tick_ms` runs that query alone and evaluates and publishes
//! only when something changed.

mod lanes;
mod publish;
mod record;
mod replicas;
mod tick;

use super::activity::{self, Activity};
use super::board::Board;
use super::checks::{self, Limits};
use super::evaluate::{self, Expectations, TaskOutcome};
use super::health::Health;
use crate::control::{LabSpecRecord, ServerName, Store};
use crate::ident::{LabId, PgName, Username};
use crate::lab::Lab;
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct DbCache {
    signature: Option<activity::Signature>,
    outcomes: Option<Vec<TaskOutcome>>,
    first_passed: BTreeMap<String, DateTime<Utc>>,
    last_progress: Option<DateTime<Utc>>,
    last_activity: Option<DateTime<Utc>>,
    /// Points and tasks passed as stored, until this process evaluated
    /// the database: what its first evaluation is progress against.
    stored: Option<(u32, usize)>,
    error: Option<String>,
    /// Rounds in a row in which a check of this database timed out.
    timeouts: u32,
    /// Not evaluated again before this (back-off after timeouts).
    rest_until: Option<Instant>,
    /// When it was last evaluated, and how long that took.
    last_scored: Option<Instant>,
    last_took: Duration,
    /// Rows pglab wrote into the database's `pglab` schema that the
    /// statistics may not show yet (see `absorb_own_writes`).
    own_writes: Option<i64>,
    /// The database (oid) and lab version the `pglab` schema was last
    /// written for, with the task list.
    written_for: Option<(u32, DateTime<Utc>)>,
    /// Whether a participant was connected at the last round (`None`:
    /// not seen yet by this process), for the session history.
    connected: Option<bool>,
}

impl DbCache {
    /// After a round with (or without) a timeout: the next rest.
    fn note_timeouts(&mut self, timed_out: bool, interval: Duration, max: Duration) {
        if !timed_out {
            self.timeouts = 0;
            self.rest_until = None;
            return;
        }
        self.timeouts = self.timeouts.saturating_add(1);
        let rest = interval
            .saturating_mul(1 << (self.timeouts - 1).min(16))
            .min(max);
        self.rest_until = Some(Instant::now() + rest);
    }

    fn resting(&self) -> bool {
        self.rest_until.is_some_and(|t| Instant::now() < t)
    }

    /// pglab's own progress rows reached the statistics and nothing else
    /// changed: the database counts as unchanged. Only the first change of
    /// the statistics after the write may be pglab's own (the writing
    /// session's are flushed as it ends); whatever the counts, it is the
    /// last chance, so a later change of the same size is always evaluated.
    fn absorb_own_writes(&mut self, now: &activity::Signature) {
        let (Some(rows), Some(before)) = (self.own_writes, self.signature.as_ref()) else {
            return;
        };
        if before == now {
            return;
        }
        self.own_writes = None;
        if before.after_own_writes(rows) == *now {
            self.signature = Some(now.clone());
        }
    }
}

pub(super) struct LabCache {
    key: (String, DateTime<Utc>),
    lab: Lab,
    expected: Option<Arc<Expectations>>,
    dbs: BTreeMap<String, DbCache>,
}

pub struct Engine {
    settings: Arc<Settings>,
    store: Store,
    board: Board,
    health: Arc<Health>,
    labs: BTreeMap<String, LabCache>,
    /// Per lab: every participant and where their database is.
    participant_index: BTreeMap<String, Vec<Member>>,
    pseudonym_key: Option<String>,
    /// What the last full round placed, for the looks between rounds.
    placed: Option<Placements>,
    /// Whether each server answered, as the last round found.
    servers_up: Vec<(String, bool)>,
    /// An admin connection per server for the activity query, kept.
    clients: BTreeMap<String, crate::scoring::activity::Watch>,
    /// The activity the latest board was made from.
    published: BTreeMap<(String, String), Activity>,
    /// Per server, the activity digest of the last look.
    digests: BTreeMap<String, String>,
    /// Why each server that is down did not answer.
    server_errors: BTreeMap<String, String>,
    /// Per server, what was last written to the control database, when.
    health_written: BTreeMap<String, (bool, Instant)>,
    /// As one replica among several: its leases and shared rows.
    shared: Option<replicas::Shared>,
    /// Why the LDAP directory did not answer at the latest round.
    ldap_error: Option<String>,
}

/// A participant of a lab, for the board.
#[derive(Debug, Clone)]
pub(super) struct Member {
    username: Username,
    db: PgName,
    server: ServerName,
}

/// A lab database placed on a server.
#[derive(PartialEq)]
struct Placed {
    lab: LabId,
    db: PgName,
    owner: PgName,
}

/// Fills `dbs` (those in `only`, when given) with what the control database
/// keeps of them: when each task first passed, the stored points and
/// passes, the last progress and activity. A process that starts, or takes
/// a server's lease over, goes on from there: its first evaluation of a
/// database is progress only if it beats the stored score.
async fn load_stored(
    store: &Store,
    lab: &Lab,
    dbs: &mut BTreeMap<String, DbCache>,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<(), crate::control::StoreError> {
    let wanted = |db: &str| only.is_none_or(|o| o.contains(db));
    // Results of tasks the lab no longer has are kept, and count nowhere.
    let task = |id: &str| lab.tasks.iter().any(|t| t.id == id);
    for t in store.task_scores(&lab.id).await? {
        if !wanted(&t.database) || !task(&t.task) {
            continue;
        }
        let c = dbs.entry(t.database.clone()).or_default();
        let stored = c.stored.get_or_insert((0, 0));
        stored.0 += u32::try_from(t.points).unwrap_or(0);
        stored.1 += usize::from(t.passed);
        if let Some(at) = t.first_passed_at {
            c.first_passed.insert(t.task.clone(), at);
        }
    }
    for (db, progress, activity) in store.progress(&lab.id).await? {
        if wanted(&db) {
            let c = dbs.entry(db).or_default();
            c.last_progress = progress;
            c.last_activity = activity;
        }
    }
    Ok(())
}

/// Per server: every lab database placed there.
type Placements = BTreeMap<ServerName, Vec<Placed>>;

pub(super) struct Job {
    lab: LabId,
    db: PgName,
    server: ServerName,
    owner: PgName,
    /// The database's oid when its change was seen.
    oid: u32,
    /// Its checks timed out recently: it is evaluated in its server's slow
    /// lane, one database at a time, never in the lanes the others use.
    slow: bool,
}

impl Engine {
    pub fn new(settings: Arc<Settings>, store: Store, board: Board, health: Arc<Health>) -> Self {
        Self {
            settings,
            store,
            board,
            health,
            labs: BTreeMap::new(),
            participant_index: BTreeMap::new(),
            pseudonym_key: None,
            placed: None,
            servers_up: Vec::new(),
            clients: BTreeMap::new(),
            published: BTreeMap::new(),
            digests: BTreeMap::new(),
            server_errors: BTreeMap::new(),
            health_written: BTreeMap::new(),
            shared: None,
            ldap_error: None,
        }
    }

    fn limits(&self) -> Limits {
        Limits::of(&self.settings.scoring)
    }

    /// Runs full rounds every `interval_secs`, and looks for changes every
    /// `tick_ms` between them, until the process ends.
    pub async fn run(mut self) {
        let interval = Duration::from_secs(self.settings.scoring.interval_secs.max(1));
        let tick = Duration::from_millis(self.settings.scoring.tick_ms.max(100)).min(interval);
        let mut next_round = Instant::now();
        loop {
            let done = if Instant::now() >= next_round {
                next_round = Instant::now() + interval;
                self.round(None).await
            } else {
                self.tick().await
            };
            if let Err(e) = done {
                tracing::error!(error = %e, "scoring round failed");
                self.health.round_failed();
                self.placed = None;
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// One round over every lab (or one lab); returns the databases evaluated.
    #[tracing::instrument(skip_all)]
    pub async fn round(&mut self, only: Option<&str>) -> Result<usize, crate::control::StoreError> {
        let started = Instant::now();
        let began = chrono::Utc::now();
        if self.pseudonym_key.is_none() {
            self.pseudonym_key = Some(self.store.secret("pseudonym").await?);
        }
        let mut placements = self.placements(only).await?;
        if let Some(held) = self.held_servers().await {
            placements.retain(|server, _| held.contains(server.as_str()));
        }
        self.read_foreign(true).await;
        // The digests before the activity is read: a change in between is
        // seen again by the next look, never missed.
        let same = self.unchanged(&placements).await;
        let quiet =
            same && only.is_none() && self.placed.as_ref() == Some(&placements) && !self.pending();
        let (activity, mut servers, mut jobs) = if quiet {
            // Nothing happened since the last look (its digest says so, the
            // next transaction id included) and nothing is left to
            // evaluate: the activity is the one published.
            let up = placements.keys().map(|s| (s.to_string(), true)).collect();
            (self.published.clone(), up, vec![])
        } else {
            self.changes(&placements).await
        };
        self.reach_unplaced(&mut servers).await;
        self.others_health(&mut servers).await;
        // Students log in to psql through it: the board says when it is down.
        self.ldap_error = crate::provision::ldap::reachable(&self.settings.ldap)
            .await
            .err();
        let servers = self.merged(servers);
        self.record_health(&servers).await;
        // Longest unscored first, so that a round cut by its deadline
        // leaves a different tail each time.
        jobs.sort_by_key(|j| {
            self.labs
                .get(j.lab.as_str())
                .and_then(|l| l.dbs.get(j.db.as_str()))
                .and_then(|c| c.last_scored)
        });
        let evaluated = jobs.len();
        let skipped = activity.len().saturating_sub(evaluated);
        self.evaluate(jobs, &activity).await;
        self.publish(&activity, servers.clone(), began);
        self.write_own().await;
        self.published = activity;
        if only.is_none() {
            self.placed = Some(placements);
            self.servers_up = servers;
        }
        self.health
            .round_done(started.elapsed(), evaluated, skipped);
        Ok(evaluated)
    }

    /// The labs of this round (all, or `only`) refreshed, and per server
    /// their databases as (lab, database, owner).
    async fn placements(
        &mut self,
        only: Option<&str>,
    ) -> Result<Placements, crate::control::StoreError> {
        let specs: Vec<LabSpecRecord> = self
            .store
            .lab_specs()
            .await?
            .into_iter()
            .filter(|s| only.is_none_or(|o| o == s.lab.id.as_str()))
            .collect();
        self.labs
            .retain(|id, _| specs.iter().any(|s| s.lab.id.as_str() == id));
        let mut placements = Placements::new();
        self.participant_index.clear();
        for spec in &specs {
            self.refresh_lab(spec).await?;
            let id = &spec.lab.id;
            let dbs = self.store.databases(id).await?;
            let people = self.store.participants(id).await?;
            let index = people
                .into_iter()
                .filter_map(|p| {
                    let server = dbs.iter().find(|d| d.name == p.database)?.server.clone();
                    Some(Member {
                        username: p.username,
                        db: p.database,
                        server,
                    })
                })
                .collect();
            self.participant_index.insert(id.to_string(), index);
            for d in dbs {
                placements.entry(d.server).or_default().push(Placed {
                    lab: id.clone(),
                    db: d.name,
                    owner: d.owner,
                });
            }
        }
        for (id, cache) in &mut self.labs {
            cache.dbs.retain(|db, _| {
                placements
                    .values()
                    .flatten()
                    .any(|p| p.lab.as_str() == id && p.db.as_str() == db)
            });
        }
        Ok(placements)
    }

    /// One query per server: which databases changed (to be evaluated,
    /// unless resting), who is connected, which servers answered.
    async fn changes(
        &mut self,
        placements: &Placements,
    ) -> (
        BTreeMap<(String, String), Activity>,
        Vec<(String, bool)>,
        Vec<Job>,
    ) {
        let mut activity: BTreeMap<(String, String), Activity> = BTreeMap::new();
        let mut servers = Vec::new();
        let mut jobs = Vec::new();
        for (server, dbs) in placements {
            let Some(s) = self.settings.server(server.as_str()) else {
                continue;
            };
            let names: Vec<String> = dbs.iter().map(|p| p.db.to_string()).collect();
            let s = s.clone();
            let found = match self.activity_of(&s, &names).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(server = %server, error = %e, "cannot read activity");
                    self.server_errors.insert(server.to_string(), e.to_string());
                    servers.push((server.to_string(), false));
                    continue;
                }
            };
            servers.push((server.to_string(), true));
            for Placed { lab, db, owner } in dbs {
                let (lab_key, db_key) = (lab.as_str(), db.as_str());
                let Some(a) = found.get(db_key) else { continue };
                if let Some(c) = self
                    .labs
                    .get_mut(lab_key)
                    .and_then(|l| l.dbs.get_mut(db_key))
                {
                    c.absorb_own_writes(&a.signature);
                    record::sessions(&self.store, lab, db_key, c, a).await;
                }
                if let Some(slow) = self.needs_evaluation(lab_key, db_key, a) {
                    jobs.push(Job {
                        lab: lab.clone(),
                        db: db.clone(),
                        server: server.clone(),
                        owner: owner.clone(),
                        oid: a.signature.oid(),
                        slow,
                    });
                }
                if let Some(c) = self
                    .labs
                    .get_mut(lab_key)
                    .and_then(|l| l.dbs.get_mut(db_key))
                {
                    // A session that came and went between two rounds
                    // leaves only its writes: date them to this round.
                    let wrote = c
                        .signature
                        .as_ref()
                        .is_some_and(|s| s.writes() != a.signature.writes());
                    if let Some(at) = a.last_activity.or(wrote.then(Utc::now)) {
                        c.last_activity = Some(at);
                    }
                }
                activity.insert((lab.to_string(), db.to_string()), a.clone());
            }
        }
        (activity, servers, jobs)
    }

    /// `Some(slow)` when the database changed and is not resting (a resting
    /// one stays "changed" until its rest ends). Slow: its checks timed out
    /// lately, or its last evaluation took longer than one check may.
    /// Whether a database of the last published activity still waits for
    /// an evaluation (a round cut by its deadline, a rest that ended, a lab
    /// whose checks changed).
    fn pending(&self) -> bool {
        self.published
            .iter()
            .any(|((lab, db), a)| self.needs_evaluation(lab, db, a).is_some())
    }

    /// Adds the servers that hold nobody's database, found by connecting
    /// (the whole connect within its timeout: a frozen server completes
    /// TCP and never answers).
    async fn reach_unplaced(&mut self, servers: &mut Vec<(String, bool)>) {
        for s in &self.settings.postgres {
            if servers.iter().any(|(n, _)| n == &s.name) || !self.scores(&s.name) {
                continue;
            }
            let wait = crate::pgconn::CONNECT_TIMEOUT;
            let found =
                match tokio::time::timeout(wait, crate::pgconn::connect(s, "postgres")).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} s", wait.as_secs())),
                };
            if let Err(e) = &found {
                self.server_errors.insert(s.name.clone(), e.clone());
            }
            servers.push((s.name.clone(), found.is_ok()));
        }
    }

    fn needs_evaluation(&self, lab: &str, db: &str, a: &Activity) -> Option<bool> {
        let cache = self.labs.get(lab).and_then(|l| l.dbs.get(db));
        let changed = cache
            .is_none_or(|c| c.signature.as_ref() != Some(&a.signature) || c.outcomes.is_none());
        if !changed || cache.is_some_and(|c| c.resting()) {
            return None;
        }
        let statement_timeout = Duration::from_millis(self.settings.scoring.statement_timeout_ms);
        Some(cache.is_some_and(|c| c.timeouts > 0 || c.last_took > statement_timeout))
    }

    /// Loads a lab's expectations when the lab is new or changed.
    async fn refresh_lab(
        &mut self,
        spec: &LabSpecRecord,
    ) -> Result<(), crate::control::StoreError> {
        let id = spec.lab.id.to_string();
        let key = (spec.sources_digest.clone(), spec.updated_at);
        if self
            .labs
            .get(&id)
            .is_some_and(|c| c.key == key && c.expected.is_some())
        {
            return Ok(());
        }
        let mut dbs = self.labs.remove(&id).map(|c| c.dbs).unwrap_or_default();
        for db in dbs.values_mut() {
            db.signature = None; // the checks may have changed: score everything again
                                 // Results are kept by task position: a task not checked in
                                 // the next round must not keep another version's result.
            db.outcomes = None;
        }
        if dbs.is_empty() {
            load_stored(&self.store, &spec.lab, &mut dbs, None).await?;
        }
        let server = self
            .store
            .databases(&spec.lab.id)
            .await?
            .first()
            .and_then(|d| self.settings.server(d.server.as_str()))
            .unwrap_or(&self.settings.postgres[0])
            .clone();
        let expected = match evaluate::expectations(&server, &spec.lab, &self.limits()).await {
            Ok(e) => {
                // Students see a fixed text for these; the reason is here.
                for (task, checks) in spec.lab.tasks.iter().zip(&e) {
                    for check in checks {
                        if let checks::Expected::Broken(why) = check {
                            tracing::warn!(lab = %id, task = %task.id, reason = %why, "a check fails on the lab's reference database");
                        }
                    }
                }
                Some(Arc::new(e))
            }
            Err(e) => {
                tracing::warn!(lab = %id, error = %e, "cannot read the reference database");
                None
            }
        };
        self.labs.insert(
            id,
            LabCache {
                key,
                lab: spec.lab.clone(),
                expected,
                dbs,
            },
        );
        Ok(())
    }

    async fn evaluate(&mut self, jobs: Vec<Job>, activity: &BTreeMap<(String, String), Activity>) {
        let results = lanes::run(&self.settings, &self.labs, self.limits(), jobs).await;
        let now = Utc::now();
        for (job, result, took, written) in results {
            let a = &activity[&(job.lab.to_string(), job.db.to_string())];
            self.record(&job, result, took, a, now).await;
            self.note_written(&job, written);
        }
    }
}
