//! `/metrics`: pglab's health (its own registry) and the scores of the
//! latest round, built from the published board at each scrape, so a scrape
//! never waits on a round and removed participants disappear at once.

use crate::scoring::{Board, Health, LabBoard, ParticipantBoard};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::Arc;

pub struct Metrics {
    pub health: Arc<Health>,
    pub board: Board,
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

impl Metrics {
    pub fn new(health: Arc<Health>, board: Board) -> Self {
        Self { health, board }
    }

    /// The scores as metric families, from the latest board.
    fn scores(&self) -> Registry {
        let r = Registry::new();
        let m = ScoreMetrics::register(&r);
        let snapshot = self.board.get();
        for (server, ok) in &snapshot.servers {
            m.up.with_label_values(&[server]).set(i64::from(*ok));
        }
        for lab in &snapshot.labs {
            m.lab(lab);
        }
        r
    }

    pub fn render(&self) -> String {
        let mut families = self.health.registry.gather();
        families.extend(self.scores().gather());
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("utf-8")
    }
}

/// The score families of one scrape.
struct ScoreMetrics {
    passed: IntGaugeVec,
    points: IntGaugeVec,
    first: GaugeVec,
    ratio: GaugeVec,
    tasks_passed: IntGaugeVec,
    connected: IntGaugeVec,
    activity: GaugeVec,
    progress: GaugeVec,
    since: GaugeVec,
    errors: IntCounterVec,
    info: IntGaugeVec,
    lab_tasks: IntGaugeVec,
    lab_people: IntGaugeVec,
    up: IntGaugeVec,
}

impl ScoreMetrics {
    fn register(r: &Registry) -> Self {
        let pl = &["lab", "participant"];
        let tl = &["lab", "participant", "task"];
        let errors = IntCounterVec::new(
            Opts::new(
                "pglab_participant_errors_total",
                "Transactions rolled back in the participant's database.",
            ),
            pl,
        )
        .expect("valid metric");
        r.register(Box::new(errors.clone()))
            .expect("registered once");
        Self {
            passed: int_gauge(
                r,
                "pglab_task_passed",
                "1 when the participant's task passes, else 0.",
                tl,
            ),
            points: int_gauge(
                r,
                "pglab_task_points",
                "Points the participant has for the task.",
                tl,
            ),
            first: gauge(
                r,
                "pglab_task_first_passed_timestamp_seconds",
                "When the task first passed (Unix time).",
                tl,
            ),
            ratio: gauge(
                r,
                "pglab_participant_score_ratio",
                "Points over the lab's maximum, 0 to 1.",
                pl,
            ),
            tasks_passed: int_gauge(
                r,
                "pglab_participant_tasks_passed",
                "Tasks the participant passes.",
                pl,
            ),
            connected: int_gauge(
                r,
                "pglab_participant_connected",
                "The participant's open sessions in their database.",
                pl,
            ),
            activity: gauge(
                r,
                "pglab_participant_last_activity_timestamp_seconds",
                "Last statement seen in the participant's database (Unix time).",
                pl,
            ),
            progress: gauge(
                r,
                "pglab_participant_last_progress_timestamp_seconds",
                "Last time the participant passed one more task (Unix time).",
                pl,
            ),
            since: gauge(
                r,
                "pglab_participant_connected_since_timestamp_seconds",
                "When the oldest of the participant's open sessions began (Unix time).",
                pl,
            ),
            errors,
            info: int_gauge(r, "pglab_lab_info", "A lab; always 1.", &["lab", "title"]),
            lab_tasks: int_gauge(r, "pglab_lab_tasks", "Tasks in the lab.", &["lab"]),
            lab_people: int_gauge(
                r,
                "pglab_lab_participants",
                "Participants in the lab.",
                &["lab"],
            ),
            up: int_gauge(
                r,
                "pglab_postgres_up",
                "1 when the Postgres server answered in the latest round.",
                &["server"],
            ),
        }
    }

    fn lab(&self, lab: &LabBoard) {
        self.info.with_label_values(&[&lab.id, &lab.title]).set(1);
        self.lab_tasks
            .with_label_values(&[&lab.id])
            .set(lab.tasks.len() as i64);
        self.lab_people
            .with_label_values(&[&lab.id])
            .set(lab.participants.len() as i64);
        let max = f64::from(lab.max_points().max(1));
        for p in &lab.participants {
            self.participant(lab, p, max);
        }
    }

    /// One participant's families; `max` is the lab's maximum of points.
    fn participant(&self, lab: &LabBoard, p: &ParticipantBoard, max: f64) {
        let who = if lab.pseudonymize {
            &p.pseudonym
        } else {
            &p.username
        };
        let l = [lab.id.as_str(), who.as_str()];
        self.connected.with_label_values(&l).set(p.connected);
        self.errors
            .with_label_values(&l)
            .inc_by(p.errors_total.max(0) as u64);
        let stamps = [
            (&self.activity, p.last_activity),
            (&self.progress, p.last_progress),
            (&self.since, p.connected_since.filter(|_| p.connected > 0)),
        ];
        for (family, at) in stamps {
            if let Some(at) = at {
                family.with_label_values(&l).set(at.timestamp() as f64);
            }
        }
        let Some(tasks) = &p.tasks else { return };
        self.ratio
            .with_label_values(&l)
            .set(f64::from(p.points()) / max);
        self.tasks_passed
            .with_label_values(&l)
            .set(p.passed() as i64);
        for (t, info) in tasks.iter().zip(&lab.tasks) {
            let tl = [lab.id.as_str(), who.as_str(), info.id.as_str()];
            self.passed.with_label_values(&tl).set(i64::from(t.passed));
            self.points.with_label_values(&tl).set(i64::from(t.points));
            if let Some(at) = t.first_passed {
                self.first.with_label_values(&tl).set(at.timestamp() as f64);
            }
        }
    }
}
