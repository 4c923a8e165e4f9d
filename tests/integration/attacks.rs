//! Issue 12's attacks, played as a student against pglab on real Postgres
//! and slapd: each one fails harmlessly.
//!
//! - in the database: acting as a classmate from code a check runs
//!   (`SET ROLE`, `RESET ROLE`, `SET SESSION AUTHORIZATION`), reading a
//!   classmate's query, ending a classmate's session or a concurrent check,
//!   and a loop that swallows cancels (rounds go on, others are scored);
//! - in hand-ins: psql meta-commands in plain dumps, in several disguises;
//! - on the web and the host: locking others out of the login, an open
//!   redirect after login, `/metrics` without its token, slipping into a
//!   reference database while it is built, file modes under the data dir.

use crate::browser::Http;
use crate::submissions::upload;
use crate::support::TestEnv;
use std::time::{Duration, Instant};

const REFERENCE: &str = r#"
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes VALUES (1, 'one'), (2, 'two');
CREATE VIEW v_steal AS SELECT 'nothing'::text AS found;
CREATE VIEW v_kill AS SELECT 0::bigint AS ended;
CREATE VIEW v_loop AS SELECT 1 AS x;
"#;

const LAB: &str = r#"id: atk
title: Attacks
reference: {sql: reference.sql}
tasks:
  - {id: notes, title: Notes, checks: [{table: public.notes, compare: [columns, rows]}]}
  - {id: steal, title: Steal, checks: [{view: public.v_steal}]}
  - {id: kill, title: Kill, checks: [{view: public.v_kill}]}
  - {id: loop, title: Loop, checks: [{view: public.v_loop}]}
"#;

/// Eve's traps: every way she could reach a classmate from code a check
/// evaluates. Whatever succeeds is reported in the check's reason.
const TRAPS: &str = r#"
CREATE FUNCTION f_steal() RETURNS text LANGUAGE plpgsql AS $$
DECLARE found text := '';
BEGIN
  BEGIN EXECUTE 'SET ROLE bob'; found := found || ' became-bob'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'SET ROLE bob'; found := found || ' reset-became-bob'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'SET SESSION AUTHORIZATION bob'; found := found || ' session-bob'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'RESET ROLE'; EXCEPTION WHEN OTHERS THEN NULL; END;
  found := found || ' ' || coalesce((SELECT string_agg(query, ' | ') FROM pg_stat_activity
                                     WHERE usename = 'bob'), '');
  found := found || ' ' || coalesce((SELECT string_agg(rolname, ',') FROM pg_roles WHERE pg_has_role(rolname, 'MEMBER')
                                     AND rolname NOT IN ('eve', current_user::text, 'pglab_students', 'pglab_checkers')), '');
  RAISE EXCEPTION 'loot:%', found;
END $$;
CREATE VIEW v_steal AS SELECT f_steal() AS found;

CREATE FUNCTION f_kill() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE ended bigint := 0; r record;
BEGIN
  FOR i IN 1..10 LOOP
    FOR r IN SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND usename IS NOT NULL AND usename <> 'eve' LOOP
      BEGIN
        IF pg_terminate_backend(r.pid) THEN ended := ended + 1; END IF;
      EXCEPTION WHEN OTHERS THEN NULL; END;
      BEGIN
        IF pg_cancel_backend(r.pid) THEN ended := ended + 1; END IF;
      EXCEPTION WHEN OTHERS THEN NULL; END;
    END LOOP;
    PERFORM pg_sleep(0.03);
  END LOOP;
  RAISE EXCEPTION 'ended:%', ended;
END $$;
CREATE VIEW v_kill AS SELECT f_kill() AS ended;

CREATE FUNCTION f_loop() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN NULL; END;
  END LOOP;
END $$;
CREATE VIEW v_loop AS SELECT f_loop() AS x;
"#;

