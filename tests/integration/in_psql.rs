//! `pglab.progress` and `pglab.tasks`: a participant asks pglab from psql,
//! in their own database and session; the rows are theirs only, nobody but
//! pglab writes them, and pglab's writes are not mistaken for the student's.

use crate::support::{refusal, shop_lab, TestEnv};

const PEOPLE: &str = "username,name,email\nann,Ann,ann@example.org\nbob,Bob,bob@example.org\n";

#[tokio::test]
async fn progress_in_psql_is_the_participants_own_and_read_only() {
    let env = TestEnv::start(1).await;
    let lab = shop_lab(&env, "inpsql");
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    let mut scorer = env.scorer();
    assert_eq!(scorer.round().await, 2, "the first round scores both");
    // pglab's own progress rows are not a change: no round evaluates again
    // (while nobody works; a student's statements are a change).
    let mut again = 0;
    for _ in 0..4 {
        again += scorer.round().await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(
        again, 0,
        "pglab's progress rows were taken for the students' work"
    );
    let pw = env.password("ann").await;
    let ann = env
        .connect_as(0, "ann", &pw, "inpsql_ann")
        .await
        .expect("ann logs in");

    // The lab's tasks, and her own progress with what to do about it.
    let tasks: Vec<String> = ann
        .query("SELECT task FROM pglab.tasks", &[])
        .await
        .expect("pglab.tasks")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tasks,
        ["reviews-table", "big-spenders", "restock", "new-order"]
    );
    let restock = ann
        .query_one(
            "SELECT state, points, max_points, reason, hint FROM pglab.progress WHERE task = 'restock'",
            &[],
        )
        .await
        .expect("pglab.progress");
    assert_eq!(restock.get::<_, String>(0), "not yet");
    assert_eq!((restock.get::<_, i32>(1), restock.get::<_, i32>(2)), (0, 1));
    assert!(restock.get::<_, String>(3).contains("condition is false"));
    assert!(restock.get::<_, String>(4).contains("case-sensitive"));

    // Only pglab writes there; the tables behind the views stay closed.
    for sql in [
        "INSERT INTO pglab.progress_rows (position, task, title, points, max_points, state, checked_at) VALUES (9, 'x', 'x', 9, 9, 'passed', now())",
        "DELETE FROM pglab.progress_rows",
        "UPDATE pglab.progress SET state = 'passed'",
        "SELECT * FROM pglab.progress_rows",
        "DROP SCHEMA pglab CASCADE",
        "DROP VIEW pglab.progress",
        "CREATE TABLE pglab.mine (i int)",
        "CREATE OR REPLACE VIEW pglab.progress AS SELECT 1",
        "ALTER TABLE pglab.progress_rows ADD COLUMN x int",
        "CREATE TRIGGER t BEFORE DELETE ON pglab.progress_rows FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    ] {
        let e = ann.batch_execute(sql).await.expect_err(sql);
        let msg = refusal(&e);
        assert!(
            msg.contains("permission denied") || msg.contains("must be owner"),
            "{sql}: {msg}"
        );
    }

    // A database's `SET role` default does not reach pglab's admin
    // sessions (their code could `SET ROLE NONE` back to the superuser).
    ann.batch_execute("ALTER DATABASE inpsql_ann SET role = ann")
        .await
        .expect("an owner may set her database's defaults");
    let who: String = env
        .admin(0, "inpsql_ann")
        .await
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("who")
        .get(0);
    assert_eq!(who, env.settings().postgres[0].admin_user);
    // (Without pglab's startup option, the admin would start as ann.)
    let s = &env.settings().postgres[0];
    let mut plain = tokio_postgres::Config::new();
    plain
        .host(&s.host)
        .port(s.port)
        .user(&s.admin_user)
        .password(s.admin_password.expose())
        .dbname("inpsql_ann");
    let (raw, conn) = plain
        .connect(tokio_postgres::NoTls)
        .await
        .expect("plain admin");
    tokio::spawn(conn);
    let raw_who: String = raw
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("who")
        .get(0);
    assert_eq!(raw_who, "ann", "the attack this guards against");

    // Solved in the same session: the view shows it after the next round.
    ann.batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .expect("solve restock");
    scorer.round().await;
    let state: String = ann
        .query_one(
            "SELECT state FROM pglab.progress WHERE task = 'restock'",
            &[],
        )
        .await
        .expect("again")
        .get(0);
    assert_eq!(state, "passed");
    let mine: i64 = ann
        .query_one("SELECT count(*) FROM pglab.progress", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(mine, 4, "her four tasks, nobody else's");

    // The evidence trail: passed, broke, passed again; her session period.
    ann.batch_execute("UPDATE shop.products SET stock = 5 WHERE name LIKE '%Teapot%'")
        .await
        .expect("break restock");
    scorer.round().await;
    ann.batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .expect("restock again");
    scorer.round().await;
    drop(ann);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    scorer.round().await;
    let id = pglab::ident::LabId::parse("inpsql").expect("id");
    let lab_spec = env.store.lab(&id).await.expect("lab").expect("stored").lab;
    let db = pglab::ident::PgName::from_catalog("inpsql_ann".into());
    let events = pglab::app::participants::timeline(&env.store, &lab_spec, &db, true)
        .await
        .expect("timeline");
    let restock: Vec<&str> = events
        .iter()
        .filter(|e| e.what.starts_with("Restock"))
        .map(|e| e.kind)
        .collect();
    assert_eq!(restock, ["passed", "broke", "passed"], "{events:?}");
    let sessions = env
        .store
        .session_history(&id, "inpsql_ann")
        .await
        .expect("sessions");
    assert!(
        sessions.len() == 1 && sessions[0].ended_at.is_some(),
        "{sessions:?}"
    );
    // One row per change, not per round.
    let rows = env
        .store
        .task_history(&id, "inpsql_ann")
        .await
        .expect("history");
    assert_eq!(
        rows.iter().filter(|c| c.task == "restock").count(),
        4,
        "{rows:?}"
    );

    // Analytics from the same trail: restock passes for ann only, once
    // broken; bob has no progress yet.
    let stats = pglab::app::analytics::lab_stats(&env.store, &lab_spec)
        .await
        .expect("stats");
    let t = stats
        .tasks
        .iter()
        .find(|t| t.task == "restock")
        .expect("restock");
    assert_eq!((t.passing, t.broke_again), (1, 1), "{t:?}");
    assert!(t.median_minutes_to_pass.is_some_and(|m| m >= 0.0), "{t:?}");
    assert_eq!(stats.without_progress, ["bob"]);
    let counts: Vec<usize> = t.passing_over_time.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [1, 0, 1], "passed, broke, passed again");
    // Hardest first.
    assert!(stats.tasks.first().is_some_and(|t| t.passing == 0));

    // A schema `pglab` a participant made (here: bob, after pglab's was
    // removed) is never written by pglab: its trigger never runs as admin.
    env.admin(0, "inpsql_bob")
        .await
        .batch_execute("DROP SCHEMA pglab CASCADE")
        .await
        .expect("admin drops bob's pglab schema");
    let bob_pw = env.password("bob").await;
    let bob = env
        .connect_as(0, "bob", &bob_pw, "inpsql_bob")
        .await
        .expect("bob logs in");
    bob.batch_execute(
        "CREATE SCHEMA pglab;
         CREATE TABLE pglab.progress_rows (position int, task text, title text, points int,
             max_points int, state text, reason text, hint text, checked_at timestamptz);
         CREATE TABLE pglab.task_rows (position int, task text, title text, points int, description text);
         CREATE TABLE public.who_ran (who text);
         CREATE FUNCTION public.snitch() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO public.who_ran VALUES (current_user); RETURN NULL; END $$;
         CREATE TRIGGER snitch BEFORE INSERT OR DELETE ON pglab.progress_rows
             FOR EACH ROW EXECUTE FUNCTION public.snitch();
         CREATE TRIGGER snitch BEFORE INSERT OR DELETE ON pglab.task_rows
             FOR EACH ROW EXECUTE FUNCTION public.snitch();
         UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%';",
    )
    .await
    .expect("bob squats the schema");
    scorer.round().await;
    scorer.round().await;
    assert_eq!(
        scorer.passed("inpsql", "bob"),
        ["restock"],
        "bob is still scored"
    );
    let ran: i64 = bob
        .query_one("SELECT count(*) FROM public.who_ran", &[])
        .await
        .expect("who ran")
        .get(0);
    assert_eq!(ran, 0, "pglab wrote into a schema a student made");
    env.stop().await;
}
