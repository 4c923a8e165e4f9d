//! Dump submissions against real Postgres, real pg_dump / pg_restore / psql:
//! every format restores as the group's role and is scored; broken and
//! hostile dumps fail harmlessly and say why; bad uploads are refused.

use crate::browser::Http;
use crate::clubdata::cleaned_clubdata;
use crate::support::TestEnv;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PEOPLE: &str = "username,name,email,group\n\
    alice,Alice,alice@example.org,g1\n\
    bob,Bob,bob@example.org,g1\n\
    carol,Carol,carol@example.org,g2\n";

pub fn lab_yaml(id: &str, submissions: &str) -> String {
    format!(
        "id: {id}\ntitle: Hand-in\ndatabases: per-group\nreference: {{sql: clubdata.sql}}\n\
         submissions:\n{submissions}\n\
         tasks:\n  - id: members\n    title: Members\n    checks:\n      - table: cd.members\n        compare: [columns, primary_key, rows]\n\
         \x20 - id: bookings\n    title: Bookings\n    checks:\n      - query: SELECT count(*) > 4000 FROM cd.bookings\n"
    )
}

/// A lab taking dumps, applied, and the web app serving it.
pub async fn setup(id: &str, submissions: &str) -> (TestEnv, PathBuf) {
    let mut env = TestEnv::start(1).await;
    env.stack.settings.scoring.interval_secs = 1;
    env.write("hand/clubdata.sql", &cleaned_clubdata());
    let lab = env.write(&format!("hand/{id}.yaml"), &lab_yaml(id, submissions));
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    (env, lab)
}

/// A database `club_src` with clubdata, to dump from.
pub async fn source_db(env: &TestEnv) {
    let admin = env.admin(0, "postgres").await;
    admin
        .batch_execute("CREATE DATABASE club_src")
        .await
        .expect("create source");
    let file = env.write("hand/src.sql", &cleaned_clubdata());
    pglab::provision::tools::psql_file(&env.settings().postgres[0], "club_src", &file, None)
        .await
        .expect("load source");
}

/// Runs pg_dump as the admin with extra arguments, into `out`.
pub async fn pg_dump(env: &TestEnv, args: &[&str], out: &Path) {
    let s = &env.settings().postgres[0];
    let bin = s
        .bin_dir
        .clone()
        .map_or("pg_dump".into(), |d| d.join("pg_dump"));
    let status = tokio::process::Command::new(bin)
        .env("PGHOST", &s.host)
        .env("PGPORT", s.port.to_string())
        .env("PGUSER", &s.admin_user)
        .env("PGPASSWORD", s.admin_password.expose())
        .args(args)
        .arg("-f")
        .arg(out)
        .arg("club_src")
        .status()
        .await
        .expect("pg_dump runs");
    assert!(status.success(), "pg_dump {args:?}");
}

/// Uploads through the JSON API as `user`: (status, JSON body).
pub async fn upload(
    base: &str,
    lab: &str,
    user: &str,
    password: &str,
    bytes: Vec<u8>,
) -> (u16, serde_json::Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("dump");
    let form = reqwest::multipart::Form::new().part("file", part);
    match reqwest::Client::new()
        .post(format!("{base}/api/labs/{lab}/submissions"))
        .basic_auth(user, Some(password))
        .multipart(form)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        }
        Err(e) => (0, serde_json::json!({ "error": e.to_string() })),
    }
}

