//! Several Postgres servers: participants are spread over them, each
//! placement is recorded and stays put.

use crate::support::{shop_lab, TestEnv};

#[tokio::test]
async fn participants_spread_over_two_servers_and_stay() {
    let mut env = TestEnv::start(2).await;
    let lab = shop_lab(&env, "multi");
    let people: String = std::iter::once("username,name,email".to_string())
        .chain((1..=6).map(|i| format!("s{i},Student {i},s{i}@example.org")))
        .collect::<Vec<_>>()
        .join("\n");
    let (plan, _) = env.apply(&lab, &people, false).await.expect("apply");
    let on = |server: &str| {
        plan.placements
            .iter()
            .filter(|p| p.server == server)
            .count()
    };
    assert_eq!(
        (on("main"), on("node2")),
        (3, 3),
        "placements: {:?}",
        plan.placements
    );

    let recorded = env
        .store
        .databases(&pglab::ident::LabId::parse("multi").expect("id"))
        .await
        .expect("records");
    assert_eq!(recorded.len(), 6);
    for p in &plan.placements {
        let idx = if p.server == "main" { 0 } else { 1 };
        let other = 1 - idx;
        let user = p.members[0].as_str();
        let pw = env.password(user).await;
        let c = env
            .connect_as(idx, user, &pw, p.db.as_str())
            .await
            .expect("student reaches their server");
        c.batch_execute("CREATE TABLE t (x int)")
            .await
            .expect("works");
        assert!(
            !env.database_exists(other, p.db.as_str()).await,
            "database only on its own server"
        );
    }

    // A seventh participant joins: the old ones stay where they are.
    let more = format!("{people}\ns7,Student 7,s7@example.org\n");
    let (plan2, _) = env.apply(&lab, &more, false).await.expect("apply");
    for p in &plan.placements {
        let again = plan2
            .placements
            .iter()
            .find(|q| q.db == p.db)
            .expect("still placed");
        assert_eq!(again.server, p.server, "placement of {} moved", p.db);
    }
    assert!(env
        .plan(&lab, &more, false)
        .await
        .expect("plan")
        .changes
        .is_empty());
    one_server_down(&mut env, &lab, &plan, &more).await;
    pins_and_capacity(&mut env).await;
    moves_and_drain(&env).await;
    replicas_share_scoring(&env).await;
    apply_lock_outlives_its_session(&env).await;
    env.stop().await;
}

