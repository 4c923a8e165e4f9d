//! Web board benchmark (issue 5): the live board of a lab with N
//! participants (default 300) x 12 tasks, served by the real web app on a
//! real stack. Prints the time of the board page, of a grid update (200) and
//! of an unchanged poll (304) over HTTP on loopback (an upper bound of the
//! server time), the in-process render time, and the same grid built the
//! naive way (read the scores from the control database on every request)
//! as the baseline, in the same run.
//!
//! Run: cargo bench --bench web [-- N]

mod common;

use pglab::lab::{LoadedLab, Participants};
use pglab::provision;
use pglab::scoring::{LabBoard, ParticipantBoard, TaskBoard};
use std::time::{Duration, Instant};

const TASKS: usize = 12;

fn lab_yaml() -> String {
    let mut tasks = String::new();
    for i in 0..TASKS {
        // Half the tasks pass in the starter state, the rest after a change.
        tasks += &format!(
            "  - id: t{i}\n    title: Task number {i}\n    points: {}\n    checks:\n      - sql: SELECT count(*) >= {} FROM shop.products\n",
            1 + i % 3,
            if i % 2 == 0 { 1 } else { 6 + i }
        );
    }
    format!("id: board\ntitle: Board benchmark\nreference: {{sql: reference.sql}}\nstarter: {{sql: starter.sql}}\noptions: {{public_board: true}}\ntasks:\n{tasks}")
}

/// Milliseconds: median, 95th percentile, max.
fn stats(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95), ms[ms.len() - 1])
}

fn row(what: &str, ms: Vec<f64>, bytes: usize) {
    let (p50, p95, max) = stats(ms);
    println!("{what:<44} {p50:>8.2} {p95:>8.2} {max:>8.2} {:>9}", bytes);
}

async fn timed_get(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    etag: Option<&str>,
) -> (f64, u16, usize, Option<String>) {
    let mut req = http.get(url).header(reqwest::header::COOKIE, cookie);
    if let Some(e) = etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, e);
    }
    let t = Instant::now();
    let r = req.send().await.expect("GET");
    let status = r.status().as_u16();
    let tag = r
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.bytes().await.expect("body");
    (t.elapsed().as_secs_f64() * 1000.0, status, body.len(), tag)
}

