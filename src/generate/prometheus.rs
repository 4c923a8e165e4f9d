//! `prometheus/prometheus.yml`, `prometheus/rules/{pglab,<lab>}.yml` and
//! promtool unit tests for every alert in `prometheus/tests/`.

use super::exporter::{checks_metric, expected_values, metric_name, Target};
use super::{header, GenerateOptions, Reference};
use crate::lab::Lab;
use crate::scoring::board::{STUCK_MINUTES, STUCK_SCRIPT, STUCK_SCRIPT_AT};
use std::path::PathBuf;

/// A string matched literally by a Prometheus regex (anchored by Prometheus).
fn regex_literal(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The exporter's `database` label becomes the `participant` label here, in
/// Prometheus, so that no name or pseudonym travels to a student database.
fn participant_relabels(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| {
            format!(
                "      - source_labels: [database]\n        regex: '{}'\n        target_label: participant\n        replacement: '{}'\n",
                regex_literal(&t.database).replace('\'', "''"),
                t.participant.replace('$', "$$").replace('\'', "''")
            )
        })
        .collect()
}

fn config(lab: &Lab, o: &GenerateOptions, targets: &[Target], token: &str) -> String {
    format!(
        r#"{}global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - rules/*.yml
scrape_configs:
  - job_name: pglab
{}    static_configs:
      - targets: ['{}']
  - job_name: sql-exporter
    static_configs:
      - targets: ['{}']
    # The participant label comes from the database name; the exporter's
    # own labels would show database names even where the lab
    # pseudonymizes participants, so they are dropped.
    metric_relabel_configs:
{}      - action: labeldrop
        regex: (database|host|user|driver|col|sql_job)
  - job_name: prometheus
    static_configs:
      - targets: ['{}']
"#,
        header(lab, "#"),
        super::scrape_authorization(token),
        o.pglab_address,
        o.exporter_address,
        participant_relabels(targets),
        o.prometheus_address
    )
}

/// Alerts about pglab itself, the same for every lab.
fn global_rules(lab: &Lab) -> String {
    format!(
        r#"{}groups:
  - name: pglab
    rules:
      - alert: PglabDown
        expr: up{{job="pglab"}} == 0
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: pglab does not answer on /metrics
      - alert: PglabPostgresDown
        expr: pglab_postgres_up == 0
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: "Postgres server {{{{ $labels.server }}}} does not answer"
      - alert: PglabScoringFailing
        expr: increase(pglab_scoring_rounds_failed_total[5m]) > 0
        for: 2m
        labels:
          severity: warning
        annotations:
          summary: pglab's scoring rounds are failing
"#,
        header(lab, "#")
    )
}

/// Per task: 1 when every check's fingerprint equals the reference's.
fn task_records(lab: &Lab, reference: &Reference) -> String {
    let mut out = String::new();
    for (task, expected) in lab.tasks.iter().zip(expected_values(lab, reference)) {
        let Some(expected) = expected else { continue };
        let checks: Vec<String> = expected
            .iter()
            .enumerate()
            .map(|(j, want)| {
                format!(
                    "({}{{check=\"{}\"}} == bool {want})",
                    checks_metric(lab, &task.id),
                    j + 1
                )
            })
            .collect();
        out.push_str(&format!(
            "      - record: {}\n        expr: min without (check) ({})\n",
            metric_name(lab, &task.id),
            checks.join(" or ")
        ));
    }
    out
}

fn lab_rules(lab: &Lab, reference: &Reference) -> String {
    let id = lab.id.as_str();
    format!(
        r#"{h}groups:
  - name: pglab_{g}_records
    rules:
      - record: lab:pglab_participant_score_ratio:avg
        expr: avg by (lab) (pglab_participant_score_ratio{{lab="{id}"}})
      - record: lab_task:pglab_task_passed:ratio
        expr: avg by (lab, task) (pglab_task_passed{{lab="{id}"}})
      - record: lab:pglab_participant_connected:count
        expr: count by (lab) (pglab_participant_connected{{lab="{id}"}} > 0)
  - name: pglab_{g}_exporter
    rules:
{tasks}  - name: pglab_{g}_alerts
    rules:
      # The board's "needs help" rule (scoring::board::STUCK_MINUTES):
      # connected, and neither progress nor a new session for {m} minutes.
      - alert: PglabParticipantStuck
        expr: pglab_participant_connected{{lab="{id}"}} > 0 unless on (lab, participant) (time() - pglab_participant_last_progress_timestamp_seconds{{lab="{id}"}} < {s}) unless on (lab, participant) (time() - pglab_participant_connected_since_timestamp_seconds{{lab="{id}"}} < {s})
        labels:
          severity: info
        annotations:
          summary: "{{{{ $labels.participant }}}} has been connected for {m} minutes without progress"
"#,
        h = header(lab, "#"),
        g = id.replace('-', "_"),
        tasks = task_records(lab, reference),
        m = STUCK_MINUTES,
        s = STUCK_MINUTES * 60,
    )
}

/// A promtool test of the first exported task's rule: one participant
/// whose fingerprints all match, one whose first check is off.
fn task_record_test(lab: &Lab, reference: &Reference) -> String {
    let Some((task, expected)) = lab
        .tasks
        .iter()
        .zip(expected_values(lab, reference))
        .find_map(|(t, e)| Some((t, e?)))
    else {
        return String::new();
    };
    let mut series = String::new();
    for (who, off) in [("right", 0), ("wrong", 1)] {
        for (j, want) in expected.iter().enumerate() {
            let value = if j == 0 { want + off } else { *want };
            series.push_str(&format!(
                "      - series: '{}{{participant=\"{who}\",task=\"{}\",check=\"{}\"}}'\n        values: '{value}x10'\n",
                checks_metric(lab, &task.id),
                task.id,
                j + 1
            ));
        }
    }
    let name = metric_name(lab, &task.id);
    format!(
        "  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n      - expr: {name}\n        eval_time: 5m\n        exp_samples:\n\
         \x20         - labels: '{name}{{participant=\"right\",task=\"{t}\"}}'\n            value: 1\n\
         \x20         - labels: '{name}{{participant=\"wrong\",task=\"{t}\"}}'\n            value: 0\n",
        t = task.id
    )
}