#[tokio::test]
async fn code_run_by_a_check_cannot_reach_classmates_or_stall_scoring() {
    let env = TestEnv::start(1).await;
    env.write("atk/reference.sql", REFERENCE);
    let lab = env.write("atk/lab.yaml", LAB);
    let people = "username,name,email\neve,Eve,eve@example.org\nbob,Bob,bob@example.org\ngood,Good,good@example.org\n";
    env.apply(&lab, people, false).await.expect("apply");

    // The checking roles can each become one participant and nobody else.
    let admin = env.admin(0, "postgres").await;
    let members: Vec<String> = admin
        .query(
            "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
             JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname = 'pglab.ck.eve' ORDER BY 1",
            &[],
        )
        .await
        .expect("members")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(members, ["eve", "pglab_checkers"]);
    let shared: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('pglab_scorer', 'pglab_monitor')",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(shared, 0, "no role may act as every participant");

    // Bob works in psql: a long statement whose text is his secret.
    let bob = env
        .connect_as(0, "bob", &env.password("bob").await, "atk_bob")
        .await
        .expect("bob");
    let bob_busy = tokio::spawn(async move {
        let r = bob
            .batch_execute("SELECT pg_sleep(20), 'bob-secret-query'")
            .await;
        (bob, r)
    });
    let eve = env
        .connect_as(0, "eve", &env.password("eve").await, "atk_eve")
        .await
        .expect("eve");
    eve.batch_execute(TRAPS).await.expect("eve sets her traps");
    let good = env
        .connect_as(0, "good", &env.password("good").await, "atk_good")
        .await
        .expect("good");
    good.batch_execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'one')",
    )
    .await
    .expect("good starts");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut scorer = env.scorer();
    round(&mut scorer).await;

    let (ok, why) = scorer.task("atk", "eve", "steal");
    let why = why.unwrap_or_default();
    assert!(!ok && why.contains("loot:"), "{why}");
    for leak in ["became-bob", "session-bob", "bob-secret", "bob", "good"] {
        assert!(!why.contains(leak), "eve's check reached {leak}: {why}");
    }
    let (ok, why) = scorer.task("atk", "eve", "kill");
    assert!(
        !ok && why.as_deref() == Some("error: ended:0"),
        "eve's check ended another session: {why:?}"
    );
    let (ok, why) = scorer.task("atk", "eve", "loop");
    assert!(!ok, "{why:?}");
    assert!(
        why.as_deref().unwrap_or("").contains("timed out"),
        "{why:?}"
    );
    // Good was scored in the same round, untouched by eve's checks.
    assert_eq!(
        scorer.task("atk", "good", "notes"),
        (
            false,
            Some("1 row missing (rows of the expected result not found)".into())
        )
    );
    // Bob's psql session is still there and still his.
    let (bob, r) = bob_busy.await.expect("bob's task");
    r.expect("bob's statement was not ended by eve");
    bob.batch_execute("SELECT 1")
        .await
        .expect("bob is still connected");

    // Rounds keep coming, and good's new work is scored within two rounds,
    // although eve's loop is still there (and rests, in a lane of its own).
    good.batch_execute("INSERT INTO notes VALUES (2, 'two')")
        .await
        .expect("good finishes");
    let started = Instant::now();
    for _ in 0..2 {
        round(&mut scorer).await;
        if scorer.task("atk", "good", "notes").0 {
            break;
        }
    }
    assert_eq!(scorer.task("atk", "good", "notes"), (true, None));
    println!(
        "two rounds with a cancel-swallowing check: {:?}",
        started.elapsed()
    );
    // Nothing of eve's checks is left running.
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'pglab.ck.%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "a check session outlived its round");
    env.stop().await;
}

/// Plain dumps with psql commands in disguise; none may run, each is
/// refused with its line before anything ran.
const DISGUISED: [(&str, &str, usize); 7] = [
    ("plain", "SELECT 1;\n\\! touch {marker}\n", 2),
    (
        "after a dollar identifier",
        "SELECT 1 AS a$b$;\n\\! touch {marker}\n",
        2,
    ),
    (
        "dollar identifier opening",
        "SELECT a$b$ \\! touch {marker}\n$b$;\n",
        1,
    ),
    (
        "carriage return in a comment",
        "SELECT 1; -- note\r\\! touch {marker}\n",
        1,
    ),
    ("output redirection", "\\o {marker}\nSELECT 1;\n", 1),
    (
        "client-side copy",
        "CREATE TABLE t (a int);\n\\copy t to '{marker}'\n",
        2,
    ),
    ("include", "SELECT 1;\n  \\i /etc/passwd\n", 2),
];

