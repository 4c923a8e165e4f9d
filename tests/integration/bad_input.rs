//! Bad inputs get a clear error and change nothing.

use crate::support::{shop_lab, TestEnv};
use pglab::lab::{LabError, LoadedLab, Participants};

#[tokio::test]
async fn broken_reference_changes_nothing() {
    let env = TestEnv::start(1).await;
    env.write(
        "bad/reference.sql",
        "CREATE TABLE ok (x int);\nCREAT TABLE broken (y int);\n",
    );
    let lab = env.write(
        "bad/lab.yaml",
        "id: bad\ntitle: Bad\nreference: {sql: reference.sql}\ntasks:\n  - id: t\n    title: T\n    checks:\n      - table: public.ok\n",
    );
    let people = "username,name,email\nzed,Zed,zed@example.org\n";
    let err = env
        .apply(&lab, people, false)
        .await
        .expect_err("reference fails to load");
    let text = err.to_string();
    assert!(
        text.contains("reference of lab bad") && text.contains("syntax error at or near \"CREAT\""),
        "{text}"
    );
    assert!(
        text.contains("reference.sql:2"),
        "the error names the line: {text}"
    );
    // Nothing else happened: no LDAP entry, no role, no database, no scratch left.
    let admin = env.admin(0, "postgres").await;
    let roles: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'zed'", &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(roles, 0);
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '%bad%'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert_eq!(dbs, 0);
    let plan = env.plan(&lab, people, false).await.expect("plan");
    assert!(
        plan.changes
            .iter()
            .any(|c| c.to_string().contains("ldap person uid=zed")),
        "{plan}"
    );

    // The lab check command reports the same failure from a scratch database.
    let config = env.settings().data_dir.join("pglab.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
        .args(["--config"])
        .arg(&config)
        .args(["lab", "check"])
        .arg(&lab)
        .output()
        .expect("pglab runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CREAT"), "{stderr}");

    // A role that pglab did not make is never taken over.
    admin
        .batch_execute("CREATE ROLE mallory LOGIN")
        .await
        .expect("role");
    let good = shop_lab(&env, "good");
    let err = env
        .plan(
            &good,
            "username,name,email\nmallory,M,m@example.org\n",
            false,
        )
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("refusing to take it over"),
        "{err}"
    );
    let err = env
        .plan(
            &good,
            "username,name,email\npostgres,P,p@example.org\n",
            false,
        )
        .await
        .expect_err("reserved");
    assert!(err.to_string().contains("reserved"), "{err}");
    env.stop().await;
}

