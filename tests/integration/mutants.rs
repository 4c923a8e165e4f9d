//! Checks that cannot be fooled (issue 20): the mutation report on the
//! clubdata lab, its survivors checked by hand in Postgres, a dataset that
//! kills them, and the same report from `pglab lab check --mutants --json`.

use crate::clubdata::cleaned_clubdata;
use crate::support::TestEnv;
use pglab::lab::LoadedLab;
use pglab::mutants::report::{CheckReport, Report};
use pglab::scoring::checks::Limits;
use std::collections::BTreeSet;

pub const REFERENCE: &str = "\\ir clubdata.sql\n\
CREATE VIEW cd.recent_members AS\n  SELECT memid, surname, firstname, joindate FROM cd.members WHERE joindate >= '2012-09-01';\n";

/// Rows on the boundaries the lab's data lacks.
pub const EDGE: &str = "\\ir clubdata.sql\n\
INSERT INTO cd.members VALUES (90, 'Boundary', 'Betty', '1 Edge Lane', 12345, '555-0100', NULL, '2012-09-01 00:00:00');\n\
INSERT INTO cd.facilities VALUES (9, 'Sauna', 0.50, 2, 100, 10);\n\
INSERT INTO cd.facilities VALUES (10, 'Voucher desk', -5, 0, 0, 0);\n";

pub fn club_lab(env: &TestEnv, id: &str, datasets: &[&str]) -> std::path::PathBuf {
    env.write("club/clubdata.sql", &cleaned_clubdata());
    env.write("club/reference.sql", REFERENCE);
    env.write("club/edge.sql", EDGE);
    let datasets = if datasets.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = datasets.iter().map(|d| format!("  - sql: {d}\n")).collect();
        format!("datasets:\n{}", items.concat())
    };
    let tasks = [
        "tasks:",
        "  - id: recent",
        "    title: Recent members",
        "    checks:",
        "      - view: cd.recent_members",
        "  - id: paying",
        "    title: Facilities members pay for",
        "    checks:",
        "      - query: SELECT facid, name FROM cd.facilities WHERE membercost > 0",
        "  - id: per-member",
        "    title: Bookings per member",
        "    checks:",
        "      - view: cd.member_bookings",
        "        expect: SELECT m.memid, m.surname, count(b.bookid) AS n FROM cd.members m LEFT JOIN cd.bookings b ON b.memid = m.memid GROUP BY m.memid, m.surname",
        "  - id: members",
        "    title: Members",
        "    checks:",
        "      - table: cd.members",
    ];
    env.write(
        &format!("club/{id}.yaml"),
        &format!(
            "id: {id}\ntitle: Country club\nreference: {{sql: reference.sql}}\nstarter: {{sql: clubdata.sql}}\n{datasets}{}\n",
            tasks.join("\n")
        ),
    )
}

fn check<'a>(r: &'a Report, task: &str) -> &'a CheckReport {
    r.checks.iter().find(|c| c.task == task).expect("check")
}

fn survivors(c: &CheckReport) -> BTreeSet<&str> {
    c.survivors.iter().map(|s| s.change.as_str()).collect()
}

fn alive(c: &CheckReport) -> BTreeSet<&str> {
    c.survivors
        .iter()
        .filter(|s| s.killed_by.is_empty())
        .map(|s| s.change.as_str())
        .collect()
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM ({sql}) AS t"), &[])
        .await
        .expect(sql)
        .get(0)
}

