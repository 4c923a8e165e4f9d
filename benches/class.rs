//! Class benchmark (issue 21): N participants (default 300) of the
//! clubdata lab with pglab's web app and scoring loop running as `pglab
//! serve` runs them; a tenth of the class changes something every minute
//! (drops or makes again the view of task 1, so the task fails or passes).
//! For each change it measures the time until the board's grid answer
//! (`/public/labs/bench/board/grid`, polled with its ETag) and `/metrics`
//! show it, first with today's look once per scoring interval (10 s), then
//! with a look every second (`scoring.tick_ms`), in the same run; and the
//! CPU pglab and Postgres spend per minute on a class that changes nothing.
//!
//! Run: cargo bench --bench class [-- N [MINUTES]]   (300, 2)

mod common;

use common::measure::{changed_grid, own_cpu, percentiles, postgres_cpu, rss_mb};

use pglab::lab::LoadedLab;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIEW: &str =
    "CREATE VIEW cd.member_hours AS SELECT m.memid, m.surname, sum(b.slots) / 2.0 AS hours
  FROM cd.members m JOIN cd.bookings b USING (memid) GROUP BY m.memid, m.surname";
/// How often the board and `/metrics` are looked at.
const POLL: Duration = Duration::from_millis(200);

/// One student's change and when the board and `/metrics` showed it.
struct Change {
    user: String,
    who: String,
    passes: bool,
    at: Instant,
    board: Option<Duration>,
    metrics: Option<Duration>,
}

type Changes = Arc<Mutex<Vec<Change>>>;

