//! pglab's scoring vs the stock SQL exporter (issue 4), same lab, same
//! databases, same moment: 100 participants x 10 checks of realistic cost
//! (joins and aggregates over a ~10 MB starter). Prints wall time of a full
//! round, Postgres + process CPU-seconds for a full round, a round where 10%
//! of the databases changed and one where nothing changed, and the
//! connections each holds.
//!
//! Run: cargo bench --bench observability [-- N]   (default N = 100)

mod common;

use pglab::lab::{LoadedLab, Participants};
use pglab::scoring::{Board, Engine, Health};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const STARTER: &str = "CREATE TABLE items AS
  SELECT g AS id, md5(g::text) AS a, (g % 97) AS bucket, now() - g * interval '1 minute' AS t
  FROM generate_series(1, 60000) g;
ALTER TABLE items ADD PRIMARY KEY (id);
CREATE TABLE tags (id int PRIMARY KEY, item int REFERENCES items, tag text);
INSERT INTO tags SELECT g, (g * 7) % 60000 + 1, 'tag' || (g % 50) FROM generate_series(1, 40000) g;
CREATE VIEW tag_counts AS SELECT tag, count(*) AS n FROM tags GROUP BY tag;
CREATE VIEW bucket_stats AS SELECT bucket, count(*) AS n, min(t) AS first, max(t) AS last FROM items GROUP BY bucket;
CREATE VIEW tagged_buckets AS SELECT i.bucket, t.tag, count(*) AS n FROM items i JOIN tags t ON t.item = i.id GROUP BY 1, 2;
";

const LAB: &str = r#"id: obsbench
title: Exporter benchmark
reference: {sql: starter.sql}
starter: {sql: starter.sql}
tasks:
  - id: t1
    title: Tag counts
    checks: [{view: public.tag_counts}, {query: "SELECT tag, count(DISTINCT item) FROM tags GROUP BY tag"}]
  - id: t2
    title: Bucket stats
    checks: [{view: public.bucket_stats}, {query: "SELECT bucket, avg(length(a)) FROM items GROUP BY bucket"}]
  - id: t3
    title: Tagged buckets
    checks: [{view: public.tagged_buckets}, {query: "SELECT i.bucket, count(t.*) FROM items i LEFT JOIN tags t ON t.item = i.id GROUP BY i.bucket"}]
  - id: t4
    title: Items
    checks: [{table: public.items, compare: [columns, primary_key]}, {sql: "SELECT count(*) = 60000 FROM items"}]
  - id: t5
    title: Tags
    checks: [{table: public.tags, compare: [columns, primary_key, foreign_keys]}, {sql: "SELECT count(*) > 0 FROM tags t JOIN items i ON i.id = t.item WHERE i.bucket = 3"}]
"#;

/// Clock ticks of a process (and its reaped children) from /proc.
fn cpu_ticks(pid: u32, with_children: bool) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let f = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the ")" : state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    f(11) + f(12) + if with_children { f(13) + f(14) } else { 0 }
}

/// CPU of the whole Postgres server: postmaster (with reaped backends) and
/// its live children.
fn postgres_ticks(postmaster: u32) -> u64 {
    let mut total = cpu_ticks(postmaster, true);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            total += cpu_ticks(pid, false);
        }
    }
    total
}

fn secs(ticks: u64) -> f64 {
    ticks as f64 / 100.0 // USER_HZ
}

