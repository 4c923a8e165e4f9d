//! Dump submission benchmark (issue 6), on the real stack in one run:
//!
//! 1. Upload acceptance: small custom dumps uploaded concurrently over HTTP
//!    by many participants (LDAP password, streaming to disk, preflight with
//!    `pg_restore --list`, a queued job each), restores queued behind;
//!    baseline: a bare HTTP handler in this process that only streams the
//!    same uploads to disk.
//! 2. Restore overhead: two ~50 MB custom dumps (one table of text, quick
//!    to restore for its size; clubdata grown to ~8M bookings with its keys
//!    and indexes) restored through pglab (upload start to the job's
//!    recorded end) vs plain `pg_restore` into a new database, as the admin
//!    and as the group's role; rounds whose order rotates, medians.
//!
//! Run: cargo bench --bench submissions [-- UPLOADS]   (default 300; 0 runs
//! the restore comparison only). PGLAB_LOG=pglab::submissions=info prints
//! the phases of each restore job.

mod common;

use common::{pg_tool, pg_tool_as};

use axum::extract::Multipart;
use pglab::lab::{LoadedLab, Participants};
use pglab::provision;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTICIPANTS: usize = 100;
const CONCURRENCY: usize = 32;

fn lab_yaml() -> String {
    "id: sub\ntitle: Submission benchmark\nreference: {sql: ref.sql}\n\
     submissions:\n  max_size: 200MB\n\
     tasks:\n  - id: t\n    title: T\n    checks:\n      - sql: SELECT true\n"
        .to_string()
}

async fn post_file(
    http: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
    bytes: Vec<u8>,
) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("db.dump"),
    );
    let mut req = http.post(url).multipart(form);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// `total` uploads, `CONCURRENCY` at a time; returns (seconds, accepted).
async fn upload_all(
    http: &reqwest::Client,
    url: Arc<String>,
    people: Arc<Vec<(String, String)>>,
    dump: Arc<Vec<u8>>,
    total: usize,
    with_auth: bool,
) -> (f64, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, url, people, dump, next) = (
                http.clone(),
                Arc::clone(&url),
                Arc::clone(&people),
                Arc::clone(&dump),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let mut ok = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return ok;
                    }
                    let (u, p) = &people[i % people.len()];
                    let auth = with_auth.then_some((u.as_str(), p.as_str()));
                    let (status, body) = post_file(&http, &url, auth, dump.to_vec()).await;
                    if status == 202 || status == 200 {
                        ok += 1;
                    } else {
                        eprintln!("upload refused: {status} {body}");
                    }
                }
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("uploader");
    }
    (started.elapsed().as_secs_f64(), accepted)
}

/// The baseline server: streams the `file` field to disk, nothing else.
async fn bare_server(dir: PathBuf) -> String {
    use axum::routing::post;
    use tokio::io::AsyncWriteExt;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/upload",
            post(move |mut form: Multipart| {
                let (dir, counter) = (dir.clone(), Arc::clone(&counter));
                async move {
                    while let Ok(Some(mut field)) = form.next_field().await {
                        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut f = tokio::fs::File::create(dir.join(n.to_string()))
                            .await
                            .expect("file");
                        while let Ok(Some(chunk)) = field.chunk().await {
                            f.write_all(&chunk).await.expect("write");
                        }
                    }
                    (axum::http::StatusCode::ACCEPTED, "{}")
                }
            }),
        )
        // As pglab's upload routes: no 2 MB cap on the body.
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/upload")
}