#[tokio::test]
async fn mutation_report_on_clubdata_and_what_a_dataset_adds() {
    let env = TestEnv::start(1).await;
    let server = &env.settings().postgres[0];
    let limits = Limits::of(&env.settings().scoring);
    let plain = club_lab(&env, "club", &[]);
    let lab = LoadedLab::load(&plain).expect("valid");
    let report = pglab::app::mutation_report(server, &lab, &limits)
        .await
        .expect("report");

    // Table checks have no mutants; the three others do.
    assert_eq!(report.checks.len(), 3, "{report:#?}");
    let recent = check(&report, "recent");
    assert_eq!(
        survivors(recent),
        BTreeSet::from(["`DISTINCT` added", "`>` instead of `>=`"]),
        "{recent:#?}"
    );
    let boundary = recent
        .survivors
        .iter()
        .find(|s| s.change == "`>` instead of `>=`")
        .expect("survivor");
    assert_eq!(
        boundary.explanation,
        "no row of `cd.members` has `joindate` exactly '2012-09-01 00:00:00', so `>` instead of `>=` gives the same rows: add one"
    );
    assert_eq!(
        (boundary.diff.removed.as_str(), boundary.diff.added.as_str()),
        (">=", ">")
    );
    let paying = check(&report, "paying");
    assert_eq!(
        survivors(paying),
        BTreeSet::from([
            "`DISTINCT` added",
            "`<>` instead of `>`",
            "`1` instead of `0`"
        ]),
        "{paying:#?}"
    );
    assert!(paying.survivors.iter().any(|s| s.explanation
        == "no row of `cd.facilities` has `membercost` below 0, so `<>` instead of `>` gives the same rows: add one"));
    let per_member = check(&report, "per-member");
    assert_eq!(
        survivors(per_member),
        BTreeSet::from([
            "`DISTINCT` added",
            "`FULL JOIN` instead of `LEFT JOIN`",
            "`m.surname` left out of GROUP BY",
            "`COUNT(DISTINCT ...)` instead of `COUNT(column)`",
        ]),
        "{per_member:#?}"
    );
    // Dropping the key from GROUP BY is no query at all: reported apart.
    assert_eq!(per_member.counts.errored, 1, "{per_member:#?}");
    assert!(per_member.errors[0]
        .error
        .contains("must appear in the GROUP BY"));
    assert_eq!(
        (
            report.counts.generated,
            report.counts.killed,
            report.counts.survived
        ),
        (30, 20, 9)
    );

    // The same cases written by hand and run in Postgres: the survivors
    // give the reference's rows, a killed one does not.
    env.apply(
        &plain,
        "username,name,email\nsam,Sam,sam@example.org\n",
        false,
    )
    .await
    .expect("apply");
    let db = env.admin(0, "pglab.ref.club").await;
    let members = "SELECT memid FROM cd.members WHERE joindate";
    assert_eq!(count(&db, &format!("{members} = '2012-09-01'")).await, 0);
    assert_eq!(
        count(&db, &format!("{members} >= '2012-09-01'")).await,
        count(&db, &format!("{members} > '2012-09-01'")).await
    );
    assert_eq!(
        count(&db, "SELECT 1 FROM cd.facilities WHERE membercost < 0").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT 1 FROM cd.facilities WHERE membercost > 1").await,
        count(&db, "SELECT 1 FROM cd.facilities WHERE membercost > 0").await
    );
    let per = "SELECT m.memid, count(b.bookid) FROM cd.members m {} cd.bookings b ON b.memid = m.memid GROUP BY m.memid";
    assert_ne!(
        count(&db, &per.replace("{}", "JOIN")).await,
        count(&db, &per.replace("{}", "LEFT JOIN")).await,
        "a member without bookings kills `JOIN`"
    );

    // A dataset with rows on those boundaries kills the comparisons'
    // survivors; what is left cannot be killed by any data.
    let with = club_lab(&env, "club2", &["edge.sql"]);
    let lab2 = LoadedLab::load(&with).expect("valid");
    let report2 = pglab::app::mutation_report(server, &lab2, &limits)
        .await
        .expect("report");
    assert_eq!(report2.datasets, vec!["edge.sql".to_string()]);
    assert_eq!(
        alive(check(&report2, "recent")),
        BTreeSet::from(["`DISTINCT` added"])
    );
    assert_eq!(
        alive(check(&report2, "paying")),
        BTreeSet::from(["`DISTINCT` added"])
    );
    assert_eq!(check(&report2, "paying").kills_by_dataset, vec![2]);
    assert_eq!(
        (report2.counts.killed, report2.counts.killed_with_datasets),
        (20, 23)
    );
    assert_eq!(report2.counts.survived_with_datasets, 6);

    // The command prints the same report as JSON (and is deterministic).
    let config = env.dir.path().join("pglab.yaml");
    std::fs::write(&config, env.settings().to_yaml()).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("--config")
        .arg(&config)
        .args(["lab", "check", "--mutants", "--json"])
        .arg(&with)
        .output()
        .expect("pglab");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(printed, serde_json::to_value(&report2).expect("value"));
    env.stop().await;
}

/// The recent-members view as a participant writes it: `cond` is its
/// WHERE clause.
fn recent_view(cond: &str) -> String {
    format!(
        "CREATE OR REPLACE VIEW cd.recent_members AS SELECT memid, surname, firstname, joindate FROM cd.members WHERE {cond}"
    )
}

