//! Snapshot benchmark (issue 15): periodic snapshots of N participants'
//! clubdata-sized databases (default 300), taken by pglab's job queue while
//! a scripted class keeps working. In one run, side by side: the class's
//! statements for the same time without snapshots, then while every
//! database is dumped (the worst case: all of them due at once, where a
//! lab spreads them over its interval). Prints the total time, the slowest
//! statement of a working student with and without, and the disk used.
//!
//! Run: cargo bench --bench snapshots [-- N [WORKING]]   (default 300 30)
//!
//! The class: WORKING of the N students, each logged in as themselves,
//! running a read, an update, an insert, a view replaced and a column
//! added and dropped, in turn, 50 ms apart; after a warm-up of 10 s.

mod common;

use pglab::control::{JobKind, NewJob};
use pglab::ident::LabId;
use pglab::lab::LoadedLab;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn lab_yaml() -> String {
    "id: snap\ntitle: Snapshot bench\nreference: {sql: club.sql}\nstarter: {sql: club.sql}\n\
     snapshots:\n  every: 30m\n  keep: 10\n\
     tasks:\n  - id: t\n    title: T\n    checks:\n      - sql: SELECT count(*) > 0 FROM cd.bookings\n"
        .to_string()
}

/// What a working student does, in turn: reads, writes, and now and then
/// DDL (which waits for a dump's lock on the table, if any).
const STATEMENTS: [&str; 6] = [
    "SELECT m.surname, count(*) FROM cd.members m JOIN cd.bookings b USING (memid) GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
    "UPDATE cd.members SET telephone = telephone WHERE memid % 7 = 0",
    "INSERT INTO cd.bookings SELECT max(bookid) + 1, 1, 0, now(), 2 FROM cd.bookings",
    "CREATE OR REPLACE VIEW cd.busy AS SELECT facid, sum(slots) FROM cd.bookings GROUP BY facid",
    "ALTER TABLE cd.facilities ADD COLUMN IF NOT EXISTS note text",
    "ALTER TABLE cd.facilities DROP COLUMN IF EXISTS note",
];

/// Every statement's time, for `secs`, of `clients` working in turn.
async fn class_works(clients: &[tokio_postgres::Client], secs: u64) -> Vec<Duration> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut all = vec![];
    let runs = clients.iter().enumerate().map(|(i, c)| async move {
        let mut times = vec![];
        let mut k = i;
        while Instant::now() < until {
            let t = Instant::now();
            c.batch_execute(STATEMENTS[k % STATEMENTS.len()])
                .await
                .expect("a student's statement");
            times.push(t.elapsed());
            k += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        times
    });
    for times in futures_util::future::join_all(runs).await {
        all.extend(times);
    }
    all.sort();
    all
}

fn pct(times: &[Duration], p: f64) -> f64 {
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn du(path: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let m = e.metadata().expect("meta");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(300);
    let working = args.get(1).copied().unwrap_or(30).min(n);
    let bench = common::Bench::start().await;
    let dir = &bench.dir;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    std::fs::write(
        dir.path().join("club.sql"),
        common::clubdata::cleaned_clubdata(),
    )
    .expect("sql");
    std::fs::write(dir.path().join("lab.yaml"), lab_yaml()).expect("lab");
    let lab = LoadedLab::load(&dir.path().join("lab.yaml")).expect("lab loads");
    let took = common::provision_class(&settings, &store, &lab, n).await;
    println!(
        "provisioned {n} participants in {:.1} s",
        took.as_secs_f64()
    );

    // The working part of the class, logged in as themselves.
    let s = &settings.postgres[0];
    let mut clients = vec![];
    for i in 0..working {
        let user = pglab::ident::Username::parse(&format!("s{i}")).unwrap();
        let pw = store
            .initial_password(&user)
            .await
            .unwrap()
            .expect("password");
        let (c, conn) = tokio_postgres::Config::new()
            .host(&s.host)
            .port(s.port)
            .user(user.as_str())
            .password(pw)
            .dbname(format!("snap_s{i}"))
            .connect(tokio_postgres::NoTls)
            .await
            .expect("student logs in");
        tokio::spawn(conn);
        clients.push(c);
    }

    let id = LabId::parse("snap").unwrap();
    let dbs = store.databases(&id).await.expect("dbs");
    let work_secs = 20;
    // The machine settles after provisioning (checkpoints, autovacuum).
    class_works(&clients, 10).await;
    let without = class_works(&clients, work_secs).await;

    // Every database due at once; pglab's two workers per process take them.
    let queue = pglab::app::Queue::default();
    for db in &dbs {
        let job = NewJob {
            kind: JobKind::Snapshot,
            lab: &id,
            lock_key: format!("snapshot:{id}/{}", db.name),
            title: format!("Snapshot of {}", db.name),
            started_by: "bench",
            params: serde_json::json!({ "database": db.name.as_str(), "kind": "periodic" }),
            max_attempts: 2,
        };
        store.enqueue_job(&job, 1).await.expect("queue");
    }
    let t = Instant::now();
    let workers = pglab::app::jobs::start(Arc::new(settings.clone()), store.clone(), queue.clone());
    let (with, total) = tokio::join!(class_works(&clients, work_secs), async {
        loop {
            let left: i64 = store
                .client()
                .await
                .unwrap()
                .query_one(
                    "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                return t.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    workers.iter().for_each(|w| w.abort());
    // The class once more without snapshots: the noise of the machine.
    let after = class_works(&clients, work_secs).await;
    for r in store
        .client()
        .await
        .unwrap()
        .query("SELECT error FROM jobs WHERE status = 'failed'", &[])
        .await
        .unwrap()
    {
        println!(
            "failed: {}",
            r.get::<_, Option<String>>(0).unwrap_or_default()
        );
    }
    let failed: i64 = store
        .client()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM jobs WHERE status = 'failed'", &[])
        .await
        .unwrap()
        .get(0);
    let mut taken = 0;
    let mut bytes = 0i64;
    for db in &dbs {
        let list = store.snapshots(&id, &db.name).await.unwrap();
        taken += list.len();
        bytes += list.iter().map(|s| s.size).sum::<i64>();
    }
    let disk = du(&settings.data_dir.join("snapshots"));

    println!();
    println!(
        "{:<36} {:>14} {:>14} {:>14}",
        "a working student's statements", "no snapshots", "snapshots", "none (after)"
    );
    println!(
        "{:<36} {:>14} {:>14} {:>14}",
        "statements run",
        without.len(),
        with.len(),
        after.len()
    );
    for (name, p) in [("median", 0.5), ("99th percentile", 0.99), ("slowest", 1.0)] {
        println!(
            "{:<36} {:>12.1}ms {:>12.1}ms {:>12.1}ms",
            name,
            pct(&without, p),
            pct(&with, p),
            pct(&after, p)
        );
    }
    println!();
    println!(
        "snapshots: {taken} of {n} databases in {:.1} s ({:.0} ms each on average, 2 workers), {failed} jobs failed",
        total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "disk: {:.1} MB in {} files ({:.0} kB each; sizes recorded {:.1} MB)",
        disk as f64 / 1e6,
        taken,
        disk as f64 / 1e3 / taken.max(1) as f64,
        bytes as f64 / 1e6
    );
    drop(clients);
    drop(store);
    bench.stop().await;
}
