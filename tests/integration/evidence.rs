//! The evidence trail on real services: periodic snapshots that skip
//! unchanged databases, snapshots restored (into a read-only copy, into
//! the participant's own database), and the final state at the deadline
//! under each `after_deadline` policy, also when pglab was not running at
//! the deadline; re-scoring the final snapshot gives the recorded score.

use crate::support::{refusal, shop_lab, TestEnv};
use chrono::Utc;
use pglab::app::evidence;
use pglab::app::snapshots::{start_restore, RestoreTarget};
use pglab::control::{JobRecord, Store};
use pglab::ident::LabId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const ANN: &str = "username,name,email\nann,Ann,ann@example.org\n";
const ANN_BOB: &str = "username,name,email\nann,Ann,ann@example.org\nbob,Bob,bob@example.org\n";
/// Run by a restore for each row of shop.products: it tries to become the
/// session's login (`RESET ROLE`) and make Ann a superuser, and to grant
/// her writes on the table of the database it runs in.
const HOSTILE_CHECK: &str = "
CREATE FUNCTION public.escape(i int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  BEGIN EXECUTE 'GRANT ALL ON shop.products TO ann'; EXCEPTION WHEN others THEN NULL; END;
  BEGIN EXECUTE 'GRANT CREATE ON SCHEMA shop TO ann'; EXCEPTION WHEN others THEN NULL; END;
  BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'ALTER ROLE ann SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
  RETURN true;
END $f$;
ALTER TABLE shop.products ADD CONSTRAINT sneaky CHECK (public.escape(stock));";
const RESTOCK: &str = "UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'";

/// The shop lab with extra lines at the top level.
fn lab_with(env: &TestEnv, id: &str, extra: &str) -> std::path::PathBuf {
    let path = shop_lab(env, id);
    let text = std::fs::read_to_string(&path)
        .expect("lab")
        .replace("snapshots:\n  every: 30m\n  keep: 10\n", "")
        + extra;
    std::fs::write(&path, text).expect("write lab");
    path
}

/// Waits until no job of `lab` is queued or running; returns its jobs.
async fn settle(store: &Store, lab: &str) -> Vec<JobRecord> {
    let id = LabId::parse(lab).expect("lab id");
    for _ in 0..600 {
        let busy: i64 = store
            .client()
            .await
            .expect("store")
            .query_one(
                "SELECT count(*) FROM jobs WHERE lab_id = $1 AND status IN ('queued', 'running')",
                &[&id],
            )
            .await
            .expect("jobs")
            .get(0);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<i64> = store
        .client()
        .await
        .expect("store")
        .query("SELECT id FROM jobs WHERE lab_id = $1 ORDER BY id", &[&id])
        .await
        .expect("jobs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = vec![];
    for id in ids {
        out.push(store.job(id).await.expect("job").expect("exists"));
    }
    out
}

/// Ticks until the ticker queued something (the next interval began).
async fn tick_until_queued(store: &Store, seen: &mut HashMap<(LabId, String), i64>) {
    for _ in 0..150 {
        if evidence::tick(store, Utc::now(), seen).await.expect("tick") > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing was queued within 15 s");
}

fn workers(env: &TestEnv) -> (pglab::app::Queue, Vec<tokio::task::AbortHandle>) {
    let queue = pglab::app::Queue::default();
    let tasks = pglab::app::jobs::start(
        Arc::new(env.settings().clone()),
        env.store.clone(),
        queue.clone(),
    );
    (queue, tasks)
}

async fn teapots(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one(
            "SELECT min(stock) FROM shop.products WHERE name LIKE '%Teapot%'",
            &[],
        )
        .await
        .expect("teapots")
        .get(0)
}

#[tokio::test]
async fn snapshots_skip_unchanged_databases_and_give_back_the_old_state() {
    let env = TestEnv::start(1).await;
    let lab = lab_with(&env, "evsnap", "snapshots:\n  every: 10s\n  keep: 5\n");
    env.apply(&lab, ANN_BOB, false).await.expect("apply");
    let (queue, tasks) = workers(&env);
    let store = &env.store;
    let id = LabId::parse("evsnap").unwrap();
    let mut seen = HashMap::new();
    // Ann's database has a check constraint whose function, run for every
    // row a restore loads, tries to leave her role and to give her rights
    // on whatever copy it is restored into.
    let pw = env.password("ann").await;
    let ann = env
        .connect_as(0, "ann", &pw, "evsnap_ann")
        .await
        .expect("ann");
    ann.batch_execute(HOSTILE_CHECK)
        .await
        .expect("a student's own function");
    drop(ann);

    // First sight: nothing at once (a class is not dumped when pglab
    // starts); each database at its own moment of the next interval.
    assert_eq!(
        evidence::tick(store, Utc::now(), &mut seen).await.unwrap(),
        0
    );
    for _ in 0..2 {
        tick_until_queued(store, &mut seen).await;
    }
    settle(store, "evsnap").await;
    let ann1 = store.snapshots(&id, "evsnap_ann").await.unwrap();
    let bob1 = store.snapshots(&id, "evsnap_bob").await.unwrap();
    assert_eq!((ann1.len(), bob1.len()), (1, 1), "one snapshot each");
    let first = &ann1[0];
    assert!(first.size > 1000 && first.sha256.len() == 64, "{first:?}");
    let file = pglab::app::snapshots::snapshot_file(env.settings(), first);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(mode & 0o077, 0, "snapshots are private: {mode:o}");
    assert_eq!(
        pglab::evidence::snapshot::checksum(&file).unwrap(),
        (first.size, first.sha256.clone())
    );

    // Ann works (her session ends, so its statistics are in); Bob does not.
    let ann = env
        .connect_as(0, "ann", &pw, "evsnap_ann")
        .await
        .expect("ann");
    ann.batch_execute(RESTOCK).await.expect("restock");
    drop(ann);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        tick_until_queued(store, &mut seen).await;
    }
    let jobs = settle(store, "evsnap").await;
    assert_eq!(store.snapshots(&id, "evsnap_ann").await.unwrap().len(), 2);
    assert_eq!(store.snapshots(&id, "evsnap_bob").await.unwrap().len(), 1);
    let skipped = jobs
        .last()
        .filter(|j| j.summary.iter().any(|l| l.contains("unchanged")));
    assert!(
        jobs.iter().any(|j| j
            .summary
            .iter()
            .any(|l| l.contains("unchanged since snapshot #1"))),
        "{skipped:?} {jobs:#?}"
    );

    // Snapshot #1 (before the restock) as a read-only copy for Ann.
    let copy_job = start_restore(store, &queue, &id, first.id, RestoreTarget::Copy, "master")
        .await
        .expect("restore to a copy");
    settle(store, "evsnap").await;
    let done = store.job(copy_job).await.unwrap().unwrap();
    assert_eq!(done.error, None, "{done:?}");
    let ann_copy = env
        .connect_as(0, "ann", &pw, "evsnap_ann_snap_1")
        .await
        .expect("copy");
    assert_ne!(teapots(&ann_copy).await, 20, "the old state");
    for sql in [
        RESTOCK,
        "SET default_transaction_read_only = off; UPDATE shop.products SET stock = 1",
        "CREATE TABLE shop.mine (i int)",
        "CREATE TABLE public.mine (i int)",
        "DROP TABLE shop.orders",
    ] {
        let e = ann_copy.batch_execute(sql).await.expect_err(sql);
        let msg = refusal(&e);
        assert!(
            msg.contains("permission denied")
                || msg.contains("must be owner")
                || msg.contains("read-only"),
            "{sql}: {msg}"
        );
    }
    let admin = env.admin(0, "postgres").await;
    let ann_is: bool = admin
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'ann'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !ann_is,
        "her function ran as a superuser during the restore"
    );
    let bob_pw = env.password("bob").await;
    assert!(
        env.connect_as(0, "bob", &bob_pw, "evsnap_ann_snap_1")
            .await
            .is_err(),
        "only Ann may open her copy"
    );

    // Snapshot #1 into Ann's own database: what is there now is kept first.
    start_restore(store, &queue, &id, first.id, RestoreTarget::Own, "master")
        .await
        .expect("restore into her database");
    let jobs = settle(store, "evsnap").await;
    assert!(jobs.iter().all(|j| j.error.is_none()), "{jobs:#?}");
    let ann = env
        .connect_as(0, "ann", &pw, "evsnap_ann")
        .await
        .expect("ann");
    assert_ne!(
        teapots(&ann).await,
        20,
        "her database holds the old state again"
    );
    let kinds: Vec<_> = store
        .snapshots(&id, "evsnap_ann")
        .await
        .unwrap()
        .iter()
        .map(|s| s.kind.as_str())
        .collect();
    assert_eq!(kinds[0], "before_restore", "{kinds:?}");
    tasks.iter().for_each(|t| t.abort());
    env.stop().await;
}

/// `deadline: <at>` and `after_deadline: <policy>` for the shop lab.
fn deadline_lab(
    env: &TestEnv,
    id: &str,
    at: chrono::DateTime<Utc>,
    policy: &str,
) -> std::path::PathBuf {
    let path = shop_lab(env, id);
    let text = std::fs::read_to_string(&path).expect("lab").replacen(
        "title:",
        &format!(
            "deadline: {}\nafter_deadline: {policy}\ntitle:",
            at.to_rfc3339()
        ),
        1,
    );
    std::fs::write(&path, text).expect("write lab");
    path
}

#[tokio::test]
async fn the_final_state_is_taken_at_the_deadline_under_each_policy() {
    let env = TestEnv::start(1).await;
    let store = &env.store;
    // pglab is not running at this lab's deadline.
    let process_start = Utc::now();
    let past = process_start - chrono::Duration::minutes(1);
    let soon = Utc::now() + chrono::Duration::seconds(40);
    let labs = [
        ("finopen", past, "keep-open"),
        ("finro", soon, "read-only"),
        ("finlock", soon, "lock"),
    ];
    for (id, at, policy) in labs {
        env.apply(&deadline_lab(&env, id, at, policy), ANN, false)
            .await
            .expect("apply");
    }
    let pw = env.password("ann").await;
    // Ann solves one task where the deadline is still ahead, and keeps her
    // sessions open.
    let mut sessions = HashMap::new();
    for (id, _, _) in labs {
        let c = env
            .connect_as(0, "ann", &pw, &format!("{id}_ann"))
            .await
            .expect("ann");
        if id != "finopen" {
            c.batch_execute(RESTOCK).await.expect("restock");
        }
        sessions.insert(id, c);
    }
    // At finopen's deadline a session of hers holds a lock (the dump waits
    // 2 s, then her sessions are ended and it is taken again); in finlock
    // she grants every student (herself too) CONNECT on her database
    // beforehand, and makes pg_dump fail (row security forced on her own
    // table): she is locked out all the same, and her final score is taken.
    let locker = env
        .connect_as(0, "ann", &pw, "finopen_ann")
        .await
        .expect("ann");
    locker
        .batch_execute("BEGIN; LOCK TABLE shop.orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    sessions["finlock"]
        .batch_execute(
            "ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;
             ALTER TABLE shop.orders FORCE ROW LEVEL SECURITY;
             CREATE POLICY everything ON shop.orders USING (true);
             GRANT CONNECT, TEMPORARY ON DATABASE finlock_ann TO pglab_students;",
        )
        .await
        .expect("her own table");
    // pglab starts only now, after finopen's deadline: it takes that final
    // state at once and says why it is late.
    let server = env.serve().await;
    let queue = pglab::app::Queue::default();
    let open = wait_final(store, "finopen").await;
    assert!(open.late, "{open:?}");
    assert!(
        open.reason
            .as_deref()
            .unwrap_or("")
            .contains("pglab was not running at the deadline"),
        "{open:?}"
    );
    assert_eq!(open.points, 0, "nothing solved at the deadline");
    assert!(open.snapshot_id.is_some(), "{open:?}");
    assert!(
        locker.batch_execute("SELECT 1").await.is_err(),
        "the lock holder was ended"
    );
    let mut sessions = sessions;
    sessions.insert(
        "finopen",
        env.connect_as(0, "ann", &pw, "finopen_ann")
            .await
            .expect("keep-open"),
    );

    // keep-open: later work counts live, never in the final score.
    sessions["finopen"]
        .batch_execute(RESTOCK)
        .await
        .expect("still open");
    let mut scorer = env.scorer();
    scorer.round().await;
    assert!(
        scorer.task("finopen", "ann", "restock").0,
        "live score moves on"
    );
    assert_eq!(
        store
            .final_state(&open_lab(), "finopen_ann")
            .await
            .unwrap()
            .unwrap()
            .points,
        0,
        "the final score stays"
    );

    // The others at their deadline, on time, by the running pglab.
    for id in ["finro", "finlock"] {
        let f = wait_final(store, id).await;
        assert!(f.taken_at >= soon, "{f:?}");
        if id == "finlock" {
            assert!(f.snapshot_id.is_none(), "{f:?}");
            assert!(
                f.snapshot_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("row-level security"),
                "{f:?}"
            );
        } else {
            assert!(f.snapshot_id.is_some(), "{f:?}");
        }
        assert!(!f.late, "{f:?}");
        assert_eq!(f.points, 1, "restock counted: {f:?}");
        assert!(
            sessions[id].batch_execute("SELECT 1").await.is_err(),
            "{id}: her session was ended"
        );
    }
    // read-only: a write fails with Postgres' own clear message.
    let ro = env
        .connect_as(0, "ann", &pw, "finro_ann")
        .await
        .expect("read-only opens");
    let e = ro.batch_execute(RESTOCK).await.expect_err("read-only");
    assert!(
        refusal(&e).contains("read-only transaction"),
        "{}",
        refusal(&e)
    );
    ro.batch_execute("SET default_transaction_read_only = off")
        .await
        .expect("a session may turn the default off");
    let e = ro
        .batch_execute("CREATE SCHEMA mine")
        .await
        .expect_err("no CREATE");
    assert!(refusal(&e).contains("permission denied"), "{}", refusal(&e));
    // She cannot get an open database back by resetting it.
    let reset = pglab::app::participants::start_reset(
        store,
        &queue,
        &LabId::parse("finro").unwrap(),
        &pglab::ident::PgName::from_catalog("finro_ann".into()),
        "ann",
        pglab::app::participants::ResetBy::Participant,
    )
    .await;
    assert!(
        matches!(
            reset,
            Err(pglab::app::participants::StartResetError::Closed)
        ),
        "{reset:?}"
    );
    // Nor grant herself CREATE again: the database is no longer hers
    // (Postgres warns that nothing was granted).
    let _ = ro
        .batch_execute("GRANT CREATE ON DATABASE finro_ann TO ann")
        .await;
    let can: bool = ro
        .query_one("SELECT has_database_privilege('finro_ann', 'CREATE')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!can, "she granted herself CREATE");
    // lock: psql is refused.
    let e = env
        .connect_as(0, "ann", &pw, "finlock_ann")
        .await
        .expect_err("locked");
    assert!(
        refusal(&e).contains("permission denied for database"),
        "{}",
        refusal(&e)
    );

    // Re-scoring the final snapshot gives the recorded score.
    let snap = open.snapshot_id.expect("with its snapshot");
    let job = start_restore(
        store,
        &queue,
        &open_lab(),
        snap,
        RestoreTarget::Copy,
        "master",
    )
    .await
    .expect("copy");
    settle(store, "finopen").await;
    let job = store.job(job).await.unwrap().unwrap();
    assert!(
        job.summary
            .iter()
            .any(|l| l.contains("scored again there: 0 of 6 points"))
            && job.summary.iter().any(|l| l.contains("(the same)")),
        "{job:?}"
    );

    // An extension opens the locked database again until the new deadline.
    let ann = pglab::ident::Username::parse("ann").unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    let done = pglab::app::deadlines::extend(
        env.settings(),
        store,
        &LabId::parse("finlock").unwrap(),
        &ann,
        later,
        "master",
    )
    .await
    .expect("extend");
    assert!(done.reopened);
    let again = env
        .connect_as(0, "ann", &pw, "finlock_ann")
        .await
        .expect("open again");
    again.batch_execute(RESTOCK).await.expect("writable again");
    assert!(store
        .final_state(&LabId::parse("finlock").unwrap(), "finlock_ann")
        .await
        .unwrap()
        .is_none());
    let mut seen = HashMap::new();
    assert_eq!(
        evidence::tick(store, process_start, &mut seen)
            .await
            .unwrap(),
        0,
        "nothing is due: her new deadline is ahead"
    );
    web_evidence(&env, store, &pw, snap).await;
    server.stop().await;
    env.stop().await;
}

/// On the web: lab masters download a snapshot (with its checksum) and
/// move a deadline; a student can do neither; a snapshot is only found
/// under its own lab.
async fn web_evidence(env: &TestEnv, store: &Store, ann_pw: &str, snap: i64) {
    use crate::browser::Http;
    crate::web::add_person(env, "ada", "ada-master-pw-1", Some("labmasters")).await;
    let base = format!("http://{}", env.settings().listen);
    let download = format!("/labs/finopen/snapshots/{snap}/download");
    let mut student = Http::new(&base);
    student.login("ann", ann_pw).await;
    let (status, _) = student.get(&download).await;
    assert!(
        status == 403 || status == 404,
        "a student downloads: {status}"
    );
    let mut master = Http::new(&base);
    master.login("ada", "ada-master-pw-1").await;
    let r = master
        .client
        .get(format!("{base}{download}"))
        .header(reqwest::header::COOKIE, master.cookie_header())
        .send()
        .await
        .expect("download");
    assert_eq!(r.status().as_u16(), 200);
    let header = r.headers()["x-checksum-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().await.expect("body");
    let recorded = store.snapshot(snap).await.unwrap().unwrap();
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), recorded.sha256);
    assert_eq!(header, recorded.sha256);
    let (status, _) = master
        .get(&format!("/labs/finro/snapshots/{snap}/download"))
        .await;
    assert_eq!(status, 404, "another lab's snapshot");

    // The read-only database opens again when her deadline moves.
    let csrf = master.csrf("/labs/finro/people/ann").await;
    let (status, _) = master
        .post(
            "/labs/finro/people/ann/extend",
            &[("csrf", &csrf), ("until", "+2h")],
        )
        .await;
    assert_eq!(status, 303);
    let finro = LabId::parse("finro").unwrap();
    assert!(store
        .final_state(&finro, "finro_ann")
        .await
        .unwrap()
        .is_none());
    let ann = env
        .connect_as(0, "ann", ann_pw, "finro_ann")
        .await
        .expect("ann");
    ann.batch_execute(RESTOCK).await.expect("writable again");
}

/// Waits (up to a minute) for the final state of Ann's database in `lab`.
async fn wait_final(store: &Store, lab: &str) -> pglab::control::FinalState {
    let id = LabId::parse(lab).unwrap();
    for _ in 0..600 {
        if let Some(f) = store.final_state(&id, &format!("{lab}_ann")).await.unwrap() {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no final state in {lab} within a minute");
}

fn open_lab() -> LabId {
    LabId::parse("finopen").unwrap()
}
