//! Mutation report benchmark (issue 20): a lab of 20 view and query checks
//! on clubdata. Side by side in one run: `pglab lab check` without the
//! report (reference, starter loaded into scratch databases: the
//! baseline) and with it (the same, plus every mutant of every check run
//! on the reference); then with two datasets. Medians of 3 runs.
//!
//! Then hidden datasets in scoring: the scoring benchmark's lab (20 checks,
//! 5 of them views) for N participants (default 300) twice, once without
//! datasets and once with two; a full round of each, then rounds where 10%
//! of one lab's participants changed a view's definition (same rows, so
//! the view still passes and is run on the datasets again), alternating,
//! medians of 3.
//!
//! Run: cargo bench --bench mutants [-- N]

mod common;

use pglab::lab::LoadedLab;
use pglab::scoring::checks::Limits;
use std::time::{Duration, Instant};

const QUERIES: [&str; 15] = [
    "SELECT facid, count(*) FROM cd.bookings GROUP BY facid",
    "SELECT m.surname, count(b.*) FROM cd.members m LEFT JOIN cd.bookings b USING (memid) GROUP BY m.surname",
    "SELECT f.name, avg(b.slots) FROM cd.facilities f JOIN cd.bookings b USING (facid) GROUP BY f.name",
    "SELECT memid, max(starttime) FROM cd.bookings GROUP BY memid",
    "SELECT date_part('dow', starttime) AS dow, sum(slots) FROM cd.bookings GROUP BY 1",
    "SELECT facid, name FROM cd.facilities WHERE membercost > 0",
    "SELECT memid, surname FROM cd.members WHERE joindate >= '2012-09-01'",
    "SELECT name FROM cd.facilities WHERE membercost > 0 AND membercost < monthlymaintenance / 50",
    "SELECT DISTINCT surname FROM cd.members ORDER BY surname LIMIT 10",
    "SELECT m.firstname, m.surname FROM cd.members m JOIN cd.members r ON r.recommendedby = m.memid GROUP BY m.firstname, m.surname",
    "SELECT b.starttime, f.name FROM cd.bookings b JOIN cd.facilities f ON f.facid = b.facid WHERE f.name LIKE 'Tennis%' AND b.starttime >= '2012-09-21' AND b.starttime < '2012-09-22'",
    "SELECT count(*) FROM cd.members WHERE recommendedby IS NULL",
    "SELECT facid, sum(slots) AS total FROM cd.bookings WHERE starttime >= '2012-09-01' AND starttime < '2012-10-01' GROUP BY facid HAVING sum(slots) > 1000",
    "SELECT surname FROM cd.members UNION SELECT name FROM cd.facilities",
    "SELECT m.memid, count(DISTINCT b.facid) FROM cd.members m LEFT JOIN cd.bookings b ON b.memid = m.memid WHERE m.memid > 0 GROUP BY m.memid",
];
const VIEWS: [&str; 5] = [
    "member_hours",
    "facility_revenue",
    "monthly",
    "recommenders",
    "busy_days",
];

fn lab_yaml(datasets: &str) -> String {
    let mut tasks = String::new();
    for (i, v) in VIEWS.iter().enumerate() {
        tasks +=
            &format!("  - id: view{i}\n    title: View {i}\n    checks:\n      - view: cd.{v}\n");
    }
    for (i, q) in QUERIES.iter().enumerate() {
        tasks += &format!(
            "  - id: query{i}\n    title: Query {i}\n    checks:\n      - query: \"{q}\"\n"
        );
    }
    format!("id: mut\ntitle: Mutation bench\nreference: {{sql: club.sql}}\nstarter: {{sql: club.sql}}\n{datasets}tasks:\n{tasks}")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let bench = common::Bench::start().await;
    let settings = bench.stack.settings.clone();
    let server = &settings.postgres[0];
    let limits = Limits::of(&settings.scoring);
    let dir = bench.dir.path();
    let club = format!(
        "{}\n{}",
        common::clubdata::cleaned_clubdata(),
        common::CLUB_VIEWS
    );
    std::fs::write(dir.join("club.sql"), &club).expect("club");
    for d in 1..=2 {
        std::fs::write(
            dir.join(format!("edge{d}.sql")),
            format!("\\ir club.sql\nINSERT INTO cd.members VALUES ({}, 'Edge', 'E', 'x', 1, 'x', NULL, '2012-09-01');\nINSERT INTO cd.facilities VALUES ({}, 'Edge', 0.5, 1, 1, 1);\n", 90 + d, 10 + d),
        )
        .expect("dataset");
    }
    std::fs::write(dir.join("lab.yaml"), lab_yaml("")).expect("lab");
    std::fs::write(
        dir.join("lab2.yaml"),
        lab_yaml("datasets:\n  - sql: edge1.sql\n  - sql: edge2.sql\n"),
    )
    .expect("lab");
    let lab = LoadedLab::load(&dir.join("lab.yaml")).expect("lab");
    let lab2 = LoadedLab::load(&dir.join("lab2.yaml")).expect("lab");
    let (mut base, mut with, mut with_ds) = (vec![], vec![], vec![]);
    let (mut report, mut report2) = (None, None);
    for _ in 0..3 {
        let t = Instant::now();
        pglab::app::check_lab_loads(server, &lab)
            .await
            .expect("loads");
        base.push(t.elapsed());
        let t = Instant::now();
        report = Some(
            pglab::app::mutation_report(server, &lab, &limits)
                .await
                .expect("report"),
        );
        with.push(t.elapsed());
        let t = Instant::now();
        report2 = Some(
            pglab::app::mutation_report(server, &lab2, &limits)
                .await
                .expect("report"),
        );
        with_ds.push(t.elapsed());
    }
    let (r, r2) = (report.expect("ran"), report2.expect("ran"));
    let (base, with, with_ds) = (median(base), median(with), median(with_ds));
    let mutants = r.counts.generated;
    let run_time = with.saturating_sub(base).as_secs_f64();
    println!("lab: 20 checks (5 views, 15 queries) on clubdata; medians of 3 runs");
    println!(
        "{:<44} {:>9.2} s",
        "lab check, no report (baseline: load)",
        base.as_secs_f64()
    );
    println!(
        "{:<44} {:>9.2} s   {} mutants: {} killed, {} survived, {} failed to run",
        "lab check --mutants",
        with.as_secs_f64(),
        mutants,
        r.counts.killed,
        r.counts.survived,
        r.counts.errored
    );
    println!(
        "{:<44} {:>9.2} s   mutants run: {:.0} per second ({:.2} s above the baseline)",
        "",
        with.as_secs_f64(),
        mutants as f64 / run_time.max(1e-9),
        run_time
    );
    println!(
        "{:<44} {:>9.2} s   killed {} -> {} with the datasets",
        "lab check --mutants, two datasets",
        with_ds.as_secs_f64(),
        r2.counts.killed,
        r2.counts.killed_with_datasets
    );
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    scoring_with_datasets(&bench, n).await;
    bench.stop().await;
}

