//! Mail benchmark (issue 18): 1,000 credential messages queued by
//! `app::mail::mail_credentials` and sent by the mail job
//! (`app::mail::run_mail_job`: each rendered from its templates with the
//! participant's password, paced, recorded as sending and as sent) to a
//! local SMTP sink (aiosmtpd, `tests/mail/sink.py`), against a bare Python
//! `smtplib` loop sending 1,000 messages of the same shape to the same
//! sink, in the same run. The class is written straight into the control
//! database (no LDAP accounts or databases are needed to mail).
//!
//! Run: cargo bench --bench mail [-- COUNT]   (scripts/test.sh installs aiosmtpd)

mod common;

use pglab::lab::LoadedLab;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut bench = common::Bench::start().await;
    let python = Path::new(MANIFEST).join("target/pytools/bin/python");
    let port = pglab::stack::process::free_port();
    let out = bench.dir.path().join("sink.jsonl");
    let mut sink = Command::new(&python)
        .arg(Path::new(MANIFEST).join("tests/mail/sink.py"))
        .args(["--port", &port.to_string()])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("aiosmtpd (scripts/test.sh installs it)");
    let mut line = String::new();
    std::io::BufReader::new(sink.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let m = &mut bench.stack.settings.mail;
    m.host = "127.0.0.1".into();
    m.port = port;
    m.security = pglab::settings::MailSecurity::None;
    m.from = "pglab <pglab@example.org>".into();
    m.per_second = 100_000.0;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();

    // The class: a lab, n participants with databases and kept passwords.
    let dir = bench.dir.path().join("mb");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ref.sql"), "SELECT 1;\n").unwrap();
    std::fs::write(
        dir.join("lab.yaml"),
        "id: mb\ntitle: Mail bench\nreference: {sql: ref.sql}\ntasks:\n  - id: t\n    title: T\n    checks:\n      - sql: SELECT true\n",
    )
    .unwrap();
    let loaded = LoadedLab::load(&dir.join("lab.yaml")).expect("lab");
    store
        .upsert_lab(&loaded, &loaded.lab.read_sources().expect("sources"))
        .await
        .expect("lab");
    let client = store.client().await.unwrap();
    for sql in [
        "INSERT INTO participants (lab_id, username, name, email, database)
         SELECT 'mb', 's' || i, 'Student ' || i, 's' || i || '@example.org', 'mb_s' || i
         FROM generate_series(0, $1 - 1) i",
        "INSERT INTO lab_databases (lab_id, name, owner, server)
         SELECT 'mb', 'mb_s' || i, 's' || i, 'main' FROM generate_series(0, $1 - 1) i",
        "INSERT INTO credentials (username, initial_password)
         SELECT 's' || i, 'abcd-efgh-ijkl-' || lpad(i::text, 4, '0') FROM generate_series(0, $1 - 1) i",
    ] {
        client.execute(sql, &[&(n as i32)]).await.expect("class");
    }
    drop(client);

    // pglab: queued, then the job sends them all.
    let lab = pglab::ident::LabId::parse("mb").unwrap();
    let queue = pglab::app::Queue::default();
    let started = Instant::now();
    let (job, plan) = pglab::app::mail::mail_credentials(
        &settings,
        &store,
        &queue,
        &lab,
        &[],
        "http://127.0.0.1:8080/login",
        "bench",
    )
    .await
    .expect("queued");
    let queued = started.elapsed().as_secs_f64();
    let job = store
        .claim_job_id(job.expect("a job"), "bench")
        .await
        .expect("claim")
        .expect("claimed");
    let claim = pglab::control::Claim {
        job: job.id,
        worker: "bench",
    };
    pglab::app::mail::run_mail_job(&settings, &store, &job, claim).await;
    let pglab_secs = started.elapsed().as_secs_f64();
    let counts = store.mail_counts(job.id).await.expect("counts");
    let received = std::fs::read_to_string(&out).unwrap().lines().count();

    // The baseline: smtplib, the same number of messages, same sink.
    let base = Command::new(&python)
        .arg(Path::new(MANIFEST).join("benches/mail_baseline.py"))
        .args([port.to_string(), n.to_string()])
        .output()
        .expect("baseline");
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    let base_secs: f64 = String::from_utf8_lossy(&base.stdout)
        .trim()
        .parse()
        .unwrap();
    let after = std::fs::read_to_string(&out).unwrap().lines().count();

    println!("mail benchmark: {n} credential messages to a local aiosmtpd sink");
    println!(
        "{:<44} {:>9} {:>10} {:>9}",
        "sender", "total s", "msgs/s", "received"
    );
    println!(
        "{:<44} {:>9.2} {:>10.0} {:>9}",
        "pglab (queue + job: render, record, send)",
        pglab_secs,
        n as f64 / pglab_secs,
        received
    );
    println!(
        "{:<44} {:>9.2} {:>10.0} {:>9}",
        "python smtplib loop (baseline)",
        base_secs,
        n as f64 / base_secs,
        after - received
    );
    println!(
        "queued {} messages in {queued:.2} s; statuses {counts:?}",
        plan.recipients.len()
    );
    let _ = sink.kill();
    let _ = sink.wait();
    bench.stop().await;
}