#[tokio::test]
async fn hand_ins_logins_and_files_give_a_student_nothing() {
    let (env, lab_file) = crate::submissions::setup("atkweb", "  formats: [plain, custom]").await;
    // At most three hand-ins of one database wait at once, even when they
    // arrive together (before the server runs: no worker takes them).
    let store = &env.store;
    let lab = pglab::ident::LabId::parse("atkweb").expect("id");
    let nobody = pglab::ident::PgName::from_catalog("atkweb.nobody".into());
    let main = pglab::control::ServerName::new("main");
    let alice = pglab::ident::Username::parse("alice").expect("username");
    let new = |file: &'static str| pglab::control::NewSubmission {
        lab: &lab,
        database: &nobody,
        server: &main,
        owner: &nobody,
        group: None,
        uploaded_by: &alice,
        size: 1,
        format: pglab::lab::submissions::DumpFormat::Plain,
        file,
        late: false,
        contents: None,
    };
    let tries = futures_util::future::join_all(
        (0..6).map(|_| async { store.insert_submission(&new("/nonexistent"), 3).await }),
    )
    .await;
    let queued: Vec<i64> = tries
        .into_iter()
        .filter_map(|r| r.expect("insert"))
        .collect();
    assert_eq!(queued.len(), 3, "{queued:?}");

    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let alice = env.password("alice").await;

    // Hand-ins with psql commands: refused, with their line; nothing ran.
    let marker = env.dir.path().join("pwned");
    for (what, text, line) in DISGUISED {
        let sql = text.replace("{marker}", &marker.display().to_string());
        let (status, body) = upload(&base, "atkweb", "alice", &alice, sql.into_bytes()).await;
        assert_eq!(status, 422, "{what}: {body}");
        let error = body["error"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("");
        assert!(error.contains(&format!("line {line}:")), "{what}: {body}");
        assert!(!marker.exists(), "{what}: a psql command ran");
    }
    // Server-side escapes in plain SQL fail as the group, not as pglab.
    let sql = format!(
        "CREATE TABLE loot (x text);\nCOPY loot FROM PROGRAM 'touch {}';\n",
        marker.display()
    );
    let (status, body) = upload(&base, "atkweb", "alice", &alice, sql.into_bytes()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().expect("id");
    let job = crate::submissions::finished(&base, id, "alice", &alice).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["errors"]
            .to_string()
            .contains("pg_execute_server_program"),
        "{job}"
    );
    assert!(!marker.exists(), "COPY FROM PROGRAM ran");

    // A dump that sets its job role's password and gives that role a grant
    // (so that it could not be dropped) leaves no login behind.
    let sql = "CREATE TABLE t (a int);\n\
        DO $$ BEGIN EXECUTE format('GRANT SELECT ON t TO %I', session_user); END $$;\n\
        RESET ROLE;\n\
        ALTER ROLE CURRENT_USER PASSWORD 'Known-password-123';\n";
    let (status, body) = upload(&base, "atkweb", "alice", &alice, sql.as_bytes().to_vec()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().expect("id");
    let job = crate::submissions::finished(&base, id, "alice", &alice).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let role = format!("pglab_restore_{id}");
    let admin = env.admin(0, "postgres").await;
    let left: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the job's role outlived the job");
    assert!(env
        .connect_as(0, &role, "Known-password-123", "atkweb.g1")
        .await
        .is_err());

    // Logins: eve fails as bob and as the lab master from the classroom's
    // address; bob (another address) and the lab master's known browser
    // (same address) still get in, and eve is the one who waits.
    let mut master = Http::new(&base);
    let admin_pw = env.settings().web.admin_password.expose().to_string();
    assert_eq!(master.login("admin", &admin_pw).await.0, 303);
    let mut eve = Http::new(&base);
    for i in 0..6 {
        eve.login("bob", &format!("guess-{i}")).await;
        eve.login("admin", &format!("guess-{i}")).await;
    }
    assert_eq!(eve.login("bob", &env.password("bob").await).await.0, 429);
    let mut bob = Http::from_address(&base, [127, 0, 0, 2]);
    assert_eq!(bob.login("bob", &env.password("bob").await).await.0, 303);
    let known_browser = || {
        let mut b = Http::new(&base);
        b.cookies = master
            .cookies
            .iter()
            .filter(|(k, _)| k == "pglab_device")
            .cloned()
            .collect();
        b
    };
    let mut again = known_browser();
    assert_eq!(
        again.login("admin", &admin_pw).await.0,
        303,
        "lab master locked out"
    );

    // After login, `next` never leads off pglab.
    for next in [
        "//evil.example/",
        "/\\evil.example",
        "/%09/evil.example",
        "https://evil.example",
    ] {
        let mut b = known_browser();
        let (_, page) = b
            .get(&format!("/login?next={}", crate::browser::encode(next)))
            .await;
        let token = crate::browser::hidden(&page, "token");
        let (status, location) = b
            .post(
                "/login",
                &[
                    ("username", "admin"),
                    ("password", &admin_pw),
                    ("token", &token),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(status, 303);
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "{next} -> {location}"
        );
        assert!(!location.contains("evil"), "{next} -> {location}");
    }

    // /metrics wants its token.
    let client = reqwest::Client::new();
    let metrics = format!("{base}/metrics");
    assert_eq!(
        client.get(&metrics).send().await.expect("get").status(),
        401
    );
    let with = client
        .get(&metrics)
        .bearer_auth(env.settings().metrics_token.expose())
        .send()
        .await
        .expect("get");
    assert_eq!(with.status(), 200);

    // While the lab is rebuilt, a student cannot slip into the reference
    // (the answers) or the template, not even for a moment.
    let lab_yaml = std::fs::read_to_string(&lab_file).expect("lab");
    std::fs::write(
        &lab_file,
        lab_yaml.replace("title: Hand-in", "title: Hand-in again"),
    )
    .expect("write");
    let sql = lab_file.with_file_name("clubdata.sql");
    let mut reference = std::fs::read_to_string(&sql).expect("reference");
    reference.push_str("\nCREATE TABLE cd.extra (id int);\n");
    std::fs::write(&sql, reference).expect("write");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let s = env.settings().postgres[0].clone();
        let password = alice.clone();
        tokio::spawn(async move {
            let (mut tries, mut entered) = (0, vec![]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for db in [
                    "pglab.new.ref.atkweb",
                    "pglab.new.tpl.atkweb",
                    "pglab.ref.atkweb",
                    "pglab.tpl.atkweb",
                ] {
                    tries += 1;
                    let c = tokio_postgres::Config::new()
                        .host(&s.host)
                        .port(s.port)
                        .user("alice")
                        .password(&password)
                        .dbname(db)
                        .connect(tokio_postgres::NoTls)
                        .await;
                    if c.is_ok() {
                        entered.push(db);
                    }
                }
            }
            (tries, entered)
        })
    };
    env.apply(&lab_file, crate::submissions::PEOPLE, false)
        .await
        .expect("apply with a new reference");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (tries, entered) = prober.await.expect("prober");
    assert!(tries > 4, "the prober ran");
    assert!(entered.is_empty(), "a student entered {entered:?}");

    // Every file pglab wrote (uploads, restores, generated files, logs,
    // server folders) is private.
    let exposed = pglab::private_files::exposed(&env.settings().data_dir);
    assert!(exposed.is_empty(), "readable by others: {exposed:#?}");

    server.stop().await;
    env.stop().await;
}

/// One round; one that never ends is the failure (minutes mean a hang).
async fn round(scorer: &mut crate::support::Scorer) {
    tokio::time::timeout(Duration::from_secs(180), scorer.round())
        .await
        .expect("a scoring round ends although a check swallows cancels");
}

/// A lab's SQL is run by pglab itself, not by psql: psql's commands that
/// reach pglab's machine (a shell, files) are refused with their file and
/// line before anything of the lab ran, in the reference, the starter and
/// the files they include. Called from the clubdata test (its stack).
pub async fn lab_sql_never_runs_on_pglabs_machine(env: &TestEnv) {
    let marker = env.dir.path().join("lab-pwned");
    let m = marker.display();
    let cases = [
        (
            format!("CREATE TABLE t (a int);\n\\! touch {m}\n"),
            "ref.sql:3: the psql command \\! runs a shell",
        ),
        (
            format!("CREATE TABLE t (a int);\n\\copy t to '{m}'\n"),
            "ref.sql:3: the psql command \\copy",
        ),
        (
            format!("\\o {m}\nSELECT 1;\n"),
            "ref.sql:2: the psql command \\o",
        ),
        (
            format!("SELECT 1;\n\\w {m}\n"),
            "ref.sql:3: the psql command \\w",
        ),
        (
            "\\ir evil.sql\n".to_string(),
            "evil.sql:2: the psql command \\! runs a shell",
        ),
        ("\\i /etc/passwd\n".to_string(), "includes /etc/passwd"),
    ];
    env.write("labsql/evil.sql", &format!("SELECT 1;\n\\! touch {m}\n"));
    env.write("labsql/starter.sql", "CREATE TABLE s (a int);\n");
    for (reference, says) in cases {
        env.write(
            "labsql/ref.sql",
            &format!("CREATE TABLE before (a int);\n{reference}"),
        );
        let lab = env.write(
            "labsql/lab.yaml",
            "id: labsql\ntitle: Lab SQL\nreference: {sql: ref.sql}\nstarter: {sql: starter.sql}\ntasks:\n  - id: t\n    title: T\n    checks: [{sql: SELECT true}]\n",
        );
        let result = match pglab::lab::LoadedLab::load(&lab) {
            Ok(loaded) => pglab::app::check_lab_loads(&env.settings().postgres[0], &loaded)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        let error = result.expect_err(&reference);
        assert!(error.contains(says), "{reference:?}: {error}");
        assert!(!marker.exists(), "{reference:?}: a psql command ran");
    }
    // Nothing of a refused lab was made, not even its scratch databases.
    let admin = env.admin(0, "postgres").await;
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '%labsql%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    // What pglab runs: statements, COPY data and includes, the starter as
    // its own role.
    env.write("labsql/ref.sql", "\\set ON_ERROR_STOP on\n\\restrict k1\nCREATE TABLE t (a int, b text);\nCOPY t (a, b) FROM stdin;\n1\tone\n2\t\\\\N\n\\.\n\\ir parts/more.sql\n\\unrestrict k1\n");
    env.write(
        "labsql/parts/more.sql",
        "\\echo more\nINSERT INTO t VALUES (3, 'three');\n",
    );
    let lab = env.write(
        "labsql/lab.yaml",
        "id: labsql\ntitle: Lab SQL\nreference: {sql: ref.sql}\nstarter: {sql: starter.sql}\ntasks:\n  - id: t\n    title: T\n    checks: [{sql: SELECT true}]\n",
    );
    env.apply(
        &lab,
        "username,name,email\nsam,Sam,sam@example.org\n",
        false,
    )
    .await
    .expect("apply");
    let reference = env.admin(0, "pglab.ref.labsql").await;
    let rows: Vec<(i32, Option<String>)> = reference
        .query("SELECT a, b FROM t ORDER BY a", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, Some("one".into())),
            (2, Some("\\N".into())),
            (3, Some("three".into()))
        ]
    );
    // The starter ran as pglab's starter role: its table is the student's.
    let sam = env
        .connect_as(0, "sam", &env.password("sam").await, "labsql_sam")
        .await
        .expect("sam");
    let owner: String = sam
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 's'",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, "sam");
}