/// Changes the definition (not the rows) of `cd.member_hours` in the
/// databases `dbs`, to variant `k`.
async fn change_views(settings: &pglab::settings::Settings, dbs: &[String], k: usize) {
    for db in dbs {
        let c = pglab::pgconn::connect(&settings.postgres[0], db)
            .await
            .expect("db");
        c.batch_execute(&format!(
            "CREATE OR REPLACE VIEW cd.member_hours AS SELECT m.memid, m.surname, sum(b.slots) / 2.0 AS hours
               FROM cd.members m JOIN cd.bookings b USING (memid) WHERE m.memid > -{k} - 1 GROUP BY m.memid, m.surname"
        ))
        .await
        .expect("view");
    }
}

async fn scoring_with_datasets(bench: &common::Bench, n: usize) {
    use pglab::scoring::{Board, Engine, Health};
    use std::sync::Arc;
    let settings = bench.stack.settings.clone();
    let dir = bench.dir.path();
    let plain = common::club_lab_yaml("");
    let with = plain.replace("id: bench", "id: hid").replace(
        "tasks:",
        "datasets:\n  - sql: edge1.sql\n  - sql: edge2.sql\ntasks:",
    );
    std::fs::write(dir.join("plain.yaml"), &plain).expect("lab");
    std::fs::write(dir.join("hid.yaml"), &with).expect("lab");
    let mut engine = Engine::new(
        Arc::new(settings.clone()),
        bench.store.clone(),
        Board::default(),
        Arc::new(Health::new()),
    );
    // Each lab provisioned, then a round that scores only its (new)
    // databases: the first round of each.
    let mut dbs = vec![];
    for file in ["plain.yaml", "hid.yaml"] {
        let lab = LoadedLab::load(&dir.join(file)).expect("lab");
        let took = common::provision_class(&settings, &bench.store, &lab, n).await;
        let t = Instant::now();
        let scored = engine.round(None).await.expect("round");
        println!(
            "lab {} ({} datasets): provisioned {n} in {:.1} s; first round ({scored} databases) {:.1} s",
            lab.lab.id,
            lab.lab.datasets.len(),
            took.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        let names: Vec<String> = bench
            .store
            .databases(&lab.lab.id)
            .await
            .expect("dbs")
            .into_iter()
            .map(|d| d.name.to_string())
            .collect();
        dbs.push(names);
    }
    let changed = n / 10;
    let (mut plain_rounds, mut hid_rounds) = (vec![], vec![]);
    for k in 1..=3 {
        for (lab, rounds) in [(0, &mut plain_rounds), (1, &mut hid_rounds)] {
            let some = &dbs[lab][(k * changed) % n..][..changed.min(n - (k * changed) % n)];
            change_views(&settings, some, k).await;
            let t = Instant::now();
            engine.round(None).await.expect("round");
            rounds.push(t.elapsed());
        }
    }
    let (p, h) = (median(plain_rounds), median(hid_rounds));
    println!(
        "round after {changed} of {n} changed a view: no datasets {:.2} s, two hidden datasets {:.2} s (+{:.2} s, {:.1} ms per changed database)",
        p.as_secs_f64(),
        h.as_secs_f64(),
        h.as_secs_f64() - p.as_secs_f64(),
        (h.as_secs_f64() - p.as_secs_f64()) * 1000.0 / changed as f64
    );
}