async fn wait_done(store: &pglab::control::Store, id: i64) -> pglab::control::SubmissionRecord {
    loop {
        let s = store.submission(id).await.expect("job").expect("exists");
        if s.status.ended() {
            return s;
        }
        // Coarse: the time comes from the job's recorded end, and polling
        // must not load the server while the restore runs.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Plain `pg_restore` of the dump into a new database; its seconds. The
/// database is dropped afterwards, outside the timed part. `as_group`: the
/// `pg_restore` of pglab's job without the rest of the job: by a login
/// role that is a member of participant `u0`, with `--role=u0`, into a
/// database `u0` owns; otherwise as pglab's admin, the way a course team
/// restores by hand.
async fn plain_restore(
    settings: &pglab::settings::Settings,
    admin: &tokio_postgres::Client,
    dump: &Path,
    name: &str,
    as_group: bool,
) -> f64 {
    let db = name;
    let t = Instant::now();
    let owner = if as_group { " OWNER u0" } else { "" };
    admin
        .batch_execute(&format!("CREATE DATABASE {db}{owner}"))
        .await
        .expect("create");
    let args = vec!["--no-owner", "--no-privileges", "-d", db, path(dump)];
    if as_group {
        let mut args = args;
        args.insert(0, "--role=u0");
        pg_tool_as(settings, GROUP_LOGIN, "pg_restore", &args).await;
    } else {
        pg_tool(settings, "pg_restore", &args).await;
    }
    let seconds = t.elapsed().as_secs_f64();
    admin
        .batch_execute(&format!("DROP DATABASE {db}"))
        .await
        .expect("drop");
    seconds
}

/// Lets the work a side leaves behind end outside the timed part, so that
/// neither side pays for the other's: pglab retiring the older previous
/// database (a `pg_dump` and a drop), then a checkpoint writing out what
/// the restore left in memory, and what the kernel still has to write.
async fn settle(admin: &tokio_postgres::Client, store: &pglab::control::Store) {
    // The restores of the comparison go to participant u0's database.
    while store
        .older_previous(
            &pglab::ident::LabId::parse("sub").expect("id"),
            &pglab::ident::PgName::from_catalog("sub_u0".into()),
            -1,
        )
        .await
        .expect("kept databases")
        .len()
        > 1
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.batch_execute("CHECKPOINT").await.expect("checkpoint");
    // And the files written meanwhile (uploads, dumps) reach the disk.
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .expect("sync");
    assert!(status.success());
}

/// Seconds of one restore through pglab.
struct Through {
    /// Upload start to the job's recorded end.
    total: f64,
    /// Upload start to the 202 (streaming, preflight, job row).
    accepted: f64,
    /// Job row to a worker's start.
    queued: f64,
    /// The restore job itself.
    job: f64,
}

async fn pglab_restore(
    http: &reqwest::Client,
    url: &str,
    store: &pglab::control::Store,
    login: (&str, &str),
    dump: &[u8],
) -> Through {
    let (t, start) = (Instant::now(), chrono::Utc::now());
    let (status, body) = post_file(http, url, Some(login), dump.to_vec()).await;
    assert_eq!(status, 202, "{body}");
    let accepted = t.elapsed().as_secs_f64();
    let job = wait_done(store, body["id"].as_i64().expect("id")).await;
    assert_eq!(
        job.status,
        pglab::control::JobStatus::Succeeded,
        "{:?}",
        job.errors
    );
    // The server's clock is this machine's: upload start to the end the
    // job recorded.
    let finished = job.finished_at.expect("finished");
    let total = (finished - start).num_microseconds().expect("span") as f64 / 1e6;
    Through {
        total,
        accepted,
        queued: job.started_at.map_or(0.0, |s| {
            (s - job.uploaded_at).num_milliseconds() as f64 / 1000.0
        }),
        job: job.duration_secs().unwrap_or(0.0),
    }
}

/// The login of the "as the group" plain restore.
const GROUP_LOGIN: (&str, &str) = ("bench_restorer", "bench-restorer-password");

/// Counted rounds of the restore comparison (after one warm-up round).
const ROUNDS: usize = 12;
/// Counted rounds with the grown clubdata dump (its restore takes ~20 s).
const CLUB_ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

/// The three ways of restoring a dump that the comparison times.
struct Sides<'a> {
    settings: &'a pglab::settings::Settings,
    admin: &'a tokio_postgres::Client,
    http: &'a reqwest::Client,
    store: &'a pglab::control::Store,
    url: String,
    login: (String, String),
    bare: &'a str,
    bare_dir: &'a Path,
}

/// Medians of a comparison.
struct Compared {
    what: &'static str,
    mb: f64,
    plain: f64,
    grouped: f64,
    ours: f64,
    job: f64,
    accepted: f64,
    bare_upload: f64,
    /// Medians of the rounds' own ratios pglab / plain and pglab / as the
    /// group (each round's sides ran back to back).
    paired_plain: f64,
    paired_group: f64,
}

impl Compared {
    fn print(&self) {
        let Compared {
            what,
            mb,
            plain: p,
            grouped: g,
            ours: o,
            job: j,
            accepted: a,
            bare_upload: b,
            paired_plain,
            paired_group,
        } = *self;
        let pct = |x: f64, base: f64| (x / base - 1.0) * 100.0;
        println!("restore of a {mb:.1} MB custom dump ({what}), medians:");
        println!(
            "  plain pg_restore into a new database {p:.2} s; through pglab (upload, preflight, queue, restore as the group, swap) {o:.2} s: overhead {:+.1}% (target <= 10%)",
            pct(o, p)
        );
        println!(
            "  of which the upload and preflight {a:.2} s (the bare upload {b:.2} s) and the restore job {j:.2} s ({:+.1}% against plain pg_restore)",
            pct(j, p)
        );
        println!(
            "  pg_restore as the group (member login, --role, database owned by the group) {g:.2} s ({:+.1}%); pglab against it {:+.1}%, its job {:+.1}%",
            pct(g, p),
            pct(o, g),
            pct(j, g)
        );
        println!(
            "  round by round (median of each round's ratio): pglab against plain pg_restore {:+.1}%, against pg_restore as the group {:+.1}%",
            (paired_plain - 1.0) * 100.0,
            (paired_group - 1.0) * 100.0
        );
    }
}

impl Sides<'_> {
    /// `rounds` counted rounds (after a warm-up round when `warm_up`),
    /// the order of the sides rotating from round to round.
    async fn compare(
        &self,
        what: &'static str,
        dump: &Path,
        rounds: usize,
        warm_up: bool,
    ) -> Compared {
        let bytes = std::fs::read(dump).expect("dump");
        let mb = bytes.len() as f64 / 1e6;
        println!();
        println!("restore of a {mb:.1} MB custom dump ({what}):");
        let (mut plain, mut grouped, mut ours, mut jobs, mut accepted, mut bares) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let first = usize::from(!warm_up);
        for round in first..=rounds {
            // The floor of an upload: the bare handler taking the same file.
            let t = Instant::now();
            let (status, _) = post_file(self.http, self.bare, None, bytes.clone()).await;
            assert_eq!(status, 202);
            let bare_upload = t.elapsed().as_secs_f64();
            let _ = std::fs::remove_dir_all(self.bare_dir);
            std::fs::create_dir_all(self.bare_dir).expect("bare dir");
            settle(self.admin, self.store).await;
            let (mut figures, mut plain_s, mut group_s) = (None, 0.0, 0.0);
            for side in 0..3 {
                match (side + round) % 3 {
                    0 => {
                        plain_s = plain_restore(
                            self.settings,
                            self.admin,
                            dump,
                            &format!("plain_{round}"),
                            false,
                        )
                        .await
                    }
                    1 => {
                        group_s = plain_restore(
                            self.settings,
                            self.admin,
                            dump,
                            &format!("group_{round}"),
                            true,
                        )
                        .await
                    }
                    _ => {
                        let (user, password) = (&self.login.0, &self.login.1);
                        figures = Some(
                            pglab_restore(
                                self.http,
                                &self.url,
                                self.store,
                                (user, password),
                                &bytes,
                            )
                            .await,
                        )
                    }
                }
                settle(self.admin, self.store).await;
            }
            let f = figures.expect("pglab ran");
            let label = if round == 0 {
                "warm-up".to_string()
            } else {
                plain.push(plain_s);
                grouped.push(group_s);
                ours.push(f.total);
                jobs.push(f.job);
                accepted.push(f.accepted);
                bares.push(bare_upload);
                format!("round {round}")
            };
            println!(
                "  {label}: pg_restore {plain_s:.2} s, as the group {group_s:.2} s | pglab {:.2} s = upload+preflight {:.2} s, queue {:.2} s, restore job {:.2} s; bare upload {bare_upload:.2} s",
                f.total, f.accepted, f.queued, f.job,
            );
        }
        let ratios = |base: &[f64]| median(ours.iter().zip(base).map(|(o, b)| o / b).collect());
        let (paired_plain, paired_group) = (ratios(&plain), ratios(&grouped));
        Compared {
            what,
            mb,
            paired_plain,
            paired_group,
            plain: median(plain),
            grouped: median(grouped),
            ours: median(ours),
            job: median(jobs),
            accepted: median(accepted),
            bare_upload: median(bares),
        }
    }
}

