//! The clubdata dataset (a real third-party exercise database) as a lab's
//! reference and starter, as SQL and as a pg_dump archive.

use crate::support::TestEnv;
use pglab::lab::LoadedLab;

#[path = "../common/clubdata.rs"]
mod source;
pub use source::cleaned_clubdata;

const TASKS: &str = "tasks:\n  - id: members\n    title: Members\n    checks:\n      - table: cd.members\n        compare: [columns, primary_key, foreign_keys, rows]\n";

#[tokio::test]
async fn clubdata_is_a_lab_reference_and_starter() {
    let env = TestEnv::start(1).await;
    env.write("club/clubdata.sql", &cleaned_clubdata());
    let lab = env.write(
        "club/lab.yaml",
        &format!("id: club\ntitle: Country club\nreference: {{sql: clubdata.sql}}\nstarter: {{sql: clubdata.sql}}\n{TASKS}"),
    );
    // `pglab lab check` loads it into scratch databases and cleans up.
    let loaded = LoadedLab::load(&lab).expect("valid");
    pglab::app::check_lab_loads(&env.settings().postgres[0], &loaded)
        .await
        .expect("clubdata loads");

    env.apply(
        &lab,
        "username,name,email\nsam,Sam,sam@example.org\n",
        false,
    )
    .await
    .expect("apply");
    let reference = env.admin(0, "pglab.ref.club").await;
    let want: i64 = reference
        .query_one("SELECT count(*) FROM cd.bookings", &[])
        .await
        .expect("q")
        .get(0);
    assert!(want > 4000, "clubdata has its bookings: {want}");
    let sam = env
        .connect_as(0, "sam", &env.password("sam").await, "club_sam")
        .await
        .expect("sam");
    let got: i64 = sam
        .query_one("SELECT count(*) FROM cd.bookings", &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(got, want);
    sam.batch_execute("DELETE FROM cd.bookings WHERE bookid < 10; ALTER TABLE cd.members ADD COLUMN nickname text")
        .await
        .expect("sam owns the starter's tables");

    // The same data as a custom-format dump, restored with pg_restore.
    let dump = env.dir.path().join("club/clubdata.dump");
    let s = &env.settings().postgres[0];
    let status = std::process::Command::new("pg_dump")
        .env("PGPASSWORD", s.admin_password.expose())
        .args([
            "-h",
            &s.host,
            "-p",
            &s.port.to_string(),
            "-U",
            &s.admin_user,
            "-Fc",
            "-d",
            "pglab.ref.club",
            "-f",
        ])
        .arg(&dump)
        .status()
        .expect("pg_dump runs");
    assert!(status.success());
    let lab2 = env.write(
        "club/lab2.yaml",
        &format!("id: club2\ntitle: Country club (dump)\nreference: {{dump: clubdata.dump}}\nstarter: {{dump: clubdata.dump}}\n{TASKS}"),
    );
    env.apply(
        &lab2,
        "username,name,email\nsam,Sam,sam@example.org\n",
        false,
    )
    .await
    .expect("apply dump lab");
    let sam2 = env
        .connect_as(0, "sam", &env.password("sam").await, "club2_sam")
        .await
        .expect("sam in the second lab");
    let got: i64 = sam2
        .query_one("SELECT count(*) FROM cd.bookings", &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(got, want);
    sam2.batch_execute("TRUNCATE cd.bookings")
        .await
        .expect("owned after pg_restore too");
    crate::attacks::lab_sql_never_runs_on_pglabs_machine(&env).await;
    env.stop().await;
}
