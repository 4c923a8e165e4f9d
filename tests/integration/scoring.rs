//! Scripted students on a lab over clubdata: the scores, the metrics, `pglab
//! score` and a real Prometheus show who did what, within two rounds.

use crate::clubdata::cleaned_clubdata;
use crate::support::TestEnv;
use std::time::{Duration, Instant};

const SOLUTIONS: [&str; 4] = [
    "CREATE VIEW cd.expensive_facilities AS SELECT facid, name FROM cd.facilities WHERE monthlymaintenance > 100;",
    "CREATE TABLE cd.ratings (memid int REFERENCES cd.members, facid int REFERENCES cd.facilities, stars int NOT NULL, PRIMARY KEY (memid, facid));",
    "UPDATE cd.facilities SET guestcost = 30 WHERE facid = 0;",
    "DELETE FROM cd.bookings WHERE memid = 0 AND starttime < '2012-08-01';",
];

const LAB: &str = r#"id: club
title: Country club
reference: {sql: reference.sql}
starter: {sql: clubdata.sql}
tasks:
  - id: expensive
    title: Expensive facilities
    checks: [{view: cd.expensive_facilities}]
  - id: ratings
    title: Ratings table
    points: 2
    checks: [{table: cd.ratings, compare: [columns, primary_key, foreign_keys]}]
  - id: guestcost
    title: Raise the guest cost of tennis court 1
    checks: [{table: cd.facilities, compare: [rows]}]
  - id: cleanup
    title: Old guest bookings
    checks:
      - query: SELECT memid, count(*) FROM cd.bookings GROUP BY memid
"#;

const ALL: [&str; 4] = ["expensive", "ratings", "guestcost", "cleanup"];