/// Waits until the job ended; returns its JSON.
pub async fn finished(base: &str, id: i64, user: &str, password: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = reqwest::Client::new()
            .get(format!("{base}/api/submissions/{id}"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("status");
        let job: serde_json::Value = r.json().await.expect("json");
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not end: {job}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn count(env: &TestEnv, db: &str, sql: &str) -> i64 {
    env.admin(0, db)
        .await
        .query_one(sql, &[])
        .await
        .expect("count")
        .get(0)
}

/// What a job leaves behind when it is done: nothing.
pub async fn no_leftovers(env: &TestEnv) {
    let admin = env.admin(0, "postgres").await;
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'pglab.restore.%'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pglab_restore_%'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert_eq!(
        (dbs, roles),
        (0, 0),
        "scratch databases / restore roles left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_format_restores_as_the_group_and_is_scored() {
    let (env, _) = setup("hand", "  max_size: 20MB\n  late: reject").await;
    source_db(&env).await;
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let dir = env.dir.path().join("dumps");
    std::fs::create_dir_all(&dir).expect("dir");
    let (alice, bob, carol) = (
        env.password("alice").await,
        env.password("bob").await,
        env.password("carol").await,
    );
    let bookings = count(&env, "club_src", "SELECT count(*) FROM cd.bookings").await;

    // custom, by alice, into group g1's database
    pg_dump(&env, &["-Fc"], &dir.join("c.dump")).await;
    let (status, body) = upload(
        &base,
        "hand",
        "alice",
        &alice,
        std::fs::read(dir.join("c.dump")).expect("read"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["format"], "custom");
    let first = body["id"].as_i64().expect("id");
    let job = finished(&base, first, "alice", &alice).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        count(&env, "hand.g1", "SELECT count(*) FROM cd.bookings").await,
        bookings
    );
    // Restored as the group's role: it owns every table.
    let owners: Vec<String> = env
        .admin(0, "hand.g1")
        .await
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'cd'",
            &[],
        )
        .await
        .expect("owners")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec!["hand.g1".to_string()]);

    // tar, by bob (the same group)
    pg_dump(&env, &["-Ft"], &dir.join("t.tar")).await;
    let (status, body) = upload(
        &base,
        "hand",
        "bob",
        &bob,
        std::fs::read(dir.join("t.tar")).expect("read"),
    )
    .await;
    assert_eq!(
        (status, body["format"].as_str()),
        (202, Some("tar")),
        "{body}"
    );
    let job = finished(&base, body["id"].as_i64().expect("id"), "bob", &bob).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The database before the first restore was dumped and dropped now.
    let replaced = env.settings().data_dir.join("replaced").join("hand");
    assert_eq!(
        std::fs::read_dir(&replaced).map(|d| d.count()).unwrap_or(0),
        1
    );

    // directory format packed as tar, by carol into g2
    pg_dump(&env, &["-Fd"], &dir.join("d")).await;
    let packed = dir.join("d.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&packed)
        .arg("-C")
        .arg(&dir)
        .arg("d")
        .status()
        .expect("tar");
    assert!(status.success());
    let (status, body) = upload(
        &base,
        "hand",
        "carol",
        &carol,
        std::fs::read(&packed).expect("read"),
    )
    .await;
    assert_eq!(
        (status, body["format"].as_str()),
        (202, Some("directory")),
        "{body}"
    );
    let job = finished(&base, body["id"].as_i64().expect("id"), "carol", &carol).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        count(&env, "hand.g2", "SELECT count(*) FROM cd.bookings").await,
        bookings
    );

    // plain SQL, with a change that shows it is this dump
    env.admin(0, "club_src")
        .await
        .batch_execute("UPDATE cd.members SET surname = 'Plainly' WHERE memid = 0")
        .await
        .expect("change");
    pg_dump(&env, &[], &dir.join("p.sql")).await;
    let (status, body) = upload(
        &base,
        "hand",
        "alice",
        &alice,
        std::fs::read(dir.join("p.sql")).expect("read"),
    )
    .await;
    assert_eq!(
        (status, body["format"].as_str()),
        (202, Some("plain")),
        "{body}"
    );
    let job = finished(&base, body["id"].as_i64().expect("id"), "alice", &alice).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        count(
            &env,
            "hand.g1",
            "SELECT count(*) FROM cd.members WHERE surname = 'Plainly'"
        )
        .await,
        1
    );
    // The students of g1 still reach their (new) database with their password.
    let c = env
        .connect_as(0, "bob", &bob, "hand.g1")
        .await
        .expect("bob connects");
    let n: i64 = c
        .query_one("SELECT count(*) FROM cd.facilities", &[])
        .await
        .expect("q")
        .get(0);
    assert!(n > 0);

    // The scoring engine scores the restored databases like any other:
    // carol's group has the reference data; alice's group changed a
    // member's surname, so its members table differs from the reference.
    let passed = |user: &str| {
        let snap = server.board.get();
        snap.labs
            .iter()
            .find(|l| l.id == "hand")
            .and_then(|l| l.participants.iter().find(|p| p.username == user))
            .map_or(0, |p| p.passed())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (passed("carol"), passed("alice"), passed("bob")) != (2, 1, 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "restored databases not scored: carol {}, alice {}",
            passed("carol"),
            passed("alice")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The lab master's job log: every upload, and two members of g1 uploaded.
    let mut admin = Http::new(&base);
    let pw = env.settings().web.admin_password.expose().to_string();
    admin.login("admin", &pw).await;
    let (status, log) = admin.get("/labs/hand/submissions").await;
    assert_eq!(status, 200);
    assert!(log.contains("2 members uploaded"), "{log}");
    for who in ["alice", "bob", "carol"] {
        assert!(log.contains(who));
    }
    // A student sees their group's submission, not the other group's.
    let mut carol_web = Http::new(&base);
    carol_web.login("carol", &carol).await;
    assert_eq!(carol_web.get(&format!("/submissions/{first}")).await.0, 404);
    let (status, me) = carol_web.get("/me").await;
    assert_eq!(status, 200);
    assert!(me.contains("Hand in your database") && me.contains("succeeded"));
    no_leftovers(&env).await;
    server.stop().await;
    env.stop().await;
}
