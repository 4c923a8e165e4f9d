//! Scale-out benchmark (issue 19): a class of N (default 2,000) of the demo
//! lab (small starter, four tasks) over three local Postgres servers, two
//! real `pglab serve` replicas behind a real HAProxy (config from `pglab
//! haproxy`), sharing the scoring by leases.
//!
//! It measures, in one run:
//! - provisioning the class with pglab (plan + apply) against the floor: the
//!   same number of bare `CREATE DATABASE ... TEMPLATE` of pglab's template,
//!   placed as pglab placed them, two connections per server, servers in turn
//!   (the shape of pglab's apply);
//! - a full round (every database evaluated: the first replica alone, holding
//!   every server) and steady-state rounds (both replicas, nobody changes);
//! - CPU of each replica and each Postgres server, memory of each replica and
//!   connections held per server, over a minute of a class that changes
//!   nothing, and again while the class works;
//! - `/metrics` size and render time of each replica;
//! - a scripted class in which a tenth of the students change something
//!   every minute (task `restock` made to pass): the time from the
//!   student's commit to the public board grid of each replica showing it.
//!
//! Run: cargo bench --bench scaleout [-- N [MINUTES]]   (2000, 3)

mod common;

use common::measure::{changed_grid, grid_cells, percentiles, pid_cpu, postgres_cpu, rss_mb};
use pglab::ident::LabId;
use pglab::stack::process::free_port;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const LAB: &str = "scale";
/// The task the class makes pass (the starter's teapots are not 20): its
/// column on the grid (0-based).
const TASK: usize = 2;
const PASS: &str = "UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'";
/// How often each replica's board grid is looked at.
const POLL: Duration = Duration::from_millis(250);

/// One student: login, password, the name on the public board, and the
/// server and database of their database.
#[derive(Clone)]
struct Student {
    user: String,
    password: String,
    who: String,
    host: String,
    port: u16,
    db: String,
}

/// One change and when each replica's board showed it.
struct Change {
    who: String,
    passes: bool,
    at: Instant,
    seen: [Option<Duration>; 2],
}

type Changes = Arc<Mutex<Vec<Change>>>;

/// A `pglab serve` process.
struct Replica {
    child: Child,
    pid: u32,
    base: String,
}

fn pglab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pglab"))
}

/// The demo lab as lab `scale`, pseudonymized on its public board.
fn write_lab(dir: &std::path::Path) -> pglab::lab::LoadedLab {
    std::fs::write(
        dir.join("starter.sql"),
        include_str!("../src/demo/starter.sql"),
    )
    .expect("sql");
    std::fs::write(
        dir.join("reference.sql"),
        include_str!("../src/demo/reference.sql"),
    )
    .expect("sql");
    let yaml = include_str!("../src/demo/lab.yaml")
        .replace("id: demo", &format!("id: {LAB}"))
        .replace("pseudonymize: false", "pseudonymize: true");
    std::fs::write(dir.join("lab.yaml"), yaml).expect("lab");
    pglab::lab::LoadedLab::load(&dir.join("lab.yaml")).expect("lab loads")
}

/// Clones, bare, as many databases per server as pglab placed there, from
/// pglab's template, two connections per server, servers in turn; then
/// drops them. Returns the time of the clones.
async fn floor(
    settings: &pglab::settings::Settings,
    per_server: &HashMap<String, usize>,
) -> Duration {
    let template = pglab::ident::PgName::template_db(&LabId::parse(LAB).expect("id"));
    let mut took = Duration::ZERO;
    for server in &settings.postgres {
        let n = per_server.get(server.name.as_str()).copied().unwrap_or(0);
        let mut clients = vec![];
        for _ in 0..2 {
            clients.push(
                pglab::pgconn::connect(server, "postgres")
                    .await
                    .expect("admin"),
            );
        }
        for (verb, what) in [("CREATE", "clone"), ("DROP", "drop")] {
            let t = Instant::now();
            futures_util::future::join_all(clients.iter().enumerate().map(|(w, c)| {
                let template = template.clone();
                async move {
                    for i in (w..n).step_by(2) {
                        let sql = if verb == "CREATE" {
                            format!("CREATE DATABASE floor_{i} TEMPLATE \"{template}\"")
                        } else {
                            format!("DROP DATABASE floor_{i}")
                        };
                        c.batch_execute(&sql).await.expect(what);
                    }
                }
            }))
            .await;
            if verb == "CREATE" {
                took += t.elapsed();
            }
        }
    }
    took
}