#[test]
fn malformed_files_name_file_line_and_field() {
    let dir = crate::support::temp_dir();
    std::fs::write(dir.path().join("ref.sql"), "select 1;").expect("write");
    let cases = [
        ("id: x\ntitle: [unclosed\n", "lab.yaml:3: YAML syntax error"),
        ("id: x\ntitle: T\nreference: {sql: ref.sql}\nowner: me\ntasks: []\n", "lab.yaml:4: owner: unknown key"),
        ("id: x\ntitle: T\nreference: {sql: ref.sql}\ntasks:\n  - id: a\n    title: A\n    checks:\n      - tabel: x.y\n", "lab.yaml:8: tasks[0].checks[0]: unknown check kind \"tabel\""),
        ("id: x\ntitle: T\nreference: {sql: ref.sql}\ndeadline: tomorrow\ntasks: []\n", "lab.yaml:4: deadline: \"tomorrow\" is not an RFC 3339 time"),
        ("id: x\ntitle: T\nreference: {sql: missing.sql}\ntasks: []\n", "reference: file \"missing.sql\" not found"),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("lab.yaml");
        std::fs::write(&path, text).expect("write");
        match LoadedLab::load(&path) {
            Err(LabError::Invalid(errors)) => {
                let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                assert!(
                    all.iter().any(|e| e.contains(expected)),
                    "expected {expected:?} in {all:?}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let csv = "username,name,email\n\
        ok_user,Fine,ok@example.org\n\
        \"a;b\",Semi,s@example.org\n\
        )(uid=*),Inject,i@example.org\n\
        \"x\"\"; DROP ROLE postgres; --\",Quote,q@example.org\n\
        zoë,Unicode,z@example.org\n\
        ok_user,Dup,d@example.org\n";
    let err = Participants::parse("people.csv", csv)
        .expect_err("rejected")
        .to_string();
    for line in [
        "people.csv:3:",
        "people.csv:4:",
        "people.csv:5:",
        "people.csv:6:",
        "people.csv:7: duplicate username ok_user",
    ] {
        assert!(err.contains(line), "{line} in {err}");
    }
    assert!(!err.contains("people.csv:2:"), "{err}");
}

/// A control database of pglab 0.3 (version 3: restores in `submissions`)
/// upgrades to the job queue keeping every hand-in, its state and its
/// errors; two restores of one database left running by the old queue's
/// race do not stop the upgrade.
#[tokio::test]
async fn control_database_upgrades_keep_every_hand_in() {
    let env = TestEnv::start(1).await;
    let mut settings = env.settings().clone();
    settings.control.database = "pglab_v3".into();
    let old = pglab::control::Store::open(&settings).await.expect("open");
    assert_eq!(old.migrate_until(3).await.expect("to 3"), [1, 2, 3]);
    old.client()
        .await
        .expect("client")
        .batch_execute(
            "INSERT INTO labs (id, title, spec, source_yaml, sources_digest) VALUES ('old', 'Old', '{}', '', '');
             INSERT INTO submissions (lab_id, database, server, owner, uploaded_by, size, format, file, late, status, attempts, errors, note)
             VALUES ('old', 'old.g1', 'main', 'old.g1', 'alice', 10, 'plain', '/nowhere/1', false, 'succeeded', 1, '[]', 'restored'),
                    ('old', 'old.g1', 'main', 'old.g1', 'bob', 20, 'custom', '/nowhere/2', true, 'failed', 2,
                     '[{\"message\": \"syntax error\", \"statement\": null, \"toc\": null, \"line\": 3}]', null),
                    ('old', 'old.g2', 'main', 'old.g2', 'carol', 30, 'tar', '/nowhere/3', false, 'running', 1, '[]', null),
                    ('old', 'old.g2', 'main', 'old.g2', 'carol', 40, 'tar', '/nowhere/4', false, 'running', 1, '[]', null),
                    ('old', 'old.g2', 'main', 'old.g2', 'carol', 50, 'tar', '/nowhere/5', false, 'queued', 0, '[]', null);",
        )
        .await
        .expect("old rows");
    let applied = old.migrate().await.expect("upgrade");
    assert_eq!(applied[..2], [4, 5], "{applied:?}");
    // Every command opens the store: eight at once (a `pglab mail` next to
    // a starting `pglab serve`) all open and migrate it.
    let opens = (0..8).map(|_| pglab::control::Store::open_migrated(&settings));
    for opened in futures_util::future::join_all(opens).await {
        opened.expect("opened next to the others");
    }
    let lab = pglab::ident::LabId::parse("old").expect("id");
    let subs = old.lab_submissions(&lab).await.expect("read back");
    use pglab::control::JobStatus::*;
    let seen: Vec<(i64, pglab::control::JobStatus, i32)> = subs
        .iter()
        .map(|s| (s.size, s.status, s.attempts))
        .collect();
    assert_eq!(
        seen,
        [
            (50, Queued, 0),
            (40, Queued, 1),
            (30, Running, 1),
            (20, Failed, 2),
            (10, Succeeded, 1)
        ]
    );
    let failed = subs.iter().find(|s| s.size == 20).expect("bob's");
    assert_eq!(failed.errors[0].message, "syntax error");
    assert_eq!(failed.errors[0].line, Some(3));
    assert!(failed.late && failed.format == pglab::lab::submissions::DumpFormat::Custom);
    // Each hand-in has its own restore job, keyed by its database.
    let jobs: std::collections::BTreeSet<i64> = subs.iter().map(|s| s.job).collect();
    assert_eq!(jobs.len(), 5);
    let g2 = pglab::ident::PgName::from_catalog("old.g2".into());
    assert_eq!(
        old.pending_submissions(&lab, &g2).await.expect("pending"),
        3
    );
    env.stop().await;
}
