//! API stress test (issue 17): N concurrent clients (1, 10, 100), each with
//! its own personal token and its own connection, read a lab's scores
//! (`GET /api/v1/labs/{lab}/scores`, 100 participants) for a fixed time,
//! and each hands in a small dump as its own participant (Basic), in
//! rounds: all at once, then the restores are waited for, for the same
//! time (at least 3 rounds); req/s of hand-ins counts the upload time only. The floor, in the same run and
//! with the same clients: the bare `/healthz` handler. Prints requests per
//! second, p50/p95/p99 latency and errors per level.
//!
//! Run: cargo bench --bench api [-- SECONDS]   (default 8 s per workload)

mod common;

use pglab::control::TokenScope;
use pglab::lab::{LoadedLab, Participants};
use pglab::provision;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTICIPANTS: usize = 100;
const LEVELS: [usize; 3] = [1, 10, 100];

fn lab_yaml() -> String {
    include_str!("../src/demo/lab.yaml")
        .replace("id: demo", "id: api")
        .replace(
            "  late: accept-flagged\n",
            "  late: accept-flagged\n  replace: true\n",
        )
}

/// Latencies (ms) and errors of one workload at one level.
#[derive(Default)]
struct Run {
    ms: Vec<f64>,
    errors: usize,
    wall: f64,
}

impl Run {
    fn print(&self, clients: usize, what: &str) {
        let mut ms = self.ms.clone();
        ms.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            if ms.is_empty() {
                f64::NAN
            } else {
                ms[((ms.len() as f64 - 1.0) * q).round() as usize]
            }
        };
        println!(
            "{clients:>7}  {what:<26} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            ms.len() + self.errors,
            ms.len() as f64 / self.wall,
            at(0.5),
            at(0.95),
            at(0.99),
            self.errors
        );
    }
}

/// Each client sends `request` in a loop for `secs`; one client per
/// connection pool.
async fn hammer<F, Fut>(clients: usize, secs: f64, request: F) -> Run
where
    F: Fn(usize, reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let request = request.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut ms, mut errors) = (vec![], 0);
                while Instant::now() < until {
                    let t = Instant::now();
                    if request(c, http.clone()).await {
                        ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                }
                (ms, errors)
            })
        })
        .collect();
    let mut run = Run::default();
    for t in tasks {
        let (ms, errors) = t.await.expect("client");
        run.ms.extend(ms);
        run.errors += errors;
    }
    run.wall = start.elapsed().as_secs_f64();
    run
}

/// Rounds of `hand_in_round` for `secs` (at least 3); the requests, and
/// the median seconds from a round's first upload to its last restore.
async fn hand_ins(
    clients: usize,
    secs: f64,
    base: &str,
    basics: &Arc<Vec<String>>,
    dump: &Arc<Vec<u8>>,
    store: &pglab::control::Store,
) -> (Run, f64) {
    let start = Instant::now();
    let mut all = Run::default();
    let mut rounds = vec![];
    while rounds.len() < 3 || start.elapsed().as_secs_f64() < secs {
        let (run, restored) = hand_in_round(clients, base, basics, dump, store).await;
        all.ms.extend(run.ms);
        all.errors += run.errors;
        all.wall += run.wall;
        rounds.push(restored);
    }
    rounds.sort_by(|a, b| a.total_cmp(b));
    (all, rounds[rounds.len() / 2])
}