/// The students with their passwords, board names and databases.
async fn students(
    settings: &pglab::settings::Settings,
    store: &pglab::control::Store,
) -> Vec<Student> {
    let id = LabId::parse(LAB).expect("id");
    let key = store.secret("pseudonym").await.expect("key");
    let dbs = store.databases(&id).await.expect("databases");
    let people = store.participants(&id).await.expect("participants");
    let mut out = vec![];
    for c in store.credentials(&id).await.expect("credentials") {
        let user = c.username.to_string();
        let p = people
            .iter()
            .find(|p| p.username == c.username)
            .expect("participant");
        let d = dbs.iter().find(|d| d.name == p.database).expect("database");
        let s = settings.server(&d.server).expect("server");
        out.push(Student {
            who: pglab::scoring::board::pseudonym(&key, LAB, &user),
            user,
            password: c.initial_password.expect("kept"),
            host: s.host.clone(),
            port: s.port,
            db: d.name.to_string(),
        });
    }
    out.sort_by(|a, b| a.user.cmp(&b.user));
    out
}

/// Starts `pglab serve` on a free port with the bench's config; waits until
/// it answers.
async fn start_replica(bench: &common::Bench, k: usize) -> Replica {
    let mut settings = bench.stack.settings.clone();
    let port = free_port();
    settings.listen = ([127, 0, 0, 1], port).into();
    settings.web.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let config = bench.dir.path().join(format!("replica-{k}.yaml"));
    std::fs::write(&config, settings.to_yaml()).expect("config");
    let log =
        std::fs::File::create(bench.dir.path().join(format!("replica-{k}.log"))).expect("log");
    let child = pglab()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("pglab serve");
    let pid = child.id().expect("pid");
    let base = format!("http://127.0.0.1:{port}");
    let since = Instant::now();
    while !reqwest::get(format!("{base}/healthz"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "replica {k} never healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Replica { child, pid, base }
}

/// HAProxy in front of the replicas, with the config `pglab haproxy` writes.
async fn start_haproxy(bench: &common::Bench, replicas: &[Replica]) -> (Child, String) {
    let front = free_port();
    let cfg = bench.dir.path().join("haproxy.cfg");
    let mut cmd = pglab();
    cmd.args([
        "haproxy",
        "--listen",
        &format!("127.0.0.1:{front}"),
        "--out",
    ])
    .arg(&cfg);
    for r in replicas {
        cmd.args(["--replica", r.base.trim_start_matches("http://")]);
    }
    assert!(cmd.status().await.expect("pglab haproxy").success());
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy (scripts/install-deps.sh --test installs it)");
    (child, format!("http://127.0.0.1:{front}"))
}

/// A replica's `/metrics` text, and how long it took.
async fn metrics(base: &str, token: &str) -> (String, Duration) {
    let t = Instant::now();
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    (text, t.elapsed())
}

/// The value of the sample `name` (without labels) in a metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Rounds so far and their seconds, of a replica.
async fn rounds(base: &str, token: &str) -> (f64, f64) {
    let (text, _) = metrics(base, token).await;
    (
        sample(&text, "pglab_scoring_round_duration_seconds_count"),
        sample(&text, "pglab_scoring_round_duration_seconds_sum"),
    )
}

/// Waits until the public board grid at `base` has every student with a
/// result (`n` rows, none "not yet checked").
async fn board_complete(base: &str, n: usize) -> usize {
    let url = format!("{base}/public/labs/{LAB}/board/grid");
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            let html = r.text().await.unwrap_or_default();
            let rows = grid_cells(&html, TASK).len();
            if rows >= n && !html.contains("cell unknown") {
                return html.len();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Client connections per server: (server, total, to the control database).
async fn connections(settings: &pglab::settings::Settings) -> Vec<(String, i64, i64)> {
    let mut out = vec![];
    for s in &settings.postgres {
        let c = pglab::pgconn::connect(s, "postgres").await.expect("admin");
        let row = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE datname = $1)
                 FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[&settings.control.database],
            )
            .await
            .expect("activity");
        out.push((s.name.clone(), row.get(0), row.get(1)));
    }
    out
}

/// CPU seconds of each replica and each Postgres server.
fn cpu(replicas: &[Replica], bench: &common::Bench) -> Vec<f64> {
    let mut out: Vec<f64> = replicas.iter().map(|r| pid_cpu(r.pid)).collect();
    for c in bench.stack.clusters.iter().flatten() {
        out.push(postgres_cpu(&c.dir));
    }
    out
}

/// What one phase measured: CPU seconds per minute of each process.
struct Phase {
    name: &'static str,
    cpu_per_min: Vec<f64>,
    rounds: Vec<(f64, f64)>,
    conns: Vec<(String, i64, i64)>,
    rss: Vec<f64>,
}

async fn phase<F: std::future::Future<Output = ()>>(
    name: &'static str,
    bench: &common::Bench,
    replicas: &[Replica],
    token: &str,
    work: F,
) -> Phase {
    let mut before = vec![];
    for r in replicas {
        before.push(rounds(&r.base, token).await);
    }
    let (c0, t0) = (cpu(replicas, bench), Instant::now());
    work.await;
    let per_min = 60.0 / t0.elapsed().as_secs_f64();
    let c1 = cpu(replicas, bench);
    let mut after = vec![];
    for r in replicas {
        after.push(rounds(&r.base, token).await);
    }
    Phase {
        name,
        cpu_per_min: c0.iter().zip(&c1).map(|(a, b)| (b - a) * per_min).collect(),
        rounds: before
            .iter()
            .zip(&after)
            .map(|(a, b)| (b.0 - a.0, b.1 - a.1))
            .collect(),
        conns: connections(&bench.stack.settings).await,
        rss: replicas
            .iter()
            .map(|r| rss_mb(&r.pid.to_string()))
            .collect(),
    }
}

/// Whether both replicas' latest full rounds evaluated nothing.
async fn quiet(replicas: &[Replica], token: &str) -> bool {
    for r in replicas {
        let (text, _) = metrics(&r.base, token).await;
        if sample(&text, "pglab_scoring_databases_evaluated") != 0.0 {
            return false;
        }
    }
    true
}

/// The class: a tenth of the students a minute for `minutes`, evenly
/// spread, each a task of its own (a slow login does not hold the others).
async fn play(class: &[Student], minutes: f64, changes: Changes) {
    let total = ((class.len() as f64 / 10.0) * minutes).round() as usize;
    let gap = Duration::from_secs_f64(60.0 * minutes / total.max(1) as f64);
    let start = Instant::now();
    let mut tasks = vec![];
    // Each student at most once in the run: a change is never overtaken by
    // the same student's next one.
    for k in 0..total.min(class.len()) {
        tokio::time::sleep_until((start + gap * k as u32).into()).await;
        let s = class[(k * 7919) % class.len()].clone();
        let changes = Arc::clone(&changes);
        tasks.push(tokio::spawn(async move {
            let mut config = tokio_postgres::Config::new();
            config
                .host(&s.host)
                .port(s.port)
                .user(&s.user)
                .password(&s.password)
                .dbname(&s.db);
            let (client, conn) = match config.connect(tokio_postgres::NoTls).await {
                Ok(c) => c,
                Err(e) => return eprintln!("{} cannot log in: {e}", s.user),
            };
            tokio::spawn(conn);
            if let Err(e) = client.batch_execute(PASS).await {
                return eprintln!("{}: {e}", s.user);
            }
            changes.lock().unwrap().push(Change {
                who: s.who,
                passes: true,
                at: Instant::now(),
                seen: [None, None],
            });
        }));
    }
    futures_util::future::join_all(tasks).await;
}

/// Looks at each replica's grid every `POLL` until `until`; notes when
/// each change shows on each.
async fn watch(k: usize, base: String, changes: Changes, until: Instant) {
    let http = reqwest::Client::new();
    let url = format!("{base}/public/labs/{LAB}/board/grid");
    let mut etag = String::new();
    let mut cells = HashMap::new();
    while Instant::now() < until {
        if let Some(changed) = changed_grid(&http, &url, &mut etag, TASK).await {
            cells = changed;
        }
        let now = Instant::now();
        for c in changes.lock().unwrap().iter_mut() {
            if c.seen[k].is_none() && cells.get(&c.who) == Some(&c.passes) {
                c.seen[k] = Some(now - c.at);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_phase(p: &Phase, names: &[String], n: usize) {
    println!("\n{}:", p.name);
    for (i, name) in names.iter().enumerate() {
        let per_1000 = p.cpu_per_min[i] / 60.0 * 100.0 * 1000.0 / n as f64;
        println!(
            "  {name:<22} CPU {:>6.2} s/min = {:>5.1}% of a core ({:>4.1}% per 1,000 participants)",
            p.cpu_per_min[i],
            p.cpu_per_min[i] / 60.0 * 100.0,
            per_1000
        );
    }
    for (i, (count, secs)) in p.rounds.iter().enumerate() {
        println!(
            "  replica {} full rounds: {count:.0}, mean {:.3} s; RSS {:.1} MB",
            i + 1,
            if *count > 0.0 { secs / count } else { f64::NAN },
            p.rss[i]
        );
    }
    for (server, total, control) in &p.conns {
        println!(
            "  {server:<8} client connections: {total} ({control} to the control database, {} to participants' databases)",
            total - control
        );
    }
}

#[tokio::main]
async fn main() {
    let (n, minutes) = common::class_args(2000, 3.0);
    let bench = common::Bench::start_with(3).await;
    let settings = bench.stack.settings.clone();
    let lab = write_lab(bench.dir.path());
    let provisioned = common::provision_class(&settings, &bench.store, &lab, n).await;
    let class = students(&settings, &bench.store).await;
    let mut per_server: HashMap<String, usize> = HashMap::new();
    for d in bench
        .store
        .databases(&LabId::parse(LAB).unwrap())
        .await
        .expect("dbs")
    {
        *per_server.entry(d.server.to_string()).or_default() += 1;
    }
    let floor_took = floor(&settings, &per_server).await;
    println!(
        "provisioned {n} participants over {} servers ({:?}): pglab plan + apply {:.1} s ({:.1} ms each); floor (bare clones) {:.1} s ({:.1} ms each): {:.2}x the floor",
        settings.postgres.len(),
        per_server,
        provisioned.as_secs_f64(),
        provisioned.as_secs_f64() * 1000.0 / n as f64,
        floor_took.as_secs_f64(),
        floor_took.as_secs_f64() * 1000.0 / n as f64,
        provisioned.as_secs_f64() / floor_took.as_secs_f64()
    );
    let token = settings.metrics_token.expose().to_string();
    let mut names: Vec<String> = (1..=2).map(|i| format!("replica {i}")).collect();
    names.extend(
        settings
            .postgres
            .iter()
            .map(|s| format!("postgres {}", s.name)),
    );
    // The baseline: the servers with the class's databases and nobody
    // scoring them (autovacuum's launcher visits every database).
    let baseline = phase(
        "baseline: the same servers, no pglab, 60 s",
        &bench,
        &[],
        &token,
        async {
            tokio::time::sleep(Duration::from_secs(60)).await;
        },
    )
    .await;
    // A full round: the first replica alone holds every server.
    let t = Instant::now();
    let mut replicas = vec![start_replica(&bench, 1).await];
    let grid_bytes = board_complete(&replicas[0].base, n).await;
    let (count, sum) = rounds(&replicas[0].base, &token).await;
    println!(
        "full round (one replica, every database evaluated): first round {:.2} s; start to complete board {:.1} s; grid {} kB",
        if count >= 1.0 { sum / count } else { f64::NAN },
        t.elapsed().as_secs_f64(),
        grid_bytes / 1024
    );
    replicas.push(start_replica(&bench, 2).await);
    let (_haproxy, front) = start_haproxy(&bench, &replicas).await;
    board_complete(&front, n).await;
    board_complete(&replicas[1].base, n).await;
    // The leases settle (a share each, given back every 2 s), and the
    // replica that took servers over has evaluated their databases.
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    while !quiet(&replicas, &token).await {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "leases settled and every database evaluated by its new holder {:.1} s after the second replica answered",
        settled.elapsed().as_secs_f64()
    );
    let idle = phase(
        "a class that changes nothing, 60 s",
        &bench,
        &replicas,
        &token,
        async {
            tokio::time::sleep(Duration::from_secs(60)).await;
        },
    )
    .await;
    for (i, r) in replicas.iter().enumerate() {
        let mut times = vec![];
        let mut size = 0;
        for _ in 0..5 {
            let (text, took) = metrics(&r.base, &token).await;
            size = text.len();
            times.push(took);
        }
        let (p50, _, max) = percentiles(times);
        println!(
            "replica {} /metrics: {} kB, {:.1} ms (median of 5; slowest {:.1} ms)",
            i + 1,
            size / 1024,
            p50 * 1000.0,
            max * 1000.0
        );
    }
    let changes: Changes = Arc::default();
    let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0 + 20.0);
    let watchers: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(k, r)| tokio::spawn(watch(k, r.base.clone(), Arc::clone(&changes), until)))
        .collect();
    let busy = phase(
        "the class at work (and two boards polled every 250 ms)",
        &bench,
        &replicas,
        &token,
        async {
            play(&class, minutes, Arc::clone(&changes)).await;
            futures_util::future::join_all(watchers).await;
        },
    )
    .await;
    print_phase(&baseline, &names[2..], n);
    print_phase(&idle, &names, n);
    print_phase(&busy, &names, n);
    let seen = std::mem::take(&mut *changes.lock().unwrap());
    println!(
        "\n{} changes ({:.0} a minute for {minutes} min); from the student's commit to the board grid showing it:",
        seen.len(),
        n as f64 / 10.0
    );
    for k in 0..2 {
        let (p50, p95, max) = percentiles(seen.iter().filter_map(|c| c.seen[k]).collect());
        println!(
            "  replica {}: p50 {p50:.2} s, p95 {p95:.2} s, max {max:.2} s, not seen {}",
            k + 1,
            seen.iter().filter(|c| c.seen[k].is_none()).count()
        );
    }
    let both: Vec<Duration> = seen
        .iter()
        .filter_map(|c| Some(c.seen[0]?.max(c.seen[1]?)))
        .collect();
    let (p50, p95, max) = percentiles(both);
    println!(
        "  both replicas: p50 {p50:.2} s, p95 {p95:.2} s, max {max:.2} s (target: p95 under 5 s)"
    );
    println!(
        "scoring settings: interval {} s, look every {} ms, {} databases at once per server",
        settings.scoring.interval_secs,
        settings.scoring.tick_ms,
        settings.scoring.concurrency_per_server
    );

    for mut r in replicas {
        let _ = r.child.kill().await;
    }
    bench.stop().await;
}