/// Promtool values of a series present from minute `from` (missing before)
/// with `value`, over 30 minutes.
fn from_minute(from: u32, value: String) -> String {
    match from {
        0 => format!("{value}x30"),
        m => format!("_x{} {value}x{}", m - 1, 30 - m),
    }
}

/// The scripted students of `STUCK_SCRIPT` as input series.
fn script_series(id: &str) -> String {
    let series = |metric: &str, who: &str, values: String| {
        format!("      - series: '{metric}{{lab=\"{id}\",participant=\"{who}\"}}'\n        values: '{values}'\n")
    };
    let mut out = String::new();
    for (who, connected, progress, _) in STUCK_SCRIPT {
        let online = match connected {
            None => "0x30".to_string(),
            Some(0) => "1x30".to_string(),
            Some(c) => format!("0x{} 1x{}", c - 1, 30 - c),
        };
        out.push_str(&series("pglab_participant_connected", who, online));
        if let Some(c) = connected {
            out.push_str(&series(
                "pglab_participant_connected_since_timestamp_seconds",
                who,
                from_minute(c, (c * 60).to_string()),
            ));
        }
        if let Some(p) = progress {
            out.push_str(&series(
                "pglab_participant_last_progress_timestamp_seconds",
                who,
                from_minute(p, (p * 60).to_string()),
            ));
        }
    }
    out
}

/// The alerts expected of `STUCK_SCRIPT` at `STUCK_SCRIPT_AT`.
fn script_alerts(id: &str) -> String {
    STUCK_SCRIPT
        .iter()
        .filter(|s| s.3)
        .map(|(who, ..)| {
            format!(
                "          - exp_labels:\n              severity: info\n              lab: {id}\n              participant: {who}\n            exp_annotations:\n              summary: {who} has been connected for {STUCK_MINUTES} minutes without progress\n"
            )
        })
        .collect()
}

fn lab_tests(lab: &Lab, reference: &Reference) -> String {
    let id = lab.id.as_str();
    format!(
        r#"{h}rule_files:
  - ../rules/{id}.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{script}      - series: 'pglab_participant_score_ratio{{lab="{id}",participant="busy"}}'
        values: '1x30'
      - series: 'pglab_participant_score_ratio{{lab="{id}",participant="stuck"}}'
        values: '0x30'
    promql_expr_test:
      - expr: lab:pglab_participant_score_ratio:avg
        eval_time: 5m
        exp_samples:
          - labels: 'lab:pglab_participant_score_ratio:avg{{lab="{id}"}}'
            value: 0.5
    alert_rule_test:
      - eval_time: 10m
        alertname: PglabParticipantStuck
        exp_alerts: []
      - eval_time: {at}m
        alertname: PglabParticipantStuck
        exp_alerts:
{alerts}{records}"#,
        h = header(lab, "#"),
        records = task_record_test(lab, reference),
        script = script_series(id),
        alerts = script_alerts(id),
        at = STUCK_SCRIPT_AT,
    )
}

fn global_tests(lab: &Lab) -> String {
    format!(
        r#"{}rule_files:
  - ../rules/pglab.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="pglab",instance="pglab:8080"}}'
        values: '1 1 0 0 0 0 0'
      - series: 'pglab_postgres_up{{server="main"}}'
        values: '1 1 0 0 0 0 0'
      - series: 'pglab_postgres_up{{server="node2"}}'
        values: '1 1 1 1 1 1 1'
      - series: 'pglab_scoring_rounds_failed_total'
        values: '0 0 1 2 3 4 5'
    alert_rule_test:
      - eval_time: 2m
        alertname: PglabDown
        exp_alerts: []
      - eval_time: 5m
        alertname: PglabDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: pglab, instance: "pglab:8080"}}
            exp_annotations: {{summary: pglab does not answer on /metrics}}
      - eval_time: 2m
        alertname: PglabPostgresDown
        exp_alerts: []
      - eval_time: 5m
        alertname: PglabPostgresDown
        exp_alerts:
          - exp_labels: {{severity: critical, server: main}}
            exp_annotations: {{summary: Postgres server main does not answer}}
      - eval_time: 1m
        alertname: PglabScoringFailing
        exp_alerts: []
      - eval_time: 6m
        alertname: PglabScoringFailing
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations: {{summary: "pglab's scoring rounds are failing"}}
"#,
        header(lab, "#")
    )
}

pub fn files(
    lab: &Lab,
    o: &GenerateOptions,
    reference: &Reference,
    targets: &[Target],
    metrics_token: &str,
) -> Vec<(PathBuf, String)> {
    let id = lab.id.as_str();
    vec![
        (
            "prometheus/prometheus.yml".into(),
            config(lab, o, targets, metrics_token),
        ),
        ("prometheus/rules/pglab.yml".into(), global_rules(lab)),
        (
            format!("prometheus/rules/{id}.yml").into(),
            lab_rules(lab, reference),
        ),
        ("prometheus/tests/pglab.test.yml".into(), global_tests(lab)),
        (
            format!("prometheus/tests/{id}.test.yml").into(),
            lab_tests(lab, reference),
        ),
    ]
}
