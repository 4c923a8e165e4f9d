//! Class data exports on real services: scripted students, a hand-in, the
//! history and a passed deadline; the archive unzipped (by Python's
//! zipfile) and checked against the control database and the scores; the
//! same data gives the same bytes; downloads for lab masters only (404 for
//! everybody else), with ranges; an export whose process died is cleaned
//! up and done again; the optional dumps match the estimate.

use crate::browser::Http;
use crate::support::{shop_lab, TestEnv};
use chrono::Utc;
use pglab::app::exports::start_export;
use pglab::control::Store;
use pglab::export::ExportOptions;
use pglab::ident::LabId;
use std::path::Path;
use std::time::Duration;

const PEOPLE: &str = "username,name,email\nann,Ann,ann@example.org\nbob,\"=HYPERLINK(\"\"x\"\")\",bob@example.org\ncid,Cid,cid@example.org\n";

async fn ready(store: &Store, id: i64) -> pglab::control::ExportRecord {
    for _ in 0..600 {
        let e = store.export(id).await.unwrap().unwrap();
        if e.status.ended() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("export {id} did not end within a minute");
}

/// Unzips with Python's zipfile (testing the archive on the way) into
/// `dir`; returns the names in the archive.
fn unzip(zip: &Path, dir: &Path) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nz.extractall(sys.argv[2])\nprint('\\n'.join(z.namelist()))",
        ])
        .arg(zip)
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Rows of a CSV file read by Python's csv module, as JSON.
fn python_csv(file: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, csv, json\nwith open(sys.argv[1], newline='', encoding='utf-8-sig') as f:\n    print(json.dumps(list(csv.DictReader(f))))",
        ])
        .arg(file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn sha(path: &Path) -> String {
    pglab::evidence::snapshot::checksum(path).expect("read").1
}

#[tokio::test]
async fn a_lab_exports_to_a_zip_that_matches_its_records() {
    let mut env = TestEnv::start(1).await;
    env.stack.settings.scoring.interval_secs = 1;
    let store = env.store.clone();
    let deadline = Utc::now() + chrono::Duration::seconds(25);
    let lab = shop_lab(&env, "exp");
    let text = std::fs::read_to_string(&lab).unwrap().replacen(
        "title:",
        &format!("deadline: {}\ntitle:", deadline.to_rfc3339()),
        1,
    );
    let text = text.replace(
        "  late: accept-flagged\n",
        "  late: accept-flagged\n  keep_uploads: true\n",
    );
    std::fs::write(&lab, text).unwrap();
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let id = LabId::parse("exp").unwrap();

    // Ann works and hands in a dump of her database; Bob breaks a task.
    let pw = env.password("ann").await;
    let ann = env.connect_as(0, "ann", &pw, "exp_ann").await.expect("ann");
    ann.batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .unwrap();
    let dump = env.dir.path().join("ann.dump");
    let s = &env.settings().postgres[0];
    let ok = tokio::process::Command::new("pg_dump")
        .env("PGHOST", &s.host)
        .env("PGPORT", s.port.to_string())
        .env("PGUSER", &s.admin_user)
        .env("PGPASSWORD", s.admin_password.expose())
        .args(["-Fc", "--exclude-schema=pglab", "-f"])
        .arg(&dump)
        .arg("exp_ann")
        .status()
        .await
        .unwrap();
    assert!(ok.success());
    drop(ann);
    let (status, body) =
        crate::submissions::upload(&base, "exp", "ann", &pw, std::fs::read(&dump).unwrap()).await;
    assert_eq!(status, 202, "{body}");
    let hand_in = body["id"].as_i64().expect("id");
    crate::submissions::finished(&base, hand_in, "ann", &pw).await;

    // The deadline passes; the running pglab takes the final states.
    while store.final_states(&id).await.unwrap().len() < 3 {
        assert!(
            Utc::now() < deadline + chrono::Duration::seconds(180),
            "no final states"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut scorer = env.scorer();
    scorer.round().await;
    let board = scorer.board.get();
    let lab_board = board
        .labs
        .iter()
        .find(|l| l.id == "exp")
        .expect("scored")
        .clone();

    // A lab master's export.
    let queue = pglab::app::Queue::default();
    let first = start_export(
        env.settings(),
        &store,
        &queue,
        &id,
        ExportOptions::default(),
        "ada",
    )
    .await
    .expect("start");
    let first = ready(&store, first.id).await;
    assert!(first.ready(), "{first:?}");
    let file = pglab::app::exports::export_file(env.settings(), &first).expect("archive");
    let dir = env.dir.path().join("unzipped");
    let names = unzip(&file, &dir);
    for want in [
        "README.txt",
        "lab/lab.yaml",
        "lab/files/reference.sql",
        "participants.csv",
        "participants.json",
        "scores.csv",
        "task_results.csv",
        "task_results.json",
        "history.csv",
        "submissions.csv",
        "jobs.csv",
        "grades.csv",
        "final_states.csv",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("dumps/")),
        "dumps are optional"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in name order");

    // The numbers are the scores' and the control database's.
    let grades = python_csv(&dir.join("grades.csv"));
    assert_eq!(grades.len(), 3, "one row per participant: {grades:?}");
    let scores = python_csv(&dir.join("scores.csv"));
    // `pglab score --json` gives the same points.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("--config")
        .arg(env.settings().data_dir.join("pglab.yaml"))
        .args(["score", "exp", "--json"])
        .output()
        .expect("pglab score");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score json");
    for p in cli["participants"].as_array().expect("participants") {
        let points: i64 = p["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["points"].as_i64().unwrap_or(0))
            .sum();
        let row = scores
            .iter()
            .find(|r| r["username"] == p["username"])
            .expect("row");
        assert_eq!(row["points"], points.to_string(), "pglab score: {row}");
    }
    for p in &lab_board.participants {
        let row = scores
            .iter()
            .find(|r| r["username"] == p.username.as_str())
            .expect("row");
        assert_eq!(row["points"], p.points().to_string(), "{row}");
        assert_eq!(row["max_points"], lab_board.max_points().to_string());
        let fin = store
            .final_state(&id, &format!("exp_{}", p.username))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["final_points"], fin.points.to_string());
        let grade = grades
            .iter()
            .find(|r| r["username"] == p.username.as_str())
            .unwrap();
        assert_eq!(
            grade["points"],
            fin.points.to_string(),
            "grades are the final score"
        );
    }
    let bob = scores.iter().find(|r| r["username"] == "bob").unwrap();
    assert!(
        bob["name"].as_str().unwrap().starts_with("'="),
        "a formula is neutralized: {bob}"
    );
    let history = python_csv(&dir.join("history.csv"));
    assert_eq!(
        history.len(),
        store.lab_task_history(&id).await.unwrap().len()
    );
    let handins = python_csv(&dir.join("submissions.csv"));
    assert_eq!(handins.len(), 1);
    assert_eq!(handins[0]["uploaded_by"], "ann");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("task_results.json")).unwrap()).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 3 * 4);
    assert!(results[0]["passed"].is_boolean(), "JSON keeps types");
    let participants = std::fs::read_to_string(dir.join("participants.csv")).unwrap();
    assert!(participants.contains("\r\n") && !participants.contains("password"));

    // The same data gives the same bytes.
    let second = start_export(
        env.settings(),
        &store,
        &queue,
        &id,
        ExportOptions::default(),
        "ada",
    )
    .await
    .unwrap();
    let second = ready(&store, second.id).await;
    let second_file = pglab::app::exports::export_file(env.settings(), &second).unwrap();
    assert_eq!(sha(&file), sha(&second_file));

    downloads(&env, &base, &first, &file).await;
    api_export(&env, &base).await;
    crashed_export_is_done_again(&env, &store, &id).await;

    // With the dumps: they are in it, and its size is what was expected.
    let with = ExportOptions {
        dumps: true,
        ..Default::default()
    };
    let third = start_export(env.settings(), &store, &queue, &id, with, "ada")
        .await
        .unwrap();
    let third = ready(&store, third.id).await;
    let size = third.size.unwrap() as f64;
    let estimate = third.estimate as f64;
    assert!(
        (size - estimate).abs() <= size * 0.10,
        "size {size} estimate {estimate}"
    );
    let names = unzip(
        &pglab::app::exports::export_file(env.settings(), &third).unwrap(),
        &env.dir.path().join("third"),
    );
    assert!(
        names
            .iter()
            .any(|n| n == &format!("dumps/exp_ann/{hand_in}.dump")),
        "{names:?}"
    );

    student_data(&env, &base).await;
    expired(&env, &store, &base, &first, &file).await;
    killed_cli_export(&env, &store, &id, hand_in).await;
    server.stop().await;
    env.stop().await;
}