#[tokio::test]
async fn hidden_datasets_judge_views_that_pass_on_the_visible_data() {
    let env = TestEnv::start(1).await;
    let lab = club_lab(&env, "clubh", &["edge.sql"]);
    env.apply(
        &lab,
        "username,name,email\nsam,Sam,sam@example.org\nkim,Kim,kim@example.org\n",
        false,
    )
    .await
    .expect("apply");
    // The dataset's copy is beside the reference, closed to all but the
    // hidden role.
    let copy = env.admin(0, "pglab.ds1.clubh").await;
    assert_eq!(count(&copy, "SELECT 1 FROM cd.members").await, 32);
    let sam = env
        .connect_as(0, "sam", &env.password("sam").await, "clubh_sam")
        .await
        .expect("sam");
    let refused = env
        .connect_as(0, "sam", &env.password("sam").await, "pglab.ds1.clubh")
        .await;
    assert!(refused.is_err(), "a student cannot enter a dataset copy");
    let kim = env
        .connect_as(0, "kim", &env.password("kim").await, "clubh_kim")
        .await
        .expect("kim");
    let mut scorer = env.scorer();
    let hidden_failure = (false, Some(pglab::scoring::hidden::REASON.to_string()));

    // `>` for `>=`: right on the lab's data (nobody joined at midnight of
    // the 1st), wrong on the dataset, which has such a member.
    sam.batch_execute(&recent_view("joindate > '2012-09-01'"))
        .await
        .expect("view");
    kim.batch_execute(&recent_view("joindate >= '2012-09-01'"))
        .await
        .expect("view");
    scorer.round().await;
    assert_eq!(scorer.task("clubh", "sam", "recent"), hidden_failure);
    assert_eq!(scorer.task("clubh", "kim", "recent"), (true, None));
    // A query check on tables: its answer is the data; no dataset judges it.
    assert_eq!(scorer.task("clubh", "sam", "paying"), (true, None));

    // Sam fixes the view (through a view of his own: those are copied too).
    sam.batch_execute(
        "CREATE VIEW cd.joined AS SELECT * FROM cd.members WHERE joindate >= '2012-09-01';\n\
         DROP VIEW cd.recent_members;\n\
         CREATE VIEW cd.recent_members AS SELECT memid, surname, firstname, joindate FROM cd.joined",
    )
    .await
    .expect("views");
    scorer.round().await;
    assert_eq!(scorer.task("clubh", "sam", "recent"), (true, None));

    // Hostile views, each right on the lab's data.
    // A function that tells what it reads to other sessions, or writes:
    // set_config is closed in the copies, and the participant's own
    // functions are not run there.
    kim.batch_execute(&recent_view(
        "joindate >= '2012-09-01' AND set_config('application_name', surname, true) IS NOT NULL",
    ))
    .await
    .expect("view");
    scorer.round().await;
    assert_eq!(scorer.task("clubh", "kim", "recent"), hidden_failure);
    // A sleep only on the dataset's extra member: closed there too.
    kim.batch_execute(&recent_view(
        "joindate >= '2012-09-01' AND CASE WHEN memid = 90 THEN pg_sleep(30) IS NOT NULL ELSE true END",
    ))
    .await
    .expect("view");
    let started = std::time::Instant::now();
    scorer.round().await;
    assert_eq!(scorer.task("clubh", "kim", "recent"), hidden_failure);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    kim.batch_execute(
        "CREATE FUNCTION cd.mark(m cd.members) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RETURN m.joindate >= '2012-09-01'; END $$;",
    )
    .await
    .expect("function");
    kim.batch_execute(&recent_view("cd.mark(members)"))
        .await
        .expect("view");
    scorer.round().await;
    assert_eq!(
        scorer.task("clubh", "kim", "recent"),
        (
            false,
            Some(pglab::scoring::hidden::OWN_FUNCTIONS.to_string())
        )
    );
    // An error only in the copy (a database that "does not exist") is the
    // answer's own: it fails, it does not keep an older result.
    kim.batch_execute(&recent_view(
        "joindate >= '2012-09-01' AND has_database_privilege(CASE WHEN current_database() LIKE 'pglab.ds%' THEN 'nowhere' ELSE current_database() END, 'CONNECT')",
    ))
    .await
    .expect("view");
    scorer.round().await;
    assert_eq!(scorer.task("clubh", "kim", "recent"), hidden_failure);
    // A table with the right rows instead of the view: right on the lab's
    // data, but there is no view to run on a dataset.
    kim.batch_execute(
        "DROP VIEW cd.recent_members; CREATE TABLE cd.recent_members AS SELECT memid, surname, firstname, joindate FROM cd.members WHERE joindate >= '2012-09-01'",
    )
    .await
    .expect("table");
    scorer.round().await;
    assert_eq!(scorer.task("clubh", "kim", "recent"), hidden_failure);
    // Recursion that only the dataset's extra member makes deep (last: a
    // timeout makes the database rest before it is checked again): stopped
    // by the same timeout as on the participant's own database.
    kim.batch_execute("DROP TABLE cd.recent_members")
        .await
        .expect("drop");
    let started = std::time::Instant::now();
    kim.batch_execute(&recent_view(
        "joindate >= '2012-09-01' AND (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT count(*) * 100000000 FROM cd.members WHERE memid = 90)) SELECT count(*) FROM r) > 0",
    ))
    .await
    .expect("view");
    scorer.round().await;
    let took = started.elapsed();
    assert_eq!(scorer.task("clubh", "kim", "recent"), hidden_failure);
    let limit = std::time::Duration::from_millis(env.settings().scoring.statement_timeout_ms);
    assert!(
        took < limit * 4 + std::time::Duration::from_secs(5),
        "{took:?}"
    );
    // Nothing stays behind in the copy: no view, no session, no change.
    assert_eq!(
        count(&copy, "SELECT 1 FROM pg_views WHERE schemaname = 'cd'").await,
        0
    );
    assert_eq!(count(&copy, "SELECT 1 FROM cd.members").await, 32);
    let admin = env.admin(0, "postgres").await;
    assert_eq!(
        count(
            &admin,
            "SELECT 1 FROM pg_stat_activity WHERE usename = 'pglab_hidden' AND state <> 'idle'"
        )
        .await,
        0
    );
    env.stop().await;
}