async fn prometheus_ratio(port: u16) -> Vec<(String, f64)> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query=pglab_participant_score_ratio");
    let Ok(resp) = reqwest::get(&url).await else {
        return vec![];
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut out: Vec<(String, f64)> = body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let who = r["metric"]["participant"].as_str()?.to_string();
            let v = r["value"][1].as_str()?.parse().ok()?;
            Some((who, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn scripted_students_show_up_in_scores_metrics_and_prometheus() {
    let mut env = TestEnv::start_with(1, true).await;
    env.stack.settings.scoring.interval_secs = 1;
    let club = cleaned_clubdata();
    env.write("club/clubdata.sql", &club);
    env.write(
        "club/reference.sql",
        &format!("{club}\n{}\n", SOLUTIONS.join("\n")),
    );
    let lab = env.write("club/lab.yaml", LAB);
    let people = "username,name,email\ns_all,All,a@example.org\ns_none,None,n@example.org\ns_half,Half,h@example.org\ns_break,Break,b@example.org\n";
    env.apply(&lab, people, false).await.expect("apply");

    let mut scorer = env.scorer();
    assert_eq!(scorer.round().await, 4, "the first round scores everybody");
    assert_eq!(
        scorer.round().await,
        0,
        "nothing changed: nothing evaluated"
    );
    for user in ["s_all", "s_none", "s_half", "s_break"] {
        assert!(scorer.passed("club", user).is_empty(), "{user}");
    }

    let work = |user: &'static str, sql: String| {
        let env = &env;
        async move {
            let c = env
                .connect_as(0, user, &env.password(user).await, &format!("club_{user}"))
                .await
                .expect("login");
            c.batch_execute(&sql).await.expect("student SQL");
        }
    };
    work("s_all", SOLUTIONS.join("\n")).await;
    work("s_half", SOLUTIONS[..2].join("\n")).await;
    work("s_break", SOLUTIONS.join("\n")).await;
    scorer.round().await;
    scorer.round().await;
    assert_eq!(scorer.passed("club", "s_all"), ALL);
    assert!(scorer.passed("club", "s_none").is_empty());
    assert_eq!(scorer.passed("club", "s_half"), ["expensive", "ratings"]);
    assert_eq!(scorer.passed("club", "s_break"), ALL);
    assert_eq!(
        scorer.task("club", "s_none", "expensive").1.as_deref(),
        Some("missing view cd.expensive_facilities")
    );
    assert_eq!(
        scorer.task("club", "s_half", "cleanup").1.as_deref(),
        Some("1 row missing, 1 unexpected (a row matches only when all its values do)")
    );

    work("s_break", "DROP VIEW cd.expensive_facilities; UPDATE cd.facilities SET guestcost = 31 WHERE facid = 0;".into()).await;
    scorer.round().await;
    scorer.round().await;
    assert_eq!(scorer.passed("club", "s_break"), ["ratings", "cleanup"]);
    assert_eq!(
        scorer.task("club", "s_break", "guestcost").1.as_deref(),
        Some("1 row missing, 1 unexpected (a row matches only when all its values do)")
    );

    // `pglab score --json` (the real binary) says the same.
    let config = env.settings().data_dir.join("pglab.yaml");
    std::fs::write(&config, env.settings().to_yaml()).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("--config")
        .arg(&config)
        .args(["score", "club", "--json"])
        .output()
        .expect("pglab score");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let passed = |user: &str| -> usize {
        json["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .find(|p| p["username"] == user)
            .expect("user")["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter(|t| t["passed"] == true)
            .count()
    };
    assert_eq!(
        [
            passed("s_all"),
            passed("s_none"),
            passed("s_half"),
            passed("s_break")
        ],
        [4, 0, 2, 2]
    );

    // The web app's /metrics, scraped by a real Prometheus.
    let server = env.serve().await;
    let metrics = server.metrics.clone();
    let port = env
        .stack
        .prometheus
        .as_ref()
        .expect("prometheus is installed")
        .port;
    let want = vec![
        ("s_all".to_string(), 1.0),
        ("s_break".into(), 0.6),
        ("s_half".into(), 0.6),
        ("s_none".into(), 0.0),
    ];
    let started = Instant::now();
    let mut got = vec![];
    while started.elapsed() < Duration::from_secs(60) {
        got = prometheus_ratio(port).await;
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        got, want,
        "Prometheus' view of pglab_participant_score_ratio"
    );
    let text = metrics.render();
    assert!(
        text.contains("pglab_task_passed{lab=\"club\",participant=\"s_half\",task=\"ratings\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pglab_postgres_up{server=\"main\"} 1"),
        "{text}"
    );

    // A pruned participant's series are gone after the next round.
    let three = "username,name,email\ns_all,All,a@example.org\ns_half,Half,h@example.org\ns_break,Break,b@example.org\n";
    env.apply(&lab, three, true).await.expect("prune s_none");
    let started = Instant::now();
    while metrics.render().contains("participant=\"s_none\"") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "s_none still exported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn pseudonymized_lab_hides_usernames_on_metrics() {
    let env = TestEnv::start(1).await;
    let lab_path = crate::support::shop_lab(&env, "anon");
    let text = std::fs::read_to_string(&lab_path)
        .expect("read")
        .replace("pseudonymize: false", "pseudonymize: true");
    let lab = env.write("lab/anon.yaml", &text);
    env.apply(
        &lab,
        "username,name,email\nzoe,Zoe,zoe@example.org\n",
        false,
    )
    .await
    .expect("apply");
    let mut scorer = env.scorer();
    scorer.round().await;
    let health = std::sync::Arc::new(pglab::scoring::Health::new());
    let text = pglab::metrics::Metrics::new(health, scorer.board.clone()).render();
    assert!(!text.contains("zoe"), "{text}");
    let pseudonym = scorer.board.get().labs[0].participants[0].pseudonym.clone();
    assert!(
        pseudonym.starts_with("p-") && text.contains(&format!("participant=\"{pseudonym}\"")),
        "{text}"
    );

    // The lab master maps pseudonyms back with the CLI; they are stable.
    let config = env.settings().data_dir.join("pglab.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("--config")
        .arg(&config)
        .args(["pseudonyms", "anon"])
        .output()
        .expect("pglab pseudonyms");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{pseudonym}  zoe")
    );
    let mut again = env.scorer();
    again.round().await;
    assert_eq!(
        again.board.get().labs[0].participants[0].pseudonym,
        pseudonym
    );
    env.stop().await;
}