/// Every client hands in the dump once, at the same time, as its own
/// participant; then waits until every restore ended.
async fn hand_in_round(
    clients: usize,
    base: &str,
    basics: &Arc<Vec<String>>,
    dump: &Arc<Vec<u8>>,
    store: &pglab::control::Store,
) -> (Run, f64) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (base, basics, dump) = (base.to_string(), basics.clone(), dump.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let r = reqwest::Client::new()
                    .post(format!("{base}/api/v1/labs/api/submissions"))
                    .header("authorization", &basics[c])
                    .header("content-type", "application/octet-stream")
                    .body(dump.to_vec())
                    .send()
                    .await;
                let ok = r.is_ok_and(|r| r.status().as_u16() == 202);
                (t.elapsed().as_secs_f64() * 1000.0, ok)
            })
        })
        .collect();
    let mut run = Run::default();
    for t in tasks {
        let (ms, ok) = t.await.expect("client");
        if ok {
            run.ms.push(ms);
        } else {
            run.errors += 1;
        }
    }
    run.wall = start.elapsed().as_secs_f64();
    let id = pglab::ident::LabId::parse("api").expect("id");
    loop {
        let subs = store.lab_submissions(&id).await.expect("submissions");
        if subs.iter().all(|s| s.status.ended()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (run, start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8.0);
    let mut bench = common::Bench::start().await;
    bench.stack.settings.scoring.interval_secs = 2;
    // The limiter still counts every request; its buckets are made large
    // enough that the measurement is of the server, not of the limit.
    bench.stack.settings.api.rate_per_minute = 100_000_000;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    let dir = bench.dir.path();
    for (name, text) in [
        ("reference.sql", include_str!("../src/demo/reference.sql")),
        ("starter.sql", include_str!("../src/demo/starter.sql")),
    ] {
        std::fs::write(dir.join(name), text).expect("sql");
    }
    std::fs::write(dir.join("lab.yaml"), lab_yaml()).expect("lab");
    let lab = LoadedLab::load(&dir.join("lab.yaml")).expect("lab loads");
    let people = Participants::parse("bench.csv", &common::participants_csv("a", PARTICIPANTS))
        .expect("csv");
    let plan = provision::plan(&settings, &store, lab, people, false)
        .await
        .expect("plan");
    provision::apply(&settings, &store, &plan, |_, _| {})
        .await
        .expect("apply");
    // The small dump: the solved reference, custom format.
    common::pg_tool(
        &settings,
        "psql",
        &["-qd", "postgres", "-c", "CREATE DATABASE solved"],
    )
    .await;
    let sql = dir.join("reference.sql");
    common::pg_tool(
        &settings,
        "psql",
        &[
            "-qd",
            "solved",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            sql.to_str().expect("path"),
        ],
    )
    .await;
    let dump_file = dir.join("solved.dump");
    common::pg_tool(
        &settings,
        "pg_dump",
        &[
            "-Fc",
            "--no-owner",
            "--no-acl",
            "-f",
            dump_file.to_str().expect("path"),
            "solved",
        ],
    )
    .await;
    let dump = Arc::new(std::fs::read(&dump_file).expect("dump"));

    let served = common::Served::start(&settings).await;
    let board = served.board.clone();
    while !board
        .get()
        .labs
        .iter()
        .any(|l| l.id == "api" && l.participants.iter().all(|p| p.tasks.is_some()))
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let owner = settings.web.admin_user.clone();
    let mut tokens = vec![];
    for i in 0..PARTICIPANTS {
        let (_, t) =
            pglab::app::tokens::create(&store, &format!("c{i}"), &owner, TokenScope::Read, None)
                .await
                .expect("token");
        tokens.push(format!("Bearer {t}"));
    }
    let tokens = Arc::new(tokens);
    let mut basics = vec![];
    for i in 0..PARTICIPANTS {
        use base64::Engine;
        let user = format!("a{i}");
        let pw = store
            .initial_password(&pglab::ident::Username::parse(&user).expect("user"))
            .await
            .expect("password")
            .expect("kept");
        basics.push(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ));
    }
    let basics = Arc::new(basics);
    let base = format!("http://{}", settings.listen);
    println!(
        "API stress test: {PARTICIPANTS} participants x 4 tasks, {secs} s per workload, dump {} bytes, {} cores",
        dump.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>7}  {:<26} {:>8} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "clients", "workload", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for clients in LEVELS {
        let url = format!("{base}/healthz");
        let floor = hammer(clients, secs, move |_, http| {
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        floor.print(clients, "GET /healthz (floor)");
        let (url, t) = (format!("{base}/api/v1/labs/api/scores"), tokens.clone());
        let scores = hammer(clients, secs, move |c, http| {
            let (url, t) = (url.clone(), t.clone());
            async move {
                match http.get(&url).header("authorization", &t[c]).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await;
        scores.print(clients, "GET scores (token)");
        let (run, restored) = hand_ins(clients, secs, &base, &basics, &dump, &store).await;
        run.print(clients, "POST hand-in (Basic)");
        println!(
            "{:>7}  {:<26} a round of {clients} restored {restored:.1} s after its first upload (median)",
            "", ""
        );
    }
    served.stop().await;
    bench.stop().await;
}
