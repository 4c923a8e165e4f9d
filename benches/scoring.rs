//! Scoring benchmark (issue 3): 300 participants x 20 checks over
//! clubdata-sized databases on one local server. Prints the time of a full
//! round (everything changed), of a round where nothing changed, /metrics
//! time and size, and pglab's peak RSS, next to a naive baseline measured in
//! the same run: connect to every database and run every check, every round.
//!
//! It also measures what a quiet class costs per minute: rounds where
//! nothing changed (every 10 s) and the looks between them (every second),
//! wall time and CPU of pglab and of Postgres.
//!
//! Run: cargo bench --bench scoring [-- N]   (default N = 300)

mod common;

use pglab::lab::LoadedLab;
use pglab::scoring::{Board, Engine, Health};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (ms) used so far by this process and by every `postgres`
/// process (the bench's server is the only one running).
fn cpu_ms() -> (f64, f64) {
    let ticks = |stat: &str| -> Option<f64> {
        let after = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        Some((f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) * 10.0)
    };
    let own = ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()).unwrap_or(0.0);
    let mut pg = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat.contains("(postgres)") {
            pg += ticks(&stat).unwrap_or(0.0);
        }
    }
    (own, pg)
}

/// Wall time (median) and CPU (pglab, Postgres; mean) of runs, and how
/// many databases they evaluated.
struct Meter {
    cpu: (f64, f64),
    times: Vec<Duration>,
    evaluated: usize,
}

impl Meter {
    fn new() -> Self {
        Meter {
            cpu: cpu_ms(),
            times: vec![],
            evaluated: 0,
        }
    }

    fn add(&mut self, began: Instant, evaluated: usize) {
        self.times.push(began.elapsed());
        self.evaluated += evaluated;
    }

    fn done(mut self) -> (f64, f64, f64, usize) {
        let (own, pg) = cpu_ms();
        let n = self.times.len();
        self.times.sort();
        let wall = self.times[n / 2].as_secs_f64() * 1000.0;
        let per = |a: f64, b: f64| (a - b) / n as f64;
        (
            wall,
            per(own, self.cpu.0),
            per(pg, self.cpu.1),
            self.evaluated,
        )
    }
}

