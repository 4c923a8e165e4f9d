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
    let s = &env.settings().postgres[0];
    let status = tokio::process::Command::new("psql")
        .env("PGHOST", &s.host)
        .env("PGPORT", s.port.to_string())
        .env("PGUSER", &s.admin_user)
        .env("PGPASSWORD", s.admin_password.expose())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "club_src", "-f"])
        .arg(&file)
        .status()
        .await
        .expect("psql runs");
    assert!(status.success(), "load source");
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

pub async fn count(env: &TestEnv, db: &str, sql: &str) -> i64 {
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
            "SELECT count(*) FROM pg_database WHERE datname ~ '^pglab[.]restore[.]'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname ~ '^pglab_restore_[0-9]+$'",
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
    // The database before the first restore is dumped and dropped now
    // (just after the job is recorded).
    let replaced = env.settings().data_dir.join("replaced").join("hand");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&replaced).map(|d| d.count()).unwrap_or(0) != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "older database not retired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

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

/// A plain dump of `club_src` with `extra` SQL inserted before the data.
pub async fn doctored_plain(env: &TestEnv, name: &str, extra: &str) -> Vec<u8> {
    let path = env.dir.path().join("dumps").join(format!("{name}.sql"));
    std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
    pg_dump(env, &[], &path).await;
    let text = std::fs::read_to_string(&path).expect("read");
    let at = text
        .find("CREATE TABLE cd.bookings")
        .expect("a table to put it before");
    format!("{}{extra}\n{}", &text[..at], &text[at..]).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_and_hostile_dumps_fail_harmlessly_and_say_why() {
    let (env, _) = setup("hand", "  max_size: 2MB").await;
    source_db(&env).await;
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let alice = env.password("alice").await;
    let dir = env.dir.path().join("dumps");
    std::fs::create_dir_all(&dir).expect("dir");

    // A good restore first: the database the failures must leave alone.
    pg_dump(&env, &["-Fc"], &dir.join("good.dump")).await;
    let good = std::fs::read(dir.join("good.dump")).expect("read");
    let (_, body) = upload(&base, "hand", "alice", &alice, good.clone()).await;
    let job = finished(&base, body["id"].as_i64().expect("id"), "alice", &alice).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let bookings = count(&env, "hand.g1", "SELECT count(*) FROM cd.bookings").await;

    // A broken statement: the job fails, shows the statement and its line.
    let broken = doctored_plain(&env, "broken", "CRATE TABLE cd.oops (id int);").await;
    let line = String::from_utf8_lossy(&broken)
        .lines()
        .position(|l| l.starts_with("CRATE"))
        .expect("line")
        + 1;
    let (status, body) = upload(&base, "hand", "alice", &alice, broken).await;
    assert_eq!(status, 202, "{body}");
    let broken_id = body["id"].as_i64().expect("id");
    let job = finished(&base, broken_id, "alice", &alice).await;
    assert_eq!(job["status"], "failed");
    let issue = &job["errors"][0];
    assert!(
        issue["message"]
            .as_str()
            .unwrap_or("")
            .contains("syntax error"),
        "{job}"
    );
    assert_eq!(issue["statement"], "CRATE TABLE cd.oops (id int);");
    assert_eq!(issue["line"].as_u64(), Some(line as u64));
    assert_eq!(
        count(&env, "hand.g1", "SELECT count(*) FROM cd.bookings").await,
        bookings
    );
    // The page shows it highlighted, with its line number.
    let mut web = Http::new(&base);
    web.login("alice", &alice).await;
    let (status, page) = web.get(&format!("/submissions/{broken_id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("syntax error") && page.contains("<span class=\"sql-keyword\">TABLE</span>"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<span class=\"ln\">{line}</span>")),
        "{page}"
    );

    // Hostile dumps: each fails as the group's role, and says why.
    let admin_user = env.settings().postgres[0].admin_user.clone();
    let marker = env.dir.path().join("pwned");
    let hostile = [
        (
            "alter-system",
            "ALTER SYSTEM SET work_mem = '1GB';".to_string(),
            "ALTER SYSTEM",
        ),
        (
            "copy-program",
            format!("COPY (SELECT 1) TO PROGRAM 'touch {}';", marker.display()),
            "pg_execute_server_program",
        ),
        (
            "extension",
            "CREATE EXTENSION dblink SCHEMA public;".to_string(),
            "extension",
        ),
        (
            "set-role",
            format!("SET ROLE {admin_user};"),
            "permission denied to set role",
        ),
        (
            "other-group",
            "RESET ROLE; SET ROLE \"hand.g2\";".to_string(),
            "permission denied to set role",
        ),
        (
            "create-database",
            "CREATE DATABASE evil;".to_string(),
            "CREATE DATABASE",
        ),
        (
            "drop-own-database",
            "DROP DATABASE \"hand.g1\";".to_string(),
            "DROP DATABASE",
        ),
    ];
    for (name, sql, why) in hostile {
        let dump = doctored_plain(&env, name, &sql).await;
        let (status, body) = upload(&base, "hand", "alice", &alice, dump).await;
        assert_eq!(status, 202, "{name}: {body}");
        let job = finished(&base, body["id"].as_i64().expect("id"), "alice", &alice).await;
        assert_eq!(job["status"], "failed", "{name}: {job}");
        let message = job["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.contains(why), "{name}: {message}");
        assert_eq!(
            count(&env, "hand.g1", "SELECT count(*) FROM cd.bookings").await,
            bookings,
            "{name}"
        );
    }
    assert!(!marker.exists(), "COPY TO PROGRAM ran");
    let evil = env.database_exists(0, "evil").await;
    assert!(!evil, "a database was created");
    // psql commands are refused before anything runs.
    for (name, sql) in [
        ("connect", "\\connect postgres"),
        ("shell", "SELECT 1; \\! touch /tmp/pglab-pwned"),
    ] {
        let dump = doctored_plain(&env, name, sql).await;
        let (status, body) = upload(&base, "hand", "alice", &alice, dump).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("line "),
            "{name}: {body}"
        );
    }

    // Not a dump, empty, truncated, too big.
    let (status, body) = upload(
        &base,
        "hand",
        "alice",
        &alice,
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a pg_dump"),
        "{body}"
    );
    let (status, body) = upload(&base, "hand", "alice", &alice, vec![]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("the file is empty"))
    );
    let truncated = good[..good.len() / 2].to_vec();
    let (status, body) = upload(&base, "hand", "alice", &alice, truncated).await;
    if status == 202 {
        let job = finished(&base, body["id"].as_i64().expect("id"), "alice", &alice).await;
        assert_eq!(job["status"], "failed", "{job}");
    } else {
        assert_eq!(status, 422, "{body}");
    }
    assert_eq!(
        count(&env, "hand.g1", "SELECT count(*) FROM cd.bookings").await,
        bookings
    );
    let uploads = env.settings().data_dir.join("submissions").join("hand");
    let files_before = std::fs::read_dir(&uploads).expect("dir").count();
    let (status, body) = upload(&base, "hand", "alice", &alice, vec![b'x'; 3 * 1024 * 1024]).await;
    // The server answers 413 as soon as the limit is passed and closes the
    // connection; the client may see that or the cut connection.
    assert!(status == 413 || status == 0, "{status} {body}");
    assert_eq!(
        std::fs::read_dir(&uploads).expect("dir").count(),
        files_before,
        "a partial upload was kept"
    );

    // An upload cut off halfway: nothing is stored, nothing is queued.
    let jobs_before = env
        .store
        .lab_submissions(&pglab::ident::LabId::parse("hand").expect("id"))
        .await
        .expect("jobs")
        .len();
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(env.settings().listen)
            .await
            .expect("tcp");
        let auth = base64_basic("alice", &alice);
        let head = format!(
            "POST /api/labs/hand/submissions HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        tcp.write_all(&good[..good.len().min(50_000)])
            .await
            .expect("half");
        tcp.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        env.store
            .lab_submissions(&pglab::ident::LabId::parse("hand").expect("id"))
            .await
            .expect("jobs")
            .len(),
        jobs_before
    );
    assert_eq!(
        std::fs::read_dir(&uploads).expect("dir").count(),
        files_before,
        "an interrupted upload was kept"
    );

    // The API needs the student's password.
    let (status, _) = upload(&base, "hand", "alice", "wrong", good.clone()).await;
    assert_eq!(status, 401);
    no_leftovers(&env).await;
    server.stop().await;
    env.stop().await;
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deadlines_follow_the_late_policy_on_server_time() {
    let past = "  deadline: 2020-01-01T00:00:00Z";
    // One database per participant here (the restore role is then a member
    // of a student's login role).
    let per_participant =
        |yaml: String| yaml.replace("databases: per-group", "databases: per-participant");
    let mut env = TestEnv::start(1).await;
    env.stack.settings.scoring.interval_secs = 1;
    env.write("hand/clubdata.sql", &cleaned_clubdata());
    let lab = env.write(
        "hand/late.yaml",
        &per_participant(lab_yaml(
            "late",
            &format!("{past}\n  late: reject\n  replace: false"),
        )),
    );
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    source_db(&env).await;
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let alice = env.password("alice").await;
    let dump = env.dir.path().join("c.dump");
    pg_dump(&env, &["-Fc"], &dump).await;
    let bytes = std::fs::read(&dump).expect("read");
    let (status, body) = upload(&base, "late", "alice", &alice, bytes.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("deadline"),
        "{body}"
    );

    // The lab master switches to accept-flagged: accepted, marked late.
    std::fs::write(
        &lab,
        per_participant(lab_yaml(
            "late",
            &format!("{past}\n  late: accept-flagged\n  replace: false"),
        )),
    )
    .expect("lab");
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    let (status, body) = upload(&base, "late", "alice", &alice, bytes.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["late"], true);
    let job = finished(&base, body["id"].as_i64().expect("id"), "alice", &alice).await;
    assert_eq!(
        (job["status"].as_str(), job["late"].as_bool()),
        (Some("succeeded"), Some(true)),
        "{job}"
    );
    assert!(count(&env, "late_alice", "SELECT count(*) FROM cd.bookings").await > 4000);
    // replace: false — alice handed in already.
    let (status, body) = upload(&base, "late", "alice", &alice, bytes).await;
    assert_eq!(status, 409, "{body}");
    server.stop().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn students_hand_in_from_their_page_in_chromium() {
    let (env, _) = setup("hand", "  max_size: 20MB\n  deadline: 2099-01-01T00:00:00Z").await;
    source_db(&env).await;
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let alice = env.password("alice").await;
    let dump = env.dir.path().join("club.dump");
    pg_dump(&env, &["-Fc"], &dump).await;
    let broken =
        String::from_utf8(doctored_plain(&env, "broken", "CRATE TABLE cd.oops (id int);").await)
            .expect("utf-8");

    let b = crate::browser::Browser::start(&base, "submissions").await;
    b.login("alice", &alice).await;
    assert_eq!(b.path().await, "/me");
    b.shot("01-student-handin").await;
    // Choose the file and upload: the progress bar, then the job's page.
    b.client
        .find(fantoccini::Locator::Css("form.upload input[type=file]"))
        .await
        .expect("file input")
        .send_keys(&dump.display().to_string())
        .await
        .expect("choose");
    b.click("form.upload button[type=submit]").await;
    assert!(
        b.path().await.starts_with("/submissions/"),
        "{}",
        b.path().await
    );
    let state = b
        .wait_text("#sub-status", "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(state, "succeeded");
    b.shot("02-submission-succeeded").await;

    // Drop a broken plain dump on the drop zone.
    b.goto("/me").await;
    b.client
        .execute(
            "const dt = new DataTransfer();
             dt.items.add(new File([arguments[0]], 'broken.sql', {type: 'application/sql'}));
             const zone = document.querySelector('.dropzone');
             zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
            vec![broken.into()],
        )
        .await
        .expect("drop");
    let chosen = b
        .client
        .execute(
            "return document.querySelector('form.upload input[type=file]').files[0].name;",
            vec![],
        )
        .await
        .expect("files");
    assert_eq!(chosen, serde_json::json!("broken.sql"));
    b.click("form.upload button[type=submit]").await;
    let state = b
        .wait_text("#sub-status", "failed", Duration::from_secs(60))
        .await;
    assert_eq!(state, "failed");
    let page = b.text("main").await;
    assert!(
        page.contains("syntax error") && page.contains("CRATE TABLE cd.oops"),
        "{page}"
    );
    b.shot("03-submission-failed").await;
    b.goto("/me").await;
    b.shot("04-student-history").await;
    b.logout().await;

    b.login("admin", env.settings().web.admin_password.expose())
        .await;
    b.goto("/labs/hand/submissions").await;
    assert!(b.text("main").await.contains("failed"));
    b.shot("05-job-log").await;
    b.close().await;
    server.stop().await;
    env.stop().await;
}