/// The JSON API starts an export, follows it and downloads it, with its
/// token only.
async fn api_export(env: &TestEnv, base: &str) {
    let token = env.settings().api_token.expose().to_string();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/labs/exp/exports"))
        .json(&serde_json::json!({ "with": "logs" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token");
    let r = client
        .post(format!("{base}/api/labs/exp/exports"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "with": "everything" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "unknown option");
    let r = client
        .post(format!("{base}/api/labs/exp/exports"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "with": "logs" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let started: serde_json::Value = r.json().await.unwrap();
    let status_url = format!("{base}{}", started["status_url"].as_str().unwrap());
    let mut status = serde_json::Value::Null;
    for _ in 0..300 {
        status = client
            .get(&status_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "ready" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "ready", "{status}");
    let url = format!("{base}{}", status["download_url"].as_str().unwrap());
    assert_eq!(
        client.get(&url).send().await.unwrap().status().as_u16(),
        401
    );
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, status["size"].as_i64().unwrap());
    assert_eq!(&bytes[..2], b"PK");
}

/// A student downloads their own data (and nobody else's).
async fn student_data(env: &TestEnv, base: &str) {
    let mut ann = Http::new(base);
    ann.login("ann", &env.password("ann").await).await;
    let r = ann
        .client
        .get(format!("{base}/me/labs/exp/my-data.json"))
        .header(reqwest::header::COOKIE, ann.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let data: serde_json::Value = r.json().await.unwrap();
    assert_eq!(data["username"], "ann");
    assert_eq!(data["tasks"].as_array().unwrap().len(), 4);
    assert_eq!(data["hand_ins"].as_array().unwrap().len(), 1);
    assert!(data["final_state"]["points"].is_number(), "{data}");
    assert!(!data.to_string().contains("bob@example.org"));
    assert_eq!(ann.get("/me/labs/demo/my-data.json").await.0, 404);
}

/// An export past its time is deleted: its file goes, the page says
/// expired, the download is 404.
async fn expired(
    env: &TestEnv,
    store: &Store,
    base: &str,
    e: &pglab::control::ExportRecord,
    file: &Path,
) {
    store
        .client()
        .await
        .unwrap()
        .execute(
            "UPDATE exports SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&e.id],
        )
        .await
        .unwrap();
    assert!(
        pglab::app::exports::expire(env.settings(), store)
            .await
            .unwrap()
            >= 1
    );
    assert!(!file.exists());
    let mut master = Http::new(base);
    master.login("ada", "ada-master-pw-1").await;
    let path = format!("/labs/exp/exports/{}/download", e.id);
    assert_eq!(master.get(&path).await.0, 404);
    let (_, page) = master.get("/labs/exp/exports").await;
    assert!(page.contains("expired"), "{page}");
}

/// `pglab export` killed (SIGKILL) while it packs a big archive: the
/// running pglab's sweeper removes what it left and does it again.
async fn killed_cli_export(env: &TestEnv, store: &Store, id: &LabId, hand_in: i64) {
    let sub = store.submission(hand_in).await.unwrap().unwrap();
    let big = std::fs::File::create(&sub.file).unwrap();
    big.set_len(400 << 20).unwrap(); // the kept upload grows to 400 MB
    drop(big);
    let folder = env.settings().data_dir.join("exports/exp");
    let config = env.settings().data_dir.join("pglab.yaml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("--config")
        .arg(&config)
        .args(["export", "exp", "--with", "dumps"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pglab export");
    let partial = || {
        std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.file_name().to_string_lossy().ends_with(".partial"))
    };
    let started = std::time::Instant::now();
    while !partial() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no partial archive"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert!(partial(), "killed mid-way, a partial archive is left");
    let killed = store
        .lab_exports(id)
        .await
        .unwrap()
        .first()
        .unwrap()
        .clone();
    let job = store.job(killed.job).await.unwrap().unwrap();
    assert!(
        job.status == pglab::control::JobStatus::Running && job.started_by.starts_with("cli:"),
        "{job:?}"
    );
    let killed_at = std::time::Instant::now();
    let done = ready(store, killed.id).await;
    eprintln!(
        "the killed export was done again {:.1} s later",
        killed_at.elapsed().as_secs_f64()
    );
    assert!(done.ready(), "done again after the crash: {done:?}");
    assert!(!partial(), "nothing half-written is left");
    let work = env.settings().data_dir.join("exports/.work");
    assert!(!work.join(killed.job.to_string()).exists());
    let job = store.job(killed.job).await.unwrap().unwrap();
    assert_eq!(job.attempts, 2, "{job:?}");
    let _ = std::fs::remove_file(pglab::app::exports::export_file(env.settings(), &done).unwrap());
}

/// Lab masters download (ranges too); staff, a student and nobody get 404.
async fn downloads(env: &TestEnv, base: &str, export: &pglab::control::ExportRecord, file: &Path) {
    crate::web::add_person(env, "ada", "ada-master-pw-1", Some("labmasters")).await;
    crate::web::add_person(env, "ta", "ta-staff-pw-12", Some("labstaff")).await;
    let path = format!("/labs/exp/exports/{}/download", export.id);
    let mut anonymous = Http::new(base);
    assert_eq!(anonymous.get(&path).await.0, 404);
    let mut staff = Http::new(base);
    staff.login("ta", "ta-staff-pw-12").await;
    assert_eq!(staff.get(&path).await.0, 404);
    let mut student = Http::new(base);
    student.login("ann", &env.password("ann").await).await;
    assert_eq!(student.get(&path).await.0, 404);
    let mut master = Http::new(base);
    master.login("ada", "ada-master-pw-1").await;
    assert_eq!(master.get("/labs/exp/exports/999999/download").await.0, 404);
    let r = master
        .client
        .get(format!("{base}{path}"))
        .header(reqwest::header::COOKIE, master.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&export.name));
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        std::fs::read(file).unwrap()
    );
    let r = master
        .client
        .get(format!("{base}{path}"))
        .header(reqwest::header::COOKIE, master.cookie_header())
        .header(reqwest::header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &std::fs::read(file).unwrap()[10..20]
    );
    let (status, page) = master.get("/labs/exp/exports").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&export.name) && page.contains("ready"),
        "{page}"
    );
}

/// An export whose process died mid-way (its worker gone, a half-written
/// archive and folder left): the sweeper removes what it left and it is
/// done again.
async fn crashed_export_is_done_again(env: &TestEnv, store: &Store, id: &LabId) {
    let queue = pglab::app::Queue::default();
    let e = start_export(
        env.settings(),
        store,
        &queue,
        id,
        ExportOptions::default(),
        "ada",
    )
    .await
    .unwrap();
    let dead = "dead-worker";
    // The job as a killed process leaves it: claimed, never heard of again.
    let job = loop {
        if let Some(j) = store.claim_job_id(e.job, dead).await.unwrap() {
            break j;
        }
        let j = store.job(e.job).await.unwrap().unwrap();
        assert!(!j.status.ended(), "the server's worker ran it first: {j:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let data = &env.settings().data_dir;
    let work = data.join("exports/.work").join(job.id.to_string());
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("scores.csv"), "half").unwrap();
    let partial = data
        .join("exports/exp")
        .join(format!("{}-x.zip.partial", job.id));
    std::fs::write(&partial, "PK half").unwrap();
    store
        .client()
        .await
        .unwrap()
        .execute(
            "UPDATE jobs SET heartbeat_at = now() - interval '1 minute' WHERE id = $1",
            &[&job.id],
        )
        .await
        .unwrap();
    pglab::app::jobs::sweep(env.settings(), store, "test-sweeper")
        .await
        .unwrap();
    assert!(!work.exists() && !partial.exists(), "what it left is gone");
    let done = ready(store, e.id).await;
    assert!(done.ready(), "done again: {done:?}");
    let leftovers: Vec<_> = std::fs::read_dir(data.join("exports/exp"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
    assert!(!data.join("exports/.work").join(job.id.to_string()).exists());
}