/// The naive way: every database, every check, no change detection.
async fn naive_round(
    settings: &pglab::settings::Settings,
    dbs: &[String],
    lab: &pglab::lab::Lab,
) -> Duration {
    let s = &settings.postgres[0];
    let start = Instant::now();
    for db in dbs {
        let client = pglab::pgconn::connect(s, db).await.expect("connect");
        for task in &lab.tasks {
            for check in &task.checks {
                let sql = match check {
                    pglab::lab::Check::View { name, .. }
                    | pglab::lab::Check::Table { name, .. } => format!("SELECT * FROM {name}"),
                    pglab::lab::Check::Query { sql, .. } | pglab::lab::Check::Sql { sql } => {
                        sql.clone()
                    }
                };
                client.query(&sql, &[]).await.expect("check");
            }
        }
    }
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let bench = common::Bench::start().await;
    let dir = &bench.dir;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    std::fs::write(
        dir.path().join("club.sql"),
        common::clubdata::cleaned_clubdata() + common::CLUB_VIEWS,
    )
    .expect("sql");
    std::fs::write(dir.path().join("lab.yaml"), common::club_lab_yaml("")).expect("lab");
    let lab = LoadedLab::load(&dir.path().join("lab.yaml")).expect("lab loads");
    let took = common::provision_class(&settings, &store, &lab, n).await;
    println!(
        "provisioned {n} participants in {:.1} s; {} checks each",
        took.as_secs_f64(),
        lab.lab.tasks.iter().map(|t| t.checks.len()).sum::<usize>()
    );

    let dbs: Vec<String> = store
        .databases(&lab.lab.id)
        .await
        .expect("dbs")
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    let naive = naive_round(&settings, &dbs, &lab.lab).await;

    let _ = std::fs::write("/proc/self/clear_refs", "5"); // reset the peak RSS
    let rss_before = rss_peak_kb();
    let board = Board::default();
    let health = Arc::new(Health::new());
    let mut engine = Engine::new(
        Arc::new(settings.clone()),
        store.clone(),
        board.clone(),
        Arc::clone(&health),
    );
    let t = Instant::now();
    let evaluated = engine.round(None).await.expect("round");
    let full = t.elapsed();
    let t = Instant::now();
    let evaluated_again = engine.round(None).await.expect("round");
    let unchanged = t.elapsed();
    // Steady state: rounds and looks where nothing changed, as a quiet
    // class costs them every minute (interval 10 s, a look every second).
    let mut meter = Meter::new();
    for _ in 0..5 {
        let t = Instant::now();
        meter.add(t, engine.round(None).await.expect("round"));
    }
    let rounds = meter.done();
    let mut meter = Meter::new();
    for _ in 0..100 {
        let t = Instant::now();
        meter.add(t, engine.tick().await.expect("look"));
    }
    let looks = meter.done();
    let snapshot = board.get();
    let passed: usize = snapshot.labs[0]
        .participants
        .iter()
        .map(|p| p.passed())
        .sum();
    let metrics = pglab::metrics::Metrics::new(health, board.clone());
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    // Written once per published round (the baseline: at every scrape).
    let mut write_times = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let _ = pglab::scoring::exposition::Exposition::of(&snapshot);
        write_times.push(t.elapsed());
    }
    board.publish((*snapshot).clone());
    let scrape = |gzip: bool| {
        let t = Instant::now();
        let size: usize = metrics.render_parts(gzip).iter().map(|b| b.len()).sum();
        (t.elapsed(), size)
    };
    let (first_gzip, gzip_size) = scrape(true);
    let (mut plain_times, mut gzip_times, mut size) = (vec![], vec![], 0);
    for _ in 0..20 {
        let (t, n) = scrape(false);
        plain_times.push(t);
        size = n;
        gzip_times.push(scrape(true).0);
    }
    let rss_peak = rss_peak_kb();

    println!();
    println!("{:<52} {:>10} {:>10}", "", "pglab", "naive");
    println!(
        "{:<52} {:>9.2}s {:>9.2}s",
        "full round (every database changed)",
        full.as_secs_f64(),
        naive.as_secs_f64()
    );
    println!(
        "{:<52} {:>9.3}s {:>9.2}s",
        "round where nothing changed",
        unchanged.as_secs_f64(),
        naive.as_secs_f64()
    );
    println!(
        "{:<52} {:>10} {:>10}",
        "databases evaluated (full / unchanged)",
        format!("{evaluated} / {evaluated_again}"),
        format!("{n} / {n}")
    );
    println!("{:<52} {:>10}", "tasks passed in the full round", passed);
    println!(
        "{:<52} {:>8.2}ms   cpu pglab {:.2} ms, postgres {:.2} ms; evaluated {}",
        "round, nothing changed, steady (median of 5)", rounds.0, rounds.1, rounds.2, rounds.3
    );
    println!(
        "{:<52} {:>8.2}ms   cpu pglab {:.2} ms, postgres {:.2} ms; evaluated {}",
        "look, nothing changed (median of 100)", looks.0, looks.1, looks.2, looks.3
    );
    let minute = |looks_n: f64, f: fn(&(f64, f64, f64, usize)) -> f64| {
        6.0 * f(&rounds) + looks_n * f(&looks)
    };
    println!(
        "{:<52} wall {:.1} ms, cpu pglab {:.1} + postgres {:.1} ms",
        "quiet class per minute, rounds every 10 s only",
        minute(0.0, |c| c.0),
        minute(0.0, |c| c.1),
        minute(0.0, |c| c.2)
    );
    println!(
        "{:<52} wall {:.1} ms, cpu pglab {:.1} + postgres {:.1} ms",
        "  the same with a look every second between",
        minute(54.0, |c| c.0),
        minute(54.0, |c| c.1),
        minute(54.0, |c| c.2)
    );
    println!(
        "{:<52} {:>8.2}ms {:>8.2}ms",
        "/metrics scrape, plain (baseline: written per scrape)",
        median(plain_times.clone()),
        median(write_times.clone())
    );
    println!(
        "{:<52} {:>8.2}ms",
        "/metrics scrape, gzip (median of 20)",
        median(gzip_times)
    );
    println!(
        "{:<52} {:>8.2}ms",
        "  first gzip scrape of a round (compresses once)",
        first_gzip.as_secs_f64() * 1000.0
    );
    println!(
        "{:<52} {:>8.2}ms",
        "/metrics written once per round, median of 5",
        median(write_times.clone())
    );
    println!(
        "{:<52} {:>8.0}kB {:>8.0}kB",
        "/metrics size, plain / gzip",
        size as f64 / 1000.0,
        gzip_size as f64 / 1000.0
    );
    println!(
        "{:<52} {:>8.1}MB",
        "peak RSS during the rounds (VmHWM)",
        rss_peak as f64 / 1024.0
    );
    println!(
        "{:<52} {:>8.1}MB",
        "  (RSS peak before the rounds)",
        rss_before as f64 / 1024.0
    );
    println!();
    println!(
        "targets: full round < 10 s: {}; unchanged < 0.5 s: {}; /metrics scrape < 5 ms: {}; RSS < 100 MB: {}",
        if full.as_secs_f64() < 10.0 { "met" } else { "NOT met" },
        if unchanged.as_secs_f64() < 0.5 { "met" } else { "NOT met" },
        if median(plain_times) < 5.0 { "met" } else { "NOT met" },
        if rss_peak < 100 * 1024 { "met" } else { "NOT met" },
    );
    drop(engine);
    drop(store);
    bench.stop().await;
}