/// A server stops during a class: only its participants are affected
/// (marked, their last scores kept), the control database records it, new
/// participants go elsewhere, and all comes back by itself.
async fn one_server_down(
    env: &mut TestEnv,
    lab: &std::path::Path,
    plan: &pglab::provision::Plan,
    people: &str,
) {
    let mut scorer = env.scorer();
    for _ in 0..2 {
        scorer.round().await;
    }
    let on_node2: Vec<String> = plan
        .placements
        .iter()
        .filter(|p| p.server == "node2")
        .map(|p| p.members[0].to_string())
        .collect();
    let board = |scorer: &crate::support::Scorer| {
        let snap = scorer.board.get();
        let l = snap.labs.iter().find(|l| l.id == "multi").expect("lab");
        l.participants
            .iter()
            .map(|p| {
                (
                    p.username.clone(),
                    (p.server_down, p.tasks.is_some(), p.error.clone()),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    env.stack.stop_server(1).await;
    scorer.round().await;
    for (user, (down, scored, error)) in board(&scorer) {
        let expected = on_node2.contains(&user);
        assert_eq!(down, expected, "{user}: {error:?}");
        assert!(scored, "{user}: the last scores are kept");
        if expected {
            assert!(error.unwrap_or_default().contains("node2"), "{user}");
        } else {
            assert_eq!(error, None, "{user} is not affected");
        }
    }
    let health = env.store.server_health().await.expect("health");
    let node2 = health
        .iter()
        .find(|h| h.server.as_str() == "node2")
        .expect("recorded");
    assert!(!node2.up && node2.error.is_some(), "{node2:?}");
    assert!(health.iter().any(|h| h.server.as_str() == "main" && h.up));
    // A lab with databases there cannot be planned (with a clear message);
    // a new lab's participants all go to the server that is up.
    let more = format!("{people}s8,Student 8,s8@example.org\n");
    let e = env
        .plan(lab, &more, false)
        .await
        .expect_err("node2 is down");
    assert!(e.to_string().contains("server node2"), "{e}");
    let other = shop_lab(env, "other");
    let (planned, _) = env
        .apply(
            &other,
            "username,name,email\no1,O,o1@example.org\no2,P,o2@example.org\n",
            false,
        )
        .await
        .expect("apply on the server that is up");
    assert!(
        planned.placements.iter().all(|p| p.server == "main"),
        "{:?}",
        planned.placements
    );
    // Back: marked up, scored again, without a restart of pglab.
    env.stack.start_server(1).await.expect("restart node2");
    scorer.round().await;
    for (user, (down, scored, error)) in board(&scorer) {
        assert!(!down && scored && error.is_none(), "{user}: {error:?}");
    }
    let health = env.store.server_health().await.expect("health");
    assert!(health.iter().all(|h| h.up), "{health:?}");
}

const PINS: &str =
    "username,name,email,group,server\np1,P1,p1@example.org,,node2\np2,P2,p2@example.org,,main\n";

/// The list's `server` column pins a database; a full server (by count or
/// by size) gets no new ones; every refusal names the server and why.
async fn pins_and_capacity(env: &mut TestEnv) {
    let lab = shop_lab(env, "pins");
    let (plan, _) = env.apply(&lab, PINS, false).await.expect("apply pinned");
    let server_of = |plan: &pglab::provision::Plan, user: &str| {
        let p = plan
            .placements
            .iter()
            .find(|p| p.members[0].as_str() == user);
        p.expect("placed").server.clone()
    };
    assert_eq!(server_of(&plan, "p1"), "node2");
    assert_eq!(server_of(&plan, "p2"), "main");
    let stored = env
        .store
        .participants(&pglab::ident::LabId::parse("pins").expect("id"))
        .await
        .expect("participants");
    assert_eq!(stored[0].pinned.as_deref(), Some("node2"), "{stored:?}");

    let e = env
        .plan(
            &lab,
            &format!("{PINS}p3,P3,p3@example.org,,nowhere\n"),
            false,
        )
        .await
        .expect_err("unknown server");
    assert!(
        e.to_string().contains("pinned to server \"nowhere\""),
        "{e}"
    );
    // A database that is elsewhere than its pin: a notice, never a move.
    let repinned = PINS.replace("p2@example.org,,main", "p2@example.org,,node2");
    let notices = env
        .plan(&lab, &repinned, false)
        .await
        .expect("plan")
        .notices;
    assert!(
        notices
            .iter()
            .any(|n| n.contains("pglab move pins p2 --to node2")),
        "{notices:?}"
    );

    let count = |server: &str| {
        let store = env.store.clone();
        let server = server.to_string();
        async move {
            let counts = store.database_counts().await.expect("counts");
            counts
                .iter()
                .find(|(s, _)| s.as_str() == server)
                .map_or(0, |(_, n)| *n)
        }
    };
    let on_node2 = count("node2").await;
    env.stack.settings.postgres[1].max_databases = Some(on_node2 as u32);
    let e = env
        .plan(&lab, &format!("{PINS}p3,P3,p3@example.org,,node2\n"), false)
        .await
        .expect_err("node2 is full");
    assert!(
        e.to_string().contains(&format!(
            "node2 is full ({on_node2} of max_databases {on_node2})"
        )),
        "{e}"
    );
    let unpinned = env
        .plan(&lab, &format!("{PINS}p3,P3,p3@example.org,,\n"), false)
        .await
        .expect("room on main");
    assert_eq!(server_of(&unpinned, "p3"), "main");
    env.stack.settings.postgres[0].max_size = Some("1MB".into());
    let e = env
        .plan(&lab, &format!("{PINS}p3,P3,p3@example.org,,\n"), false)
        .await
        .expect_err("both full");
    let e = e.to_string();
    assert!(
        e.contains("no Postgres server has room for pins_p3")
            && e.contains("main is full (")
            && e.contains("of max_size 1MB")
            && e.contains("node2 is full"),
        "{e}"
    );
    env.stack.settings.postgres[0].max_size = None;
    env.stack.settings.postgres[1].max_databases = None;
}

/// Runs a queued job in this process, to its end.
async fn run_job(env: &TestEnv, id: i64) -> pglab::control::JobRecord {
    let worker = "servers-test";
    let job = env
        .store
        .claim_job_id(id, worker)
        .await
        .expect("claim")
        .expect("queued");
    pglab::app::jobs::run(env.settings(), &env.store, worker, job).await;
    env.store.job(id).await.expect("job").expect("kept")
}

/// `pglab move`: the content goes along (restored as the student, so
/// their code in it runs with their rights only), the session on the old
/// server ends, the placement and the page follow, the old server keeps
/// nothing; a move that cannot finish leaves the database where it was;
/// `pglab drain` empties a server.
async fn moves_and_drain(env: &TestEnv) {
    use pglab::ident::{LabId, Username};
    let lab = LabId::parse("pins").expect("id");
    let pw = env.password("p2").await;
    let student = env
        .connect_as(0, "p2", &pw, "pins_p2")
        .await
        .expect("p2 on main");
    student
        .batch_execute(
            "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1), (2), (3);
             CREATE FUNCTION trap(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
             BEGIN
               IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                 EXECUTE 'ALTER ROLE p2 SUPERUSER';
               END IF;
               RETURN $1;
             END $$;
             CREATE INDEX mine_trap ON mine (trap(x));
             CREATE VIEW my_progress AS SELECT * FROM pglab.progress;",
        )
        .await
        .expect("student's work");
    closed_while_copied(env, &pw).await;
    let student = env
        .connect_as(0, "p2", &pw, "pins_p2")
        .await
        .expect("p2 on main again");
    let queue = pglab::app::Queue::default();
    let p2 = Username::parse("p2").expect("user");
    let queued = pglab::app::moves::start_move(
        env.settings(),
        &env.store,
        &queue,
        (&lab, &p2),
        "node2",
        "test",
    )
    .await
    .expect("queued");
    let job = run_job(env, queued.job).await;
    assert_eq!(job.error, None, "{:?}", job.summary);
    assert!(
        student.simple_query("SELECT 1").await.is_err(),
        "the session on the old server was ended"
    );
    assert!(!env.database_exists(0, "pins_p2").await, "source dropped");
    let moved = env
        .connect_as(1, "p2", &pw, "pins_p2")
        .await
        .expect("p2 logs in on node2 with the same password");
    let n: i64 = moved
        .query_one("SELECT count(*) FROM mine", &[])
        .await
        .expect("content came along")
        .get(0);
    assert_eq!(n, 3);
    for server in 0..2 {
        let superuser = env
            .admin(server, "postgres")
            .await
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = 'p2' AND rolsuper",
                &[],
            )
            .await
            .expect("query");
        assert!(superuser.is_none(), "the trap never ran as a superuser");
    }
    let owner: String = moved
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'mine'",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, "p2");
    let member = env.store.memberships(&p2).await.expect("memberships");
    assert_eq!(member[0].server.as_str(), "node2");
    assert_eq!(
        member[0].moved.as_ref().map(|(from, _)| from.as_str()),
        Some("main")
    );
    let notice = pglab::app::moves::notice(&env.store, &member[0])
        .await
        .expect("notice");
    assert!(notice
        .unwrap_or_default()
        .contains("moved from server main"));
    let mut scorer = env.scorer();
    scorer.round().await;
    let snap = scorer.board.get();
    let row = snap
        .labs
        .iter()
        .find(|l| l.id == "pins")
        .and_then(|l| l.participants.iter().find(|p| p.username == "p2"))
        .expect("p2 on the board");
    assert!(
        row.error.is_none() && row.tasks.is_some() && !row.server_down,
        "scored on its new server: {:?}",
        row.error
    );

    // A database of the same name in the way on the target: refused before
    // anything is closed; p1 keeps working on node2.
    env.admin(0, "postgres")
        .await
        .batch_execute("CREATE DATABASE pins_p1")
        .await
        .expect("squatter");
    let p1 = Username::parse("p1").expect("user");
    let queued = pglab::app::moves::start_move(
        env.settings(),
        &env.store,
        &queue,
        (&lab, &p1),
        "main",
        "test",
    )
    .await
    .expect("queued");
    let job = run_job(env, queued.job).await;
    assert!(
        job.error
            .unwrap_or_default()
            .contains("refusing to replace it"),
        "{:?}",
        job.summary
    );
    let pw1 = env.password("p1").await;
    env.connect_as(1, "p1", &pw1, "pins_p1")
        .await
        .expect("p1 still works on node2")
        .batch_execute("CREATE TABLE still_here (x int)")
        .await
        .expect("writes");
    env.admin(0, "postgres")
        .await
        .batch_execute("DROP DATABASE pins_p1")
        .await
        .expect("drop squatter");

    // Drain node2: everybody on main afterwards, with their data.
    let queued =
        pglab::app::moves::start_drain(env.settings(), &env.store, &queue, "node2", "test")
            .await
            .expect("drain queued");
    assert!(!queued.is_empty() && queued.iter().all(|q| q.to == "main"));
    for q in &queued {
        let job = run_job(env, q.job).await;
        assert_eq!(job.error, None, "{}: {:?}", q.database, job.summary);
    }
    assert!(env
        .store
        .databases_on("node2")
        .await
        .expect("on")
        .is_empty());
    let n: i64 = env
        .connect_as(0, "p2", &pw, "pins_p2")
        .await
        .expect("p2 on main again")
        .query_one("SELECT count(*) FROM mine", &[])
        .await
        .expect("content")
        .get(0);
    assert_eq!(n, 3);
    env.connect_as(0, "p1", &pw1, "pins_p1")
        .await
        .expect("p1 on main")
        .batch_execute("SELECT * FROM still_here")
        .await
        .expect("p1's table came along");
}

/// While a copy is made, the student owns neither the source nor the copy
/// (an owner may grant on a database from any session) and can connect to
/// neither; a move that stops there leaves the source to be opened again.
async fn closed_while_copied(env: &TestEnv, pw: &str) {
    use pglab::ident::PgName;
    use pglab::provision::relocate;
    let (db, owner) = (
        PgName::from_catalog("pins_p2".into()),
        PgName::from_catalog("p2".into()),
    );
    let moving = relocate::Moving {
        db: &db,
        owner: &owner,
        search_path: pglab::provision::postgres::search_path(&[]),
        job: 999_999,
    };
    let s = &env.settings().postgres;
    // The target made ready as a move does first.
    let lab = env
        .store
        .lab(&pglab::ident::LabId::parse("pins").expect("id"))
        .await
        .expect("store")
        .expect("lab");
    let placement = pglab::provision::Placement {
        db: db.clone(),
        owner: owner.clone(),
        server: "node2".into(),
        members: vec![pglab::ident::Username::parse("p2").expect("user")],
    };
    let plan = pglab::provision::plan_target(env.settings(), &env.store, lab, placement)
        .await
        .expect("target planned");
    pglab::provision::apply(env.settings(), &env.store, &plan, |_, _| {})
        .await
        .expect("target ready");
    relocate::copy(&s[0], &s[1], &moving, &env.dir.path().join("moved"))
        .await
        .expect("copied");
    for server in 0..2 {
        let owner: String = env
            .admin(server, "postgres")
            .await
            .query_one(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'pins_p2'",
                &[],
            )
            .await
            .expect("owner")
            .get(0);
        assert_eq!(owner, "pglab_closed", "server {server}");
        let e = env
            .connect_as(server, "p2", pw, "pins_p2")
            .await
            .expect_err("closed while it moves");
        assert!(
            crate::support::refusal(&e).contains("permission denied"),
            "{e}"
        );
    }
    relocate::drop_copy(&s[1], &moving)
        .await
        .expect("copy gone");
    assert!(!env.database_exists(1, "pins_p2").await);
    relocate::open_to_owner(&s[0], &db, &owner)
        .await
        .expect("open again");
}

/// A scoring engine as one of several replicas.
fn replica(env: &TestEnv) -> crate::support::Scorer {
    let mut s = env.scorer();
    s.engine = std::mem::replace(
        &mut s.engine,
        pglab::scoring::Engine::new(
            std::sync::Arc::new(env.settings().clone()),
            env.store.clone(),
            s.board.clone(),
            std::sync::Arc::new(pglab::scoring::Health::new()),
        ),
    )
    .shared();
    s
}

/// Runs looks of both replicas until `done` holds (at most 20 s).
async fn until(
    a: &mut crate::support::Scorer,
    b: &mut crate::support::Scorer,
    what: &str,
    done: impl Fn(&crate::support::Scorer, &crate::support::Scorer) -> bool,
) {
    let since = std::time::Instant::now();
    while !done(a, b) {
        assert!(
            since.elapsed().as_secs() < 20,
            "never: {what}: {:?} {:?} / {:?} {:?}",
            a.engine.leases(),
            restocked(a),
            b.engine.leases(),
            restocked(b)
        );
        a.engine.tick().await.expect("look");
        b.engine.tick().await.expect("look");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Two replicas share the scoring: each server's lease is one replica's,
/// both boards show every participant, a change scored by one shows on the
/// other's board, and when one replica ends its lease goes to the other.
async fn replicas_share_scoring(env: &TestEnv) {
    let (mut a, mut b) = (replica(env), replica(env));
    until(&mut a, &mut b, "two servers split", |a, b| {
        let (la, lb) = (
            a.engine.leases().expect("shared"),
            b.engine.leases().expect("shared"),
        );
        la.len() == 1 && lb.len() == 1 && la != lb
    })
    .await;
    // Everybody is on main after the drain: one replica scores them all.
    let (mut main, mut other) = if a.engine.leases().expect("shared").contains("main") {
        (a, b)
    } else {
        (b, a)
    };
    let pw = env.password("p2").await;
    env.connect_as(0, "p2", &pw, "pins_p2")
        .await
        .expect("p2")
        .batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .expect("restock");
    until(
        &mut main,
        &mut other,
        "the other replica shows the pass",
        |m, o| restocked(m) == Some(true) && restocked(o) == Some(true),
    )
    .await;
    let rows = |s: &crate::support::Scorer| {
        let snap = s.board.get();
        snap.labs
            .iter()
            .map(|l| l.participants.len())
            .sum::<usize>()
    };
    assert_eq!(rows(&main), rows(&other), "both boards show everybody");
    let control = env.admin(0, &env.settings().control.database).await;
    let progress_sql = "SELECT last_progress_at FROM database_progress WHERE database = 'pins_p2'";
    let progressed: Option<chrono::DateTime<chrono::Utc>> = control
        .query_one(progress_sql, &[])
        .await
        .expect("progress")
        .get(0);
    assert!(progressed.is_some(), "the pass was progress");
    // The replica scoring main ends (its lease session closes with it).
    drop(main);
    alone(&mut other, "main's lease moves", |o| {
        o.engine.leases().expect("shared").contains("main")
    })
    .await;
    // The replica taking over goes on from the stored scores: evaluating
    // p2 again, unchanged, is no progress (stuck alerts stay true).
    other.engine.round(None).await.expect("round");
    let after: Option<chrono::DateTime<chrono::Utc>> = control
        .query_one(progress_sql, &[])
        .await
        .expect("progress")
        .get(0);
    assert_eq!(after, progressed, "a lease taken over is no progress");
    env.connect_as(0, "p2", &pw, "pins_p2")
        .await
        .expect("p2")
        .batch_execute("UPDATE shop.products SET stock = 3 WHERE name LIKE '%Teapot%'")
        .await
        .expect("unstock");
    alone(&mut other, "scored by the replica left", |o| {
        restocked(o) == Some(false)
    })
    .await;
    // Rows are written only under a lease held by the writing session: a
    // session holding none (a replica that lost its leases) writes nothing.
    let rows = env.store.board_rows_since(0).await.expect("rows");
    let stale = rows
        .iter()
        .find(|r| r.database == "pins_p2")
        .expect("p2's row");
    let written = [(
        "pins".to_string(),
        "pins_p2".to_string(),
        stale.server.clone(),
        serde_json::json!({"stale": true}),
    )];
    let none = pglab::control::Fence {
        pid: 1,
        started: chrono::Utc::now(),
    };
    let put = env.store.put_board_rows(&written, none).await;
    assert!(put.expect("fenced write").is_empty(), "nothing written");
    let after = env.store.board_rows_since(0).await.expect("rows");
    let kept = after
        .iter()
        .find(|r| r.database == "pins_p2")
        .expect("p2's row");
    assert_eq!(
        (kept.seq, &kept.row),
        (stale.seq, &stale.row),
        "not written over"
    );
}

/// Runs looks of one replica until `done` holds (at most 20 s).
async fn alone(
    s: &mut crate::support::Scorer,
    what: &str,
    done: impl Fn(&crate::support::Scorer) -> bool,
) {
    let since = std::time::Instant::now();
    while !done(s) {
        assert!(since.elapsed().as_secs() < 20, "never: {what}");
        s.engine.tick().await.expect("look");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether p2's task `restock` passes on this replica's board (`None`: not
/// evaluated yet).
fn restocked(s: &crate::support::Scorer) -> Option<bool> {
    let snap = s.board.get();
    let lab = snap.labs.iter().find(|l| l.id == "pins")?;
    let i = lab.tasks.iter().position(|t| t.id == "restock")?;
    let p = lab.participants.iter().find(|p| p.username == "p2")?;
    Some(p.tasks.as_ref()?[i].passed)
}

/// The apply lock outlives its session (a failover of the control database
/// ends every session): the apply takes it again on a new one and goes on,
/// unless another apply took it meanwhile, which stops the first.
async fn apply_lock_outlives_its_session(env: &TestEnv) {
    let lab = pglab::ident::LabId::parse("pins").expect("id");
    let db = env.settings().control.database.clone();
    let control = env.admin(0, &db).await;
    let holder_sql =
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
                        AND objid::bigint = (hashtext('pglab apply pins')::bigint & 4294967295)";
    let holder = || async {
        control
            .query_opt(holder_sql, &[])
            .await
            .expect("locks")
            .map(|r| r.get::<_, i32>(0))
    };
    let db_ref = &db;
    let end = |pid: i32| async move {
        env.admin(0, db_ref)
            .await
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate");
    };
    let mut lock = env
        .store
        .lock_apply(&lab)
        .await
        .expect("lock")
        .expect("free");
    let first = holder().await.expect("held");
    let went_on = lock
        .guard(async {
            end(first).await;
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            let again = holder().await.expect("held again");
            assert_ne!(again, first, "taken again on a new session");
            assert!(
                env.store.lock_apply(&lab).await.expect("try").is_none(),
                "still held"
            );
            "went on"
        })
        .await
        .expect("the work goes on");
    assert_eq!(went_on, "went on");
    // Another apply is waiting for the lock when the session ends.
    let other = env.admin(0, &db).await;
    let waiting = tokio::spawn(async move {
        other
            .execute("SELECT pg_advisory_lock(hashtext('pglab apply pins'))", &[])
            .await
            .expect("the other apply's lock");
        other
    });
    let stopped = lock
        .guard(async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            end(holder().await.expect("held")).await;
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            "finished"
        })
        .await;
    let err = stopped.expect_err("stopped: another apply holds the lock");
    assert!(
        err.to_string().contains("another apply holds it now"),
        "{err}"
    );
    lock.release().await;
    let other = waiting.await.expect("waited");
    other
        .execute(
            "SELECT pg_advisory_unlock(hashtext('pglab apply pins'))",
            &[],
        )
        .await
        .expect("unlock");
}