/// Looks at the grid and `/metrics` every `POLL` until `until`, and notes
/// when each change shows.
async fn watch(base: String, token: String, changes: Changes, until: Instant) {
    let http = reqwest::Client::new();
    let mut etag = String::new();
    let mut cells = std::collections::HashMap::new();
    while Instant::now() < until {
        let url = format!("{base}/public/labs/bench/board/grid");
        if let Some(changed) = changed_grid(&http, &url, &mut etag, 0).await {
            cells = changed;
        }
        let metrics = match http
            .get(format!("{base}/metrics"))
            .bearer_auth(&token)
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let now = Instant::now();
        for c in changes.lock().unwrap().iter_mut() {
            if c.board.is_none() && cells.get(&c.who) == Some(&c.passes) {
                c.board = Some(now - c.at);
            }
            if c.metrics.is_none() {
                let line = format!(
                    "pglab_task_passed{{lab=\"bench\",participant=\"{}\",task=\"view0\"}} {}\n",
                    c.user,
                    u8::from(c.passes)
                );
                if metrics.contains(&line) {
                    c.metrics = Some(now - c.at);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

struct Class {
    settings: pglab::settings::Settings,
    users: Vec<(String, String, String)>,
}

impl Class {
    /// The students' changes for `minutes`: a tenth of the class a minute,
    /// evenly spread, each participant once before any twice.
    async fn play(&self, minutes: f64, changes: Changes, state: &mut [bool]) {
        let n = self.users.len();
        let total = ((n as f64 / 10.0) * minutes).round() as usize;
        let gap = Duration::from_secs_f64(60.0 * minutes / total.max(1) as f64);
        let start = Instant::now();
        let s = &self.settings.postgres[0];
        for k in 0..total {
            tokio::time::sleep_until((start + gap * k as u32).into()).await;
            let i = (k * 7919) % n;
            let (user, password, who) = &self.users[i];
            let mut config = tokio_postgres::Config::new();
            config
                .host(&s.host)
                .port(s.port)
                .user(user)
                .password(password)
                .dbname(format!("bench_{user}"));
            let Ok((client, conn)) = config.connect(tokio_postgres::NoTls).await else {
                eprintln!("{user} cannot log in");
                continue;
            };
            tokio::spawn(conn);
            let passes = !state[i];
            let sql = if passes {
                VIEW.to_string()
            } else {
                "DROP VIEW cd.member_hours".to_string()
            };
            if let Err(e) = client.batch_execute(&sql).await {
                eprintln!("{user}: {e}");
                continue;
            }
            state[i] = passes;
            changes.lock().unwrap().push(Change {
                user: user.clone(),
                who: who.clone(),
                passes,
                at: Instant::now(),
                board: None,
                metrics: None,
            });
            drop(client);
        }
    }
}

/// What one mode measured.
struct Measured {
    mode: String,
    changes: usize,
    board: (f64, f64, f64),
    metrics: (f64, f64, f64),
    unseen: usize,
    pglab_cpu_min: f64,
    pg_cpu_min: f64,
    rss: f64,
}

#[tokio::main]
async fn main() {
    let (n, minutes) = common::class_args(300, 2.0);
    let bench = common::Bench::start().await;
    let dir = &bench.dir;
    let store = bench.store.clone();
    std::fs::write(
        dir.path().join("club.sql"),
        common::clubdata::cleaned_clubdata() + common::CLUB_VIEWS,
    )
    .expect("sql");
    std::fs::write(
        dir.path().join("lab.yaml"),
        common::club_lab_yaml("options: {public_board: true}\n"),
    )
    .expect("lab");
    let lab = LoadedLab::load(&dir.path().join("lab.yaml")).expect("lab loads");
    let took = common::provision_class(&bench.stack.settings, &store, &lab, n).await;
    println!(
        "provisioned {n} participants in {:.1} s",
        took.as_secs_f64()
    );
    let key = store.secret("pseudonym").await.expect("key");
    let mut users = vec![];
    for c in store.credentials(&lab.lab.id).await.expect("credentials") {
        let user = c.username.to_string();
        let who = pglab::scoring::board::pseudonym(&key, "bench", &user);
        users.push((user, c.initial_password.expect("kept"), who));
    }
    users.sort();
    let mut state = vec![true; users.len()];
    let data = bench.stack.settings.data_dir.clone();
    let base = format!("http://{}", bench.stack.settings.listen);
    let mut results = vec![];
    for (mode, tick_ms) in [
        ("today: a look per interval (10 s)", 10_000),
        ("issue 21: a look every second", 1000),
    ] {
        let mut settings = bench.stack.settings.clone();
        settings.scoring.interval_secs = 10;
        settings.scoring.tick_ms = tick_ms;
        let served = common::Served::start(&settings).await;
        // Until every database was evaluated once.
        while served
            .board
            .get()
            .labs
            .first()
            .is_none_or(|l| l.participants.iter().any(|p| p.tasks.is_none()))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(11)).await;
        // A class that changes nothing, for a minute.
        let (cpu0, pg0, t0) = (own_cpu(), postgres_cpu(&data), Instant::now());
        tokio::time::sleep(Duration::from_secs(60)).await;
        let per_min = 60.0 / t0.elapsed().as_secs_f64();
        let pglab_cpu_min = (own_cpu() - cpu0) * per_min;
        let pg_cpu_min = (postgres_cpu(&data) - pg0) * per_min;
        let changes: Changes = Arc::default();
        let class = Class {
            settings: settings.clone(),
            users: users.clone(),
        };
        let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0 + 25.0);
        let token = settings.metrics_token.expose().to_string();
        let watcher = tokio::spawn(watch(base.clone(), token, Arc::clone(&changes), until));
        class.play(minutes, Arc::clone(&changes), &mut state).await;
        watcher.await.expect("watcher");
        let rss = rss_mb("self");
        served.stop().await;
        let seen = changes.lock().unwrap();
        results.push(Measured {
            mode: mode.to_string(),
            changes: seen.len(),
            board: percentiles(seen.iter().filter_map(|c| c.board).collect()),
            metrics: percentiles(seen.iter().filter_map(|c| c.metrics).collect()),
            unseen: seen
                .iter()
                .filter(|c| c.board.is_none() || c.metrics.is_none())
                .count(),
            pglab_cpu_min,
            pg_cpu_min,
            rss,
        });
    }
    println!();
    println!(
        "{n} participants x 20 checks, {:.0} changes a minute for {minutes} min per mode; board and /metrics polled every {} ms",
        n as f64 / 10.0,
        POLL.as_millis()
    );
    println!(
        "{:<36} {:>7} {:>22} {:>22} {:>6} {:>14} {:>14} {:>8}",
        "mode",
        "changes",
        "board p50/p95/max s",
        "metrics p50/p95/max s",
        "unseen",
        "pglab CPU s/min",
        "pg CPU s/min",
        "RSS MB"
    );
    for m in &results {
        println!(
            "{:<36} {:>7} {:>22} {:>22} {:>6} {:>14.2} {:>14.2} {:>8.1}",
            m.mode,
            m.changes,
            format!("{:.2} / {:.2} / {:.2}", m.board.0, m.board.1, m.board.2),
            format!(
                "{:.2} / {:.2} / {:.2}",
                m.metrics.0, m.metrics.1, m.metrics.2
            ),
            m.unseen,
            m.pglab_cpu_min,
            m.pg_cpu_min,
            m.rss
        );
    }
    println!("(CPU per minute: measured over a minute of a class that changes nothing, this process (pglab) and the Postgres server)");
    drop(store);
    bench.stop().await;
}
