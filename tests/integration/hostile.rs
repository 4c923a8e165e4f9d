//! Checks run as the participant's role, read-only, with timeouts: hostile
//! or broken objects in one database cannot hang, escalate or leak, nor
//! touch anybody else's score.

use crate::support::TestEnv;
use std::time::{Duration, Instant};

const REFERENCE: &str = r#"
CREATE VIEW v_sleep AS SELECT 1 AS x;
CREATE VIEW v_rec AS SELECT 1::bigint AS n;
CREATE VIEW v_big AS SELECT 1 AS g;
CREATE TABLE t_locked (id int PRIMARY KEY);
INSERT INTO t_locked VALUES (1), (2);
CREATE TABLE "weird""; DROP TABLE t_locked; --" (id int, "co;l" text);
INSERT INTO "weird""; DROP TABLE t_locked; --" VALUES (1, 'a''b');
CREATE FUNCTION f_write() RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION f_escalate() RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION f_raise() RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION f_notimeout() RETURNS boolean LANGUAGE sql AS 'SELECT true';
"#;

const LAB: &str = r#"id: hostile
title: Hostile objects
reference: {sql: reference.sql}
tasks:
  - {id: sleep, title: Sleep, checks: [{view: public.v_sleep}]}
  - {id: recursive, title: Recursive, checks: [{view: public.v_rec}]}
  - {id: big, title: Big, checks: [{view: public.v_big}]}
  - {id: write, title: Write, checks: [{sql: SELECT f_write()}]}
  - {id: escalate, title: Escalate, checks: [{sql: SELECT f_escalate()}]}
  - {id: raise, title: Raise, checks: [{sql: SELECT f_raise()}]}
  - {id: notimeout, title: No timeout, checks: [{sql: SELECT f_notimeout()}]}
  - {id: locked, title: Locked, checks: [{table: public.t_locked}]}
  - id: weird
    title: Weird names
    checks: [{table: 'public.weird"; DROP TABLE t_locked; --'}]
"#;

const HOSTILE: &str = r#"
CREATE VIEW v_sleep AS SELECT pg_sleep(600)::text::int AS x;
CREATE VIEW v_rec AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) AS n FROM r;
-- 10 million rows, produced as they are read (one generate_series of 10M
-- would be materialized first).
CREATE VIEW v_big AS SELECT a * 1000 + b AS g FROM generate_series(1, 10000) a, generate_series(1, 1000) b;
CREATE TABLE loot (x text);
CREATE FUNCTION f_write() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO loot VALUES ('written'); RETURN true; END $$;
CREATE FUNCTION f_escalate() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  BEGIN EXECUTE 'SET ROLE pglab_admin'; EXCEPTION WHEN OTHERS THEN NULL; END;
  EXECUTE 'RESET ROLE';
  RETURN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
END $$;
CREATE FUNCTION f_raise() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;
CREATE FUNCTION f_notimeout() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('statement_timeout', '0', true); PERFORM pg_sleep(600); RETURN true; END $$;
CREATE TABLE t_locked (id int PRIMARY KEY);
INSERT INTO t_locked VALUES (1), (2);
CREATE TABLE "weird""; DROP TABLE t_locked; --" (id int, "co;l" text);
INSERT INTO "weird""; DROP TABLE t_locked; --" VALUES (1, 'a''b');
"#;

#[tokio::test]
async fn hostile_objects_are_bounded_and_harmless() {
    let env = TestEnv::start(1).await;
    env.write("hostile/reference.sql", REFERENCE);
    let lab = env.write("hostile/lab.yaml", LAB);
    let people = "username,name,email\neve,Eve,eve@example.org\ngood,Good,good@example.org\n";
    env.apply(&lab, people, false).await.expect("apply");
    let eve = env
        .connect_as(0, "eve", &env.password("eve").await, "hostile_eve")
        .await
        .expect("eve");
    eve.batch_execute(HOSTILE)
        .await
        .expect("eve builds her traps");
    let good = env
        .connect_as(0, "good", &env.password("good").await, "hostile_good")
        .await
        .expect("good");
    good.batch_execute(REFERENCE)
        .await
        .expect("good solves everything");
    // Eve holds an exclusive lock in an open transaction during the round.
    eve.batch_execute("BEGIN; LOCK TABLE t_locked IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let mut scorer = env.scorer();
    let started = Instant::now();
    scorer.round().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "a round over hostile objects took {took:?}"
    );

    let reason = |task: &str| scorer.task("hostile", "eve", task);
    assert_eq!(reason("sleep"), (false, Some("timed out after 1 s".into())));
    assert_eq!(
        reason("recursive"),
        (false, Some("timed out after 1 s".into()))
    );
    assert_eq!(reason("big"), (false, Some("more than 10000 rows".into())));
    let (ok, why) = reason("write");
    assert!(
        !ok && why
            .as_deref()
            .unwrap_or("")
            .contains("read-only transaction"),
        "{why:?}"
    );
    assert_eq!(
        reason("escalate"),
        (
            false,
            Some("not yet: the check's condition is false".into())
        ),
        "RESET ROLE must not reach a superuser"
    );
    assert_eq!(reason("raise"), (false, Some("error: boom".into())));
    let (ok, why) = reason("notimeout");
    // statement_timeout was switched off by the function: pglab's outer limit cancels it.
    assert!(
        !ok && why.as_deref().unwrap_or("").starts_with("timed out"),
        "{why:?}"
    );
    assert_eq!(
        reason("locked"),
        (false, Some("waited more than 0.5 s for a lock".into()))
    );
    assert_eq!(
        reason("weird"),
        (true, None),
        "names with quotes and semicolons are quoted"
    );

    // The other participant is scored normally, in the same round.
    assert_eq!(
        scorer.passed("hostile", "good").len(),
        9,
        "{:?}",
        scorer.passed("hostile", "good")
    );

    // Nothing was written, nothing dropped, and no scorer session is left.
    eve.batch_execute("ROLLBACK").await.expect("rollback");
    let loot: i64 = eve
        .query_one("SELECT count(*) FROM loot", &[])
        .await
        .expect("loot")
        .get(0);
    assert_eq!(loot, 0);
    eve.query_one("SELECT count(*) FROM t_locked", &[])
        .await
        .expect("t_locked still there");
    let admin = env.admin(0, "postgres").await;
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pglab_scorer'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert_eq!(left, 0, "the evaluator keeps no connection between rounds");
    drop(eve);
    drop(good);
    env.stop().await;
}
