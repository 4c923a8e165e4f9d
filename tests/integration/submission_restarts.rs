//! Jobs cut off by pglab's end: a restore killed (SIGKILL) or stopped
//! (SIGTERM), an apply started from the web page and killed, a separate
//! `pglab serve` process each time; the job is retried at the next start,
//! its page is served by whichever process is asked, and nothing is left
//! behind.

use crate::browser::Http;
use crate::submissions::{count, doctored_plain, finished, no_leftovers, setup, source_db, upload};
use crate::support::TestEnv;
use std::time::Duration;

/// Uploads alice's dump that sleeps 6 s (lab `crash`) and waits until its
/// restore is running (the scratch database exists); the job's id.
async fn slow_restore_running(env: &TestEnv, base: &str, alice: &str, name: &str) -> i64 {
    let slow = doctored_plain(env, name, "SELECT pg_sleep(6);").await;
    let (status, body) = upload(base, "crash", "alice", alice, slow).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().expect("id");
    let scratch = format!("pglab.restore.{id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !env.database_exists(0, &scratch).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restore did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_interrupted_by_a_crash_or_a_stop_is_retried_and_leaves_nothing_behind() {
    let (env, _) = setup("crash", "  max_size: 20MB").await;
    source_db(&env).await;
    let config = env.settings().data_dir.join("pglab.yaml");
    let serve = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pglab serve")
    };
    let base = format!("http://{}", env.settings().listen);
    let healthy = || async {
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("pglab serve did not get healthy");
    };
    let mut first = serve();
    healthy().await;
    let alice = env.password("alice").await;
    let id = slow_restore_running(&env, &base, &alice, "slow").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().await.expect("SIGKILL");
    let _ = first.wait().await;
    // The group's database is as before: nothing of the dump in it.
    let untouched: bool = env
        .admin(0, "crash.g1")
        .await
        .query_one("SELECT to_regclass('cd.bookings') IS NULL", &[])
        .await
        .expect("q")
        .get(0);
    assert!(untouched, "half a restore reached the group's database");

    let mut second = serve();
    healthy().await;
    let job = finished(&base, id, "alice", &alice).await;
    assert!(job["attempts"].as_i64() == Some(2), "{job}");
    assert!(
        job["status"] == "succeeded" && job["note"].as_str().unwrap_or("").contains("restored")
            || job["status"] == "failed",
        "{job}"
    );
    if job["status"] == "succeeded" {
        assert!(count(&env, "crash.g1", "SELECT count(*) FROM cd.bookings").await > 4000);
    }
    no_leftovers(&env).await;

    // Stopped the ordinary way (SIGTERM) during a restore: pglab ends
    // promptly, the restore goes the way of a crash.
    let id = slow_restore_running(&env, &base, &alice, "slow2").await;
    let objects = "SELECT count(*) FROM pg_class";
    let before = count(&env, "crash.g1", objects).await;
    let pid = nix::unistd::Pid::from_raw(second.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let exited = tokio::time::timeout(Duration::from_secs(10), second.wait())
        .await
        .expect("pglab serve stops within 10 s of SIGTERM during a restore")
        .expect("exit status");
    assert!(exited.success(), "{exited:?}");
    assert_eq!(count(&env, "crash.g1", objects).await, before);
    let mut third = serve();
    healthy().await;
    let job = finished(&base, id, "alice", &alice).await;
    assert_eq!(job["attempts"].as_i64(), Some(2), "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    no_leftovers(&env).await;

    // An apply started from the web page is a job of the same queue.
    let mut http = Http::new(&base);
    let admin_pw = env.settings().web.admin_password.expose().to_string();
    http.login("admin", &admin_pw).await;
    let csrf = http.csrf("/labs/crash/participants").await;
    let mut csv = crate::submissions::PEOPLE.to_string();
    for i in 0..40 {
        csv.push_str(&format!("late{i},Late {i},late{i}@example.org,x{i}\n"));
    }
    let (status, location) = http
        .post(
            "/labs/crash/participants/apply",
            &[("csrf", &csrf), ("csv", &csv)],
        )
        .await;
    assert_eq!(status, 303, "{location}");
    let status_url = format!("{location}/status");
    // Killed while it runs (some changes made, not all).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = job_status(&mut http, &status_url).await;
        if job["state"] == "running" && job["done"].as_i64() > Some(2) {
            break;
        }
        assert!(
            job["state"] == "queued" || job["state"] == "running",
            "{job}"
        );
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    third.kill().await.expect("SIGKILL");
    let _ = third.wait().await;
    // Another process serves the same page (the session and the job are
    // in the control database) and finishes the job.
    let mut fourth = serve();
    healthy().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let job = loop {
        let job = job_status(&mut http, &status_url).await;
        if job["state"] != "queued" && job["state"] != "running" {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let log = job["log"].to_string();
    assert!(log.contains("interrupted"), "{log}");
    let lab = pglab::ident::LabId::parse("crash").expect("id");
    let people = env.store.participants(&lab).await.expect("participants");
    assert_eq!(people.len(), 43);
    let (_, page) = http.get(&location).await;
    assert!(
        page.contains("succeeded") && page.contains("attempt 2"),
        "{page}"
    );
    fourth.kill().await.expect("stop");
    env.stop().await;
}

async fn job_status(http: &mut Http, url: &str) -> serde_json::Value {
    let (code, body) = http.get(url).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("job JSON")
}
