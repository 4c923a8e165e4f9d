//! `pglab lab check LAB --mutants [--json]`: the mutation report.

use crate::lab::LoadedLab;
use crate::mutants::report::{CheckReport, Counts, Report};
use crate::scoring::checks::Limits;
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;

pub async fn lab_check_mutants(config: &Path, file: &Path, json: bool) -> anyhow::Result<()> {
    let lab = LoadedLab::load(file)?;
    let settings = Settings::load(config)
        .context("a mutation report runs on a Postgres server: pglab needs its config")?;
    let server = &settings.postgres[0];
    let limits = Limits::of(&settings.scoring);
    let report = crate::app::mutation_report(server, &lab, &limits).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: valid; reference{} load into scratch databases on {}",
            file.display(),
            if lab.lab.datasets.is_empty() {
                " and starter"
            } else {
                ", starter and datasets"
            },
            server.name
        );
        for line in lines(&report) {
            println!("{line}");
        }
    }
    Ok(())
}

fn counts_line(c: &Counts, datasets: bool) -> String {
    let mut line = format!(
        "{} mutants: {} killed, {} survived",
        c.generated, c.killed, c.survived
    );
    if datasets {
        line += &format!(
            " (with the datasets: {} killed, {} survived)",
            c.killed_with_datasets, c.survived_with_datasets
        );
    }
    if c.errored > 0 {
        line += &format!(", {} failed to run", c.errored);
    }
    line
}

/// The report as text for a terminal.
pub fn lines(r: &Report) -> Vec<String> {
    let datasets = !r.datasets.is_empty();
    let mut out = vec![format!(
        "mutation report of lab {} ({})",
        r.lab,
        if datasets {
            format!(
                "the reference's data, then the datasets {}",
                r.datasets.join(", ")
            )
        } else {
            "the reference's data; no datasets".into()
        }
    )];
    for c in &r.checks {
        out.extend(check_lines(c, &r.datasets));
    }
    out.push(format!("lab: {}", counts_line(&r.counts, datasets)));
    out
}

fn check_lines(c: &CheckReport, datasets: &[String]) -> Vec<String> {
    let head = format!("task {}, check {} ({})", c.task, c.check + 1, c.label);
    if let Some(problem) = &c.problem {
        return vec![format!("{head}: no report: {problem}")];
    }
    let mut out = vec![format!(
        "{head}: {}",
        counts_line(&c.counts, !datasets.is_empty())
    )];
    for (name, kills) in datasets.iter().zip(&c.kills_by_dataset) {
        out.push(format!("  {name} kills {kills} of the survivors"));
    }
    for p in &c.dataset_problems {
        out.push(format!("  ! the reference SQL fails on dataset {p}"));
    }
    for s in &c.survivors {
        out.push(format!("  survives: {}", s.change));
        out.push(format!("      {}", s.diff.line()));
        out.push(format!("      {}", s.explanation));
        if !s.killed_by.is_empty() {
            out.push(format!("      killed by {}", s.killed_by.join(", ")));
        }
    }
    for e in &c.errors {
        out.push(format!("  failed to run: {}: {}", e.change, e.error));
    }
    out
}