/// clubdata (`../shared/datasets/clubdata`) with its bookings multiplied
/// to ~8M rows before its keys and indexes are made, dumped in custom
/// format (~50 MB).
async fn grown_clubdata(
    settings: &pglab::settings::Settings,
    admin: &tokio_postgres::Client,
    dir: &Path,
) -> PathBuf {
    common::clubdata_db(settings, admin, dir, "club_src", 1950).await;
    let dump = dir.join("club.dump");
    pg_tool(settings, "pg_dump", &["-Fc", "-f", path(&dump), "club_src"]).await;
    admin
        .batch_execute("DROP DATABASE club_src")
        .await
        .expect("drop club");
    dump
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    // pglab's own log (e.g. the restore phases) when PGLAB_LOG is set.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PGLAB_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let bench = common::Bench::start().await;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    let dir = bench.dir.path().to_path_buf();
    std::fs::write(dir.join("ref.sql"), "CREATE TABLE t (id int);").expect("ref");
    std::fs::write(dir.join("lab.yaml"), lab_yaml()).expect("lab");
    let lab = LoadedLab::load(&dir.join("lab.yaml")).expect("lab");
    let people =
        Participants::parse("p.csv", &common::participants_csv("u", PARTICIPANTS)).expect("csv");
    let plan = provision::plan(&settings, &store, lab, people, false)
        .await
        .expect("plan");
    provision::apply(&settings, &store, &plan, |_, _| {})
        .await
        .expect("apply");
    let mut creds = vec![];
    for i in 0..PARTICIPANTS {
        let u = format!("u{i}");
        let p = store
            .initial_password(&pglab::ident::Username::parse(&u).expect("username"))
            .await
            .expect("store")
            .expect("password");
        creds.push((u, p));
    }
    let creds = Arc::new(creds);

    // Source databases: a small one, and one whose custom dump is ~50 MB.
    let admin = pglab::pgconn::connect(&settings.postgres[0], "postgres")
        .await
        .expect("admin");
    for db in ["small_src", "big_src"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("source");
    }
    let small = pglab::pgconn::connect(&settings.postgres[0], "small_src")
        .await
        .expect("small");
    small
        .batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 200) g;")
        .await
        .expect("small data");
    let big = pglab::pgconn::connect(&settings.postgres[0], "big_src")
        .await
        .expect("big");
    big.batch_execute(
        "CREATE TABLE events (id int PRIMARY KEY, a text, b text, at timestamptz);
         INSERT INTO events SELECT g, md5(g::text) || md5((g * 7)::text), md5((g * 13)::text), now() - g * interval '1 minute'
           FROM generate_series(1, 800000) g;
         CREATE INDEX ON events (at);",
    )
    .await
    .expect("big data");
    let small_dump = dir.join("small.dump");
    let big_dump = dir.join("big.dump");
    pg_tool(
        &settings,
        "pg_dump",
        &["-Fc", "-f", path(&small_dump), "small_src"],
    )
    .await;
    pg_tool(
        &settings,
        "pg_dump",
        &["-Fc", "-f", path(&big_dump), "big_src"],
    )
    .await;
    let small_bytes = Arc::new(std::fs::read(&small_dump).expect("small"));
    let big_bytes = std::fs::read(&big_dump).expect("big");
    println!(
        "{PARTICIPANTS} participants; small dump {} bytes, big dump {:.1} MB",
        small_bytes.len(),
        big_bytes.len() as f64 / 1e6
    );

    // pglab serving, with its restore workers.
    let served = common::Served::start(&settings).await;
    let base = format!("http://{}", settings.listen);
    let http = reqwest::Client::new();

    let bare_dir = dir.join("bare");
    std::fs::create_dir_all(&bare_dir).expect("bare dir");
    let bare = Arc::new(bare_server(bare_dir.clone()).await);

    // 1. Acceptance (skipped with 0 uploads).
    if total > 0 {
        let url = Arc::new(format!("{base}/api/labs/sub/submissions"));
        let _ = upload_all(
            &http,
            Arc::clone(&bare),
            Arc::clone(&creds),
            Arc::clone(&small_bytes),
            50,
            false,
        )
        .await;
        let (bare_s, bare_n) = upload_all(
            &http,
            Arc::clone(&bare),
            Arc::clone(&creds),
            Arc::clone(&small_bytes),
            total,
            false,
        )
        .await;
        let (ours_s, ours_n) = upload_all(
            &http,
            url,
            Arc::clone(&creds),
            Arc::clone(&small_bytes),
            total,
            true,
        )
        .await;
        let queued = store
            .lab_submissions(&pglab::ident::LabId::parse("sub").expect("id"))
            .await
            .expect("jobs");
        let done = queued
            .iter()
            .filter(|s| s.status == pglab::control::JobStatus::Succeeded)
            .count();
        println!();
        println!("upload acceptance, {total} uploads, {CONCURRENCY} at a time:");
        println!(
            "  baseline (stream to disk only): {:>7.0} uploads/s ({bare_n} ok in {bare_s:.2} s)",
            bare_n as f64 / bare_s
        );
        println!("  pglab (auth, limit, preflight, job): {:>7.0} uploads/s ({ours_n} ok in {ours_s:.2} s) = {:.2}x the baseline's time per upload; target >= 100/s",
        ours_n as f64 / ours_s, ours_s / bare_s);
        println!(
            "  restores meanwhile: {done} of {} done, the rest queued",
            queued.len()
        );

        // Let the queue drain before timing restores.
        let t = Instant::now();
        loop {
            let jobs = store
                .lab_submissions(&pglab::ident::LabId::parse("sub").expect("id"))
                .await
                .expect("jobs");
            if jobs.iter().all(|s| s.status.ended()) {
                println!("  queue drained in {:.1} s more", t.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // 2. Restore overhead, for two dumps of about 50 MB: one whose restore
    // is quick for its size (one table of text, two indexes), where pglab's
    // fixed costs weigh most, and clubdata grown to ~8M bookings (three
    // tables, keys, five indexes).
    admin
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}' IN ROLE u0, {}",
            GROUP_LOGIN.0,
            GROUP_LOGIN.1,
            pglab::provision::postgres::RESTORERS_ROLE
        ))
        .await
        .expect("group login");
    let side = Sides {
        settings: &settings,
        admin: &admin,
        http: &http,
        store: &store,
        url: format!("{base}/api/labs/sub/submissions"),
        login: creds[0].clone(),
        bare: &bare,
        bare_dir: &bare_dir,
    };
    let text = side
        .compare("one table of text", &big_dump, ROUNDS, true)
        .await;
    let club_dump = grown_clubdata(&settings, &admin, &dir).await;
    let club = side
        .compare("clubdata grown", &club_dump, CLUB_ROUNDS, false)
        .await;
    println!();
    for r in [text, club] {
        r.print();
    }

    served.stop().await;
    bench.stop().await;
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