/// The naive board: read participants and scores from the control
/// database, then build and render the same grid.
async fn naive_grid(store: &pglab::control::Store, lab: &LabBoard) -> String {
    let id = pglab::ident::LabId::parse("board").expect("id");
    let people = store.participants(&id).await.expect("participants");
    let scores = store.task_scores(&id).await.expect("scores");
    let participants = people
        .iter()
        .map(|p| {
            let tasks = lab
                .tasks
                .iter()
                .map(|t| {
                    let s = scores
                        .iter()
                        .find(|s| s.database == p.database.as_str() && s.task == t.id);
                    TaskBoard {
                        passed: s.is_some_and(|s| s.passed),
                        points: s.map_or(0, |s| s.points as u32),
                        reason: s.and_then(|s| s.reason.clone()),
                        hint: None,
                        first_passed: s.and_then(|s| s.first_passed_at),
                    }
                })
                .collect();
            ParticipantBoard {
                username: p.username.to_string(),
                pseudonym: String::new(),
                database: p.database.to_string(),
                server: String::new(),
                tasks: Some(tasks),
                error: None,
                connected: 0,
                errors_total: 0,
                last_activity: None,
                last_progress: None,
                connected_since: None,
                server_down: false,
            }
        })
        .collect();
    let board = LabBoard {
        participants,
        ..lab.clone()
    };
    pglab::web::render_grid(&board, None, pglab::web::Audience::STAFF, false).expect("render")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let mut bench = common::Bench::start().await;
    bench.stack.settings.scoring.interval_secs = 1;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    let dir = bench.dir.path();
    std::fs::write(
        dir.join("reference.sql"),
        include_str!("../src/demo/reference.sql"),
    )
    .expect("sql");
    std::fs::write(
        dir.join("starter.sql"),
        include_str!("../src/demo/starter.sql"),
    )
    .expect("sql");
    std::fs::write(dir.join("lab.yaml"), lab_yaml()).expect("lab");
    let lab = LoadedLab::load(&dir.join("lab.yaml")).expect("lab loads");
    let people = Participants::parse("bench.csv", &common::participants_csv("s", n)).expect("csv");
    let started = Instant::now();
    let plan = provision::plan(&settings, &store, lab, people, false)
        .await
        .expect("plan");
    provision::apply(&settings, &store, &plan, |_, _| {})
        .await
        .expect("apply");
    println!(
        "provisioned {n} participants in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // A third of the class made progress: more tasks pass for them.
    for i in (0..n).step_by(3) {
        let db = pglab::pgconn::connect(&settings.postgres[0], &format!("board_s{i}"))
            .await
            .expect("connect");
        db.batch_execute(
            "INSERT INTO shop.products (product_id, name, price, stock) SELECT 1000 + g, 'Cup ' || g, 3, 1 FROM generate_series(1, 20) g",
        )
        .await
        .expect("progress");
    }

    let served = common::Served::start(&settings).await;
    let board = served.board.clone();
    let t = Instant::now();
    let lab = loop {
        let snap = board.get();
        if let Some(l) = snap.labs.iter().find(|l| l.id == "board") {
            if l.participants.iter().filter(|p| p.tasks.is_some()).count() == n {
                break l.clone();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "scoring did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "first scoring round of {n} x {TASKS} done after {:.1} s; passed cells: {}",
        t.elapsed().as_secs_f64(),
        lab.participants.iter().map(|p| p.passed()).sum::<usize>()
    );

    // Log in as the bootstrap lab master, as a browser would.
    let base = format!("http://{}", settings.listen);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    let login_cookie = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let page = r.text().await.expect("page");
    let token = page
        .split_once("name=\"token\" value=\"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(t, _)| t.to_string())
        .expect("token");
    let r = http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, &login_cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        // All three are alphanumeric or base64url: nothing to encode.
        .body(format!(
            "username={}&password={}&token={token}",
            settings.web.admin_user,
            settings.web.admin_password.expose()
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 303, "login");
    let cookie = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pglab_session="))
        .and_then(|v| v.split(';').next())
        .expect("session")
        .to_string();

    const RUNS: usize = 200;
    println!();
    println!("{n} participants x {TASKS} tasks, {RUNS} sequential requests each (ms)");
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>9}",
        "", "median", "p95", "max", "bytes"
    );
    let measure = |what: &'static str, url: String, etag: bool| {
        let http = http.clone();
        let cookie = cookie.clone();
        async move {
            let (_, _, _, tag) = timed_get(&http, &url, &cookie, None).await;
            let mut times = vec![];
            let mut size = 0;
            for _ in 0..RUNS {
                let (ms, status, bytes, _) = timed_get(
                    &http,
                    &url,
                    &cookie,
                    if etag { tag.as_deref() } else { None },
                )
                .await;
                assert!(status == 200 || status == 304, "{what}: {status}");
                times.push(ms);
                size = bytes;
            }
            row(what, times.clone(), size);
            stats(times).0
        }
    };
    let page_ms = measure(
        "board page (GET /labs/board/board)",
        format!("{base}/labs/board/board"),
        false,
    )
    .await;
    let grid_ms = measure(
        "grid update (GET .../board/grid, 200)",
        format!("{base}/labs/board/board/grid"),
        false,
    )
    .await;
    let poll_ms = measure(
        "unchanged poll (If-None-Match, 304)",
        format!("{base}/labs/board/board/grid"),
        true,
    )
    .await;
    measure(
        "public board page (pseudonyms)",
        format!("{base}/public/labs/board/board"),
        false,
    )
    .await;

    // In-process: pglab's render from the published board vs the naive
    // grid read from the control database on every request.
    let mut ours = vec![];
    let mut size = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        size = pglab::web::render_grid(&lab, None, pglab::web::Audience::STAFF, false)
            .expect("render")
            .len();
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut naive = vec![];
    for _ in 0..RUNS / 4 {
        let t = Instant::now();
        let html = naive_grid(&store, &lab).await;
        naive.push(t.elapsed().as_secs_f64() * 1000.0);
        size = size.max(html.len());
    }
    let ours_med = stats(ours.clone()).0;
    let naive_med = stats(naive.clone()).0;
    row("render from the published board (in process)", ours, size);
    row("baseline: read control DB + render", naive, size);
    println!();
    println!(
        "board page {page_ms:.2} ms, grid update {grid_ms:.2} ms, unchanged poll {poll_ms:.2} ms (target < 100 ms); render {ours_med:.2} ms vs naive {naive_med:.2} ms = {:.1}x faster",
        naive_med / ours_med.max(0.001)
    );

    // A class watching: 60 pollers every 2 s is 30 requests/s; here 60
    // pollers as fast as they can for 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let url = format!("{base}/labs/board/board/grid");
    let pollers: Vec<_> = (0..60)
        .map(|_| {
            let (http, cookie, url) = (http.clone(), cookie.clone(), url.clone());
            tokio::spawn(async move {
                let (_, _, _, tag) = timed_get(&http, &url, &cookie, None).await;
                let mut times = vec![];
                while Instant::now() < deadline {
                    times.push(timed_get(&http, &url, &cookie, tag.as_deref()).await.0);
                }
                times
            })
        })
        .collect();
    let mut all = vec![];
    for p in pollers {
        all.extend(p.await.expect("poller"));
    }
    let count = all.len();
    let (p50, p95, max) = stats(all);
    println!("60 concurrent pollers for 5 s: {:.0} requests/s, median {p50:.2} ms, p95 {p95:.2} ms, max {max:.2} ms", count as f64 / 5.0);

    served.stop().await;
    bench.stop().await;
}