fn postmaster_pid(data: &std::path::Path) -> u32 {
    std::fs::read_to_string(data.join("pg-main/postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok())
        .expect("postmaster.pid")
}

async fn connections(settings: &pglab::settings::Settings, app: &str) -> i64 {
    let c = pglab::pgconn::connect(&settings.postgres[0], "postgres")
        .await
        .expect("admin");
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .await
    .expect("count")
    .get(0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let bench = common::Bench::start().await;
    let dir = &bench.dir;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    std::fs::write(dir.path().join("starter.sql"), STARTER).expect("starter");
    std::fs::write(dir.path().join("lab.yaml"), LAB).expect("lab");
    let lab = LoadedLab::load(&dir.path().join("lab.yaml")).expect("lab");
    let csv: String = common::participants_csv("s", n);
    let people = Participants::parse("bench.csv", &csv).expect("csv");
    let plan = pglab::provision::plan(&settings, &store, lab, people, false)
        .await
        .expect("plan");
    pglab::provision::apply(&settings, &store, &plan, |_, _| {})
        .await
        .expect("apply");
    let size: i64 = pglab::pgconn::connect(&settings.postgres[0], "postgres")
        .await
        .expect("admin")
        .query_one("SELECT pg_database_size('obsbench_s0')", &[])
        .await
        .expect("size")
        .get(0);
    let exporter_port = pglab::stack::process::free_port();
    let gen_opts = pglab::generate::GenerateOptions {
        exporter_address: format!("127.0.0.1:{exporter_port}"),
        pglab_address: settings.listen.to_string(),
        prometheus_address: "127.0.0.1:9090".into(),
    };
    let files = pglab::generate::generate(
        &settings,
        &store,
        &pglab::ident::LabId::parse("obsbench").expect("id"),
        &gen_opts,
    )
    .await
    .expect("generate");
    files.write(dir.path()).expect("write");
    // One run per exporter start: a long interval keeps it from running twice.
    let config = dir.path().join("exporter/obsbench.yml");
    let text = std::fs::read_to_string(&config)
        .expect("read")
        .replace("interval: 30s", "interval: 1h")
        // Same work on both sides: under 100 concurrent connections on two
        // cores, the generated 2 s timeout cuts a third of the exporter's
        // queries short (measured), which would flatter it.
        .replace("statement_timeout = '2s'", "statement_timeout = '120s'");
    std::fs::write(&config, text).expect("write");
    let pm = postmaster_pid(&settings.data_dir);
    println!(
        "{n} participants, 10 checks each, starter database {:.1} MB",
        size as f64 / 1e6
    );

    // The stock exporter: start, wait for its first run to end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pg0 = postgres_ticks(pm);
    let t = Instant::now();
    let mut exporter = tokio::process::Command::new("prometheus-sql-exporter")
        .arg("-config.file")
        .arg(&config)
        .args(["-web.listen-address", &format!("127.0.0.1:{exporter_port}")])
        // sql_exporter 0.4.5 logs (JSON lines) to stdout.
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("exporter");
    let mut log = BufReader::new(exporter.stdout.take().expect("stdout")).lines();
    // The run ends when every query has finished on every connection (the
    // "Sleeping until next run" line can come before the last connection's).
    let queries = n * 5;
    let (mut finished, mut failed) = (0, 0);
    while let Ok(Some(line)) = log.next_line().await {
        if std::env::var("BENCH_DEBUG").is_ok() {
            eprintln!("exporter: {line}");
        }
        if line.contains("\"Query finished\"") {
            finished += 1;
        } else if line.contains("\"query\":\"pglab_")
            && (line.contains("\"level\":\"error\"") || line.contains("\"level\":\"warn\""))
        {
            failed += 1;
        }
        if finished + failed >= queries {
            break;
        }
    }
    let exporter_wall = t.elapsed();
    let exporter_pg = secs(postgres_ticks(pm) - pg0);
    let exporter_own = secs(cpu_ticks(exporter.id().expect("pid"), true));
    let exporter_conns = connections(&settings, "pglab-exporter").await;
    exporter.kill().await.expect("kill");
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // pglab: full round, 10% changed, nothing changed.
    let mut engine = Engine::new(
        Arc::new(settings.clone()),
        store.clone(),
        Board::default(),
        Arc::new(Health::new()),
    );
    let me = std::process::id();
    let measure = async |engine: &mut Engine| {
        let (pg, own, t) = (postgres_ticks(pm), cpu_ticks(me, false), Instant::now());
        let evaluated = engine.round(None).await.expect("round");
        (
            t.elapsed(),
            secs(postgres_ticks(pm) - pg),
            secs(cpu_ticks(me, false) - own),
            evaluated,
        )
    };
    let full = measure(&mut engine).await;
    for i in (0..n).step_by(10) {
        let c = pglab::pgconn::connect(&settings.postgres[0], &format!("obsbench_s{i}"))
            .await
            .expect("db");
        c.batch_execute("UPDATE tags SET tag = 'changed' WHERE id = 1")
            .await
            .expect("change");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // stats reach pg_stat_database
    let tenth = measure(&mut engine).await;
    let none = measure(&mut engine).await;

    println!();
    println!("{:<48} {:>12} {:>12}", "", "pglab", "stock exp.");
    println!(
        "{:<48} {:>11.2}s {:>11.2}s",
        "wall time, full round",
        full.0.as_secs_f64(),
        exporter_wall.as_secs_f64()
    );
    let row = |name: &str, p: (Duration, f64, f64, usize)| {
        let exp = exporter_pg + exporter_own;
        println!(
            "{name:<48} {:>11.2}s {:>11.2}s   ({} evaluated; {:.0}x less CPU)",
            p.1 + p.2,
            exp,
            p.3,
            exp / (p.1 + p.2).max(0.01)
        );
    };
    row("CPU (Postgres + process), full round", full);
    row("CPU, 10% of the databases changed", tenth);
    row("CPU, nothing changed", none);
    println!(
        "{:<48} {:>12} {:>12}",
        "connections held between rounds", 0, exporter_conns
    );
    println!(
        "  (of the exporter's run: Postgres {:.2} s, exporter process {:.2} s; it runs everything again each interval)",
        exporter_pg, exporter_own
    );
    println!("  (the exporter's run: {finished} queries finished, {failed} failed, e.g. on its 2 s statement timeout)");
    println!(
        "  (of pglab's full round: Postgres {:.2} s, pglab process {:.2} s)",
        full.1, full.2
    );
    drop(engine);
    drop(store);
    bench.stop().await;
}
