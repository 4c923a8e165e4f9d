//! `grafana/dashboards/<lab>.json` (the progress board) and the provisioning
//! files that load it and the Prometheus data source.

use super::header;
use crate::lab::Lab;
use serde_json::{json, Value};
use std::path::PathBuf;

const DATASOURCE_UID: &str = "prometheus";

/// One panel; `targets` are (PromQL, legend, instant).
fn panel(
    id: u32,
    title: &str,
    kind: &str,
    grid: [u32; 4],
    targets: &[(&str, &str, bool)],
    field_config: Value,
    options: Value,
) -> Value {
    let ds = json!({"type": "prometheus", "uid": DATASOURCE_UID});
    let targets: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, (expr, legend, instant))| {
            json!({
                "datasource": ds,
                "expr": expr,
                "legendFormat": legend,
                "instant": instant,
                "range": !instant,
                "refId": ((b'A' + i as u8) as char).to_string(),
            })
        })
        .collect();
    json!({
        "id": id,
        "type": kind,
        "title": title,
        "datasource": ds,
        "gridPos": {"x": grid[0], "y": grid[1], "w": grid[2], "h": grid[3]},
        "targets": targets,
        "fieldConfig": field_config,
        "options": options,
    })
}

fn pass_fail_colours() -> Value {
    json!({
        "defaults": {
            "color": {"mode": "thresholds"},
            "mappings": [{"type": "value", "options": {
                "0": {"text": "open", "color": "red", "index": 0},
                "1": {"text": "passed", "color": "green", "index": 1}
            }}],
            "thresholds": {"mode": "absolute", "steps": [
                {"color": "red", "value": null}, {"color": "green", "value": 1}
            ]}
        },
        "overrides": []
    })
}

fn ratio_colours() -> Value {
    json!({
        "defaults": {
            "unit": "percentunit", "min": 0, "max": 1,
            "color": {"mode": "thresholds"},
            "thresholds": {"mode": "absolute", "steps": [
                {"color": "red", "value": null}, {"color": "orange", "value": 0.34}, {"color": "green", "value": 0.67}
            ]}
        },
        "overrides": []
    })
}

pub fn dashboard(lab: &Lab) -> Value {
    let id = lab.id.as_str();
    let sel = "lab=\"$lab\", participant=~\"$participant\"";
    let grid_q = format!("pglab_task_passed{{{sel}}}");
    let progress_q = "avg by (lab) (pglab_participant_score_ratio{lab=\"$lab\"})".to_string();
    let score_q = format!("pglab_participant_score_ratio{{{sel}}}");
    let rate_q = "avg by (task) (pglab_task_passed{lab=\"$lab\"})".to_string();
    let help_score = format!("pglab_participant_score_ratio{{{sel}}}");
    let help_errors = format!("increase(pglab_participant_errors_total{{{sel}}}[10m])");
    let help_idle =
        format!("(time() - pglab_participant_last_progress_timestamp_seconds{{{sel}}}) / 60");
    let help_connected = format!("pglab_participant_connected{{{sel}}}");
    let exporter_q = format!("sum by (participant) ({{__name__=~\"pglab_{}_.+_passed\", participant=~\"$participant\"}})", id.replace('-', "_"));
    let panels = vec![
        panel(
            1,
            "Participants x tasks",
            "state-timeline",
            [0, 0, 24, 12],
            &[(&grid_q, "{{participant}} / {{task}}", false)],
            pass_fail_colours(),
            json!({"showValue": "never", "mergeValues": true, "rowHeight": 0.9, "legend": {"showLegend": false}}),
        ),
        panel(
            2,
            "Class progress",
            "timeseries",
            [0, 12, 12, 8],
            &[(&progress_q, "average score", false)],
            ratio_colours(),
            json!({"legend": {"showLegend": true, "displayMode": "list", "placement": "bottom"}}),
        ),
        panel(
            3,
            "Score per participant",
            "bargauge",
            [12, 12, 12, 8],
            &[(&score_q, "{{participant}}", true)],
            ratio_colours(),
            json!({"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": true}),
        ),
        panel(
            4,
            "Pass rate per task",
            "bargauge",
            [0, 20, 12, 8],
            &[(&rate_q, "{{task}}", true)],
            ratio_colours(),
            json!({"orientation": "horizontal", "displayMode": "basic", "showUnfilled": true}),
        ),
        panel(
            5,
            "Needs help",
            "table",
            [12, 20, 12, 8],
            &[
                (&help_score, "score", true),
                (&help_errors, "errors in 10 min", true),
                (&help_idle, "minutes without progress", true),
                (&help_connected, "sessions", true),
            ],
            json!({"defaults": {"custom": {"cellOptions": {"type": "color-text"}}}, "overrides": []}),
            json!({"showHeader": true, "sortBy": [{"displayName": "Value #A", "desc": false}]}),
        ),
        panel(
            6,
            "Tasks passed, computed by the stock SQL exporter",
            "timeseries",
            [0, 28, 24, 8],
            &[(&exporter_q, "{{participant}}", false)],
            json!({"defaults": {"min": 0}, "overrides": []}),
            json!({"legend": {"showLegend": true, "displayMode": "list", "placement": "right"}}),
        ),
    ];
    json!({
        "uid": format!("pglab-{id}"),
        "title": format!("pglab: {}", lab.title),
        "description": header(lab, "").trim(),
        "tags": ["pglab"],
        "timezone": "browser",
        "editable": false,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {
                "name": "lab", "label": "Lab", "type": "query",
                "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                "query": "label_values(pglab_lab_info, lab)",
                "current": {"text": id, "value": id},
                "refresh": 1, "hide": 0, "multi": false, "includeAll": false, "options": [], "skipUrlSync": false, "sort": 1
            },
            {
                "name": "participant", "label": if lab.options.pseudonymize { "Participant (pseudonym)" } else { "Participant" }, "type": "query",
                "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                "query": "label_values(pglab_participant_connected{lab=\"$lab\"}, participant)",
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2, "hide": 0, "multi": true, "includeAll": true, "allValue": ".*", "options": [], "skipUrlSync": false, "sort": 1
            }
        ]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    })
}

pub fn files(lab: &Lab) -> Vec<(PathBuf, String)> {
    let dashboard = serde_json::to_string_pretty(&dashboard(lab)).expect("json") + "\n";
    let datasources = format!(
        "{}apiVersion: 1\ndatasources:\n  - name: Prometheus\n    type: prometheus\n    uid: {DATASOURCE_UID}\n    access: proxy\n    url: http://prometheus:9090\n    isDefault: true\n",
        header(lab, "#")
    );
    let providers = format!(
        "{}apiVersion: 1\nproviders:\n  - name: pglab\n    folder: pglab\n    type: file\n    disableDeletion: false\n    options:\n      path: /var/lib/grafana/dashboards\n",
        header(lab, "#")
    );
    vec![
        (
            format!("grafana/dashboards/{}.json", lab.id).into(),
            dashboard,
        ),
        (
            "grafana/provisioning/datasources/pglab.yaml".into(),
            datasources,
        ),
        (
            "grafana/provisioning/dashboards/pglab.yaml".into(),
            providers,
        ),
    ]
}

/// Every PromQL expression of a dashboard, for checking them.
pub fn expressions(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}
