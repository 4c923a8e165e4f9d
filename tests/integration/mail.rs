//! Mail through a real SMTP server on loopback (aiosmtpd, `tests/mail/
//! sink.py`): credentials one message per participant with their own
//! password (which logs into psql), mailed once until a reset, a server
//! that answers 451 twice (delivered once, 3 attempts) and one that answers
//! 550 (failed, the answer recorded), the dry run, the pages and the log,
//! and `pglab serve` killed in the middle of a batch: after the restart the
//! rest is sent and nobody gets a message twice.

use crate::support::{shop_lab, TestEnv};
use pglab::control::{MailStatus, TokenScope};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// The SMTP server of a test, recording what it accepts.
struct Sink {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Sink {
    fn start(env: &TestEnv, name: &str, delay: f64) -> Sink {
        Self::start_with(env, name, delay, &[])
    }

    fn start_with(env: &TestEnv, name: &str, delay: f64, flags: &[&str]) -> Sink {
        let port = pglab::stack::process::free_port();
        let out = env.dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&out, "").unwrap();
        let mut child = Command::new(Path::new(MANIFEST).join("target/pytools/bin/python"))
            .arg(Path::new(MANIFEST).join("tests/mail/sink.py"))
            .args(["--port", &port.to_string(), "--delay", &delay.to_string()])
            .args(flags)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("aiosmtpd (scripts/test.sh installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
        Sink { child, out, port }
    }

    /// What it accepted: (recipient, whole message).
    fn messages(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["to"][0].as_str().unwrap().to_string(),
                    v["data"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn to(&self, address: &str) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|(to, _)| to == address)
            .map(|(_, m)| m)
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's config points at `sink`; written for the CLI and `pglab serve`.
fn use_sink(env: &mut TestEnv, sink: &Sink) -> PathBuf {
    let m = &mut env.stack.settings.mail;
    m.host = "127.0.0.1".into();
    m.port = sink.port;
    m.security = pglab::settings::MailSecurity::None;
    m.from = "pglab <pglab@example.org>".into();
    m.reply_to = Some("Lab Master <ada@example.org>".into());
    m.per_second = 200.0;
    m.retry_secs = 0.2;
    m.attempts = 4;
    let config = env.settings().data_dir.join("pglab.yaml");
    std::fs::write(&config, env.settings().to_yaml()).unwrap();
    config
}

fn pglab(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("pglab");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pglab {args:?}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Waits until the newest mail job ended; its id. Up to three minutes: a
/// job put back after an error of the control database (under the load of
/// the whole suite) waits a minute before it runs again.
async fn mail_done(env: &TestEnv, lab: &str) -> i64 {
    let id = pglab::ident::LabId::parse(lab).unwrap();
    for _ in 0..1800 {
        let mails = env.store.lab_mail(&id, 1000).await.unwrap();
        if let Some(newest) = mails.first() {
            let job = env.store.job(newest.job).await.unwrap().unwrap();
            if job.status.ended() {
                let log = env.store.job_log(job.id).await.unwrap_or_default();
                eprintln!(
                    "mail job {}: {} {:?} {:?}\n  {}",
                    job.id,
                    job.status,
                    job.summary,
                    job.error,
                    log.join("\n  ")
                );
                return job.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = env.store.lab_mail(&id, 1000).await.unwrap();
    let log = match mails.first() {
        Some(m) => env.store.job_log(m.job).await.unwrap().join("\n"),
        None => "no message was queued".into(),
    };
    panic!("the mail job did not end; its log:\n{log}");
}

const PEOPLE: &str = "username,name,email\n\
    ann,Ann Lee,ann@example.org\n\
    bob,Bob Ray,bob@example.org\n\
    cid,Cid <b>Bold</b>,cid@example.org\n\
    tim,Tim Later,temp-tim@example.org\n\
    ron,Ron Gone,bounce-ron@example.org\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_by_mail_once_each_with_retries_failures_and_a_crash() {
    let mut env = TestEnv::start(1).await;
    let lab = shop_lab(&env, "post");
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    let sink = Sink::start(&env, "sink", 0.0);
    let config = use_sink(&mut env, &sink);
    assert!(
        pglab(&config, &["config", "check"]).contains("mail 127.0.0.1"),
        "config check tries the server"
    );

    // A dry run names everyone and shows a message; nothing is sent.
    let dry = pglab(&config, &["mail", "credentials", "post", "--dry-run"]);
    for u in ["ann", "bob", "cid", "tim", "ron"] {
        assert!(dry.contains(&format!("would mail {u}")), "{dry}");
    }
    assert!(
        dry.contains("initial password:") && dry.contains("nothing was sent"),
        "{dry}"
    );
    assert!(sink.messages().is_empty());

    // Sent by the running pglab's workers, one message each.
    let server = env.serve().await;
    let queued = pglab(&config, &["mail", "credentials", "post"]);
    assert!(queued.contains("queued as job"), "{queued}");
    let job = mail_done(&env, "post").await;
    for (user, address) in [
        ("ann", "ann@example.org"),
        ("bob", "bob@example.org"),
        ("cid", "cid@example.org"),
    ] {
        let got = sink.to(address);
        assert_eq!(got.len(), 1, "{user}: one message");
        let pw = env.password(user).await;
        assert!(got[0].contains(&pw), "{user}'s own password");
        assert!(
            got[0].contains(&format!("-U {user} -d post_{user}")),
            "{user}'s psql command"
        );
        assert!(
            got[0]
                .lines()
                .any(|l| l.starts_with("Reply-To:") && l.contains("<ada@example.org>")),
            "{}",
            got[0]
        );
        env.connect_as(0, user, &pw, &format!("post_{user}"))
            .await
            .expect("the mailed password logs into psql");
    }
    let cid = &sink.to("cid@example.org")[0];
    assert!(
        cid.contains("Cid &#60;b&#62;Bold"),
        "names escaped in the HTML part: {cid}"
    );
    // 451 twice, then taken: delivered once, after 3 attempts.
    assert_eq!(sink.to("temp-tim@example.org").len(), 1);
    // 550: failed for good, the server's answer recorded.
    assert!(sink.to("bounce-ron@example.org").is_empty());
    let id = pglab::ident::LabId::parse("post").unwrap();
    let log = env.store.lab_mail(&id, 100).await.unwrap();
    let of = |u: &str| {
        log.iter()
            .find(|m| m.username.as_deref() == Some(u))
            .unwrap()
            .clone()
    };
    assert_eq!(
        (of("tim").status, of("tim").attempts),
        (MailStatus::Sent, 3)
    );
    assert_eq!(
        (of("ron").status, of("ron").attempts),
        (MailStatus::Failed, 1)
    );
    assert!(
        of("ron").answer.unwrap_or_default().contains("550"),
        "{:?}",
        of("ron")
    );
    assert_eq!(
        (of("ann").status, of("ann").attempts),
        (MailStatus::Sent, 1)
    );
    // Tim's waits did not hold the job: it went back to the queue until
    // his next attempt, and a wait is not an attempt of the job.
    let record = env.store.job(job).await.unwrap().unwrap();
    let waits = env.store.job_log(job).await.unwrap();
    assert!(
        waits.iter().any(|l| l.starts_with("waiting until")),
        "{waits:?}"
    );
    assert_eq!(record.attempts, 1, "{waits:?}");
    // No password in the job's log, the delivery log or the CLI's log.
    let lines = env.store.job_log(job).await.unwrap().join("\n");
    let printed = pglab(&config, &["mail", "log", "post"]);
    for u in ["ann", "bob", "cid", "tim"] {
        let pw = env.password(u).await;
        assert!(
            !lines.contains(&pw) && !printed.contains(&pw),
            "no password of {u} in a log"
        );
    }
    assert!(
        printed.contains("failed") && printed.contains("550"),
        "{printed}"
    );

    // Mailed once: again, only ron, whose message failed (his password
    // never arrived, so it may be mailed again); everyone else is named
    // with the reason ...
    let again = pglab(&config, &["mail", "credentials", "post"]);
    assert!(
        again.contains("mails ron")
            && !again.contains("mails ann")
            && again.contains("already mailed"),
        "{again}"
    );
    mail_done(&env, "post").await;
    let log = env.store.lab_mail(&id, 100).await.unwrap();
    let rons: Vec<_> = log
        .iter()
        .filter(|m| m.username.as_deref() == Some("ron"))
        .collect();
    assert_eq!(rons.len(), 2, "{rons:?}");
    assert!(rons.iter().all(|m| m.status == MailStatus::Failed));
    let again = pglab(&config, &["mail", "credentials", "post", "--to", "ann"]);
    assert!(again.contains("nobody to mail"), "{again}");
    // ... until a reset gives a new password, which is mailed.
    let ann = pglab::ident::Username::parse("ann").unwrap();
    pglab::app::participants::reset_password(env.settings(), &env.store, &id, &ann)
        .await
        .unwrap();
    let resent = pglab(&config, &["mail", "credentials", "post", "--to", "ann"]);
    assert!(resent.contains("mails ann"), "{resent}");
    mail_done(&env, "post").await;
    let got = sink.to("ann@example.org");
    assert_eq!(got.len(), 2);
    assert!(
        got[1].contains(&env.password("ann").await),
        "the new password"
    );

    // The pages: the credentials page offers mail, a preview shows who and
    // the first message, the delivery log lists every message.
    web_pages(&env).await;
    reminders_and_hand_ins(&env, &sink).await;
    digest_to_staff(&env, &sink).await;
    server.stop().await;

    crash_in_the_middle(&mut env).await;
    env.stop().await;
}

/// A lab due in 50 minutes with `reminders: [1h, 24h]` and `hand_ins:
/// true`: the reminder goes once, only to the participant not finished;
/// a failed hand-in mails its errors.
async fn reminders_and_hand_ins(env: &TestEnv, sink: &Sink) {
    // Due in 3 hours first (no reminder due): fin finishes and is scored;
    // then the deadline moves to 50 minutes from now.
    let yaml = |minutes: i64| {
        let deadline = (chrono::Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339();
        format!(
            "id: soon\ntitle: Soon due\ndeadline: {deadline}\nreference: {{sql: ref.sql}}\nstarter: {{sql: start.sql}}\n\
             submissions: {{max_size: 1MB, replace: true}}\n\
             mail:\n  reminders: [1h, 30m]\n  hand_ins: true\n  language: de\n  templates:\n    reminder:\n\
             \x20     subject: \"{{lab}}: Abgabe {{left}}\"\n      text: \"Hallo {{name}}, {{points}} von {{max_points}} Punkten. Offen:\\n{{open_tasks}}\"\n\
             tasks:\n  - id: one\n    title: Insert the one\n    checks:\n      - sql: SELECT EXISTS (SELECT 1 FROM t WHERE x = 1)\n"
        )
    };
    env.write(
        "soon/ref.sql",
        "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n",
    );
    env.write("soon/start.sql", "CREATE TABLE t (x int);\n");
    let lab = env.write("soon/soon.yaml", &yaml(180));
    env.apply(
        &lab,
        "username,name,email\nfin,Fin Done,fin@example.org\nunf,Unf Open,unf@example.org\n",
        false,
    )
    .await
    .expect("apply");
    let fin = env
        .connect_as(0, "fin", &env.password("fin").await, "soon_fin")
        .await
        .unwrap();
    fin.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    let id = pglab::ident::LabId::parse("soon").unwrap();
    let mut scorer = env.scorer();
    scorer.round().await;
    let scores = env
        .store
        .task_scores_of(&id, &["soon_fin".to_string(), "soon_unf".to_string()])
        .await
        .unwrap();
    assert!(
        scores.iter().any(|s| s.database == "soon_fin" && s.passed),
        "{scores:?}"
    );
    let lab = env.write("soon/soon.yaml", &yaml(50));
    let loaded = pglab::lab::LoadedLab::load(&lab).unwrap();
    env.store
        .upsert_lab(&loaded, &loaded.lab.read_sources().unwrap())
        .await
        .unwrap();
    // Queued by the running pglab's ticker, or by this call, whichever
    // comes first: once.
    pglab::app::mail::remind(env.settings(), &env.store)
        .await
        .unwrap();
    for _ in 0..200 {
        if !sink.to("unf@example.org").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mail_done(env, "soon").await;
    let got = sink.to("unf@example.org");
    assert_eq!(got.len(), 1, "one reminder to the participant not finished");
    assert!(
        got[0].contains("0 von 1 Punkten") && got[0].contains("- Insert the one (1 points)"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("Subject: Soon due: Abgabe in 50 minutes"),
        "{}",
        got[0]
    );
    assert!(
        sink.to("fin@example.org").is_empty(),
        "finished: no reminder"
    );
    assert_eq!(
        pglab::app::mail::remind(env.settings(), &env.store)
            .await
            .unwrap(),
        0,
        "once"
    );

    // A hand-in that fails: its errors by mail.
    let base = format!("http://{}", env.settings().listen);
    let pw = env.password("unf").await;
    let dump = b"CREATE TABLE u (x int);\nINSERT INTO no_such_table VALUES (1);\n".to_vec();
    let (status, body) = crate::submissions::upload(&base, "soon", "unf", &pw, dump).await;
    assert_eq!(status, 202, "{body}");
    let hand_in = body["id"].as_i64().unwrap();
    let done = crate::submissions::finished(&base, hand_in, "unf", &pw).await;
    assert_eq!(done["status"], "failed", "{done}");
    for _ in 0..200 {
        if sink.to("unf@example.org").len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = sink.to("unf@example.org");
    assert_eq!(got.len(), 2, "the hand-in's result");
    assert!(
        got[1].contains(&format!("hand-in {hand_in} failed")) && got[1].contains("no_such_table"),
        "{}",
        got[1]
    );
}

async fn web_pages(env: &TestEnv) {
    let base = format!("http://{}", env.settings().listen);
    let mut http = crate::browser::Http::new(&base);
    let pw = env.settings().web.admin_password.expose().to_string();
    http.login("admin", &pw).await;
    let (status, page) = http.get("/labs/post/credentials").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Mail the credentials") && page.contains("Mailed"),
        "{page}"
    );
    let csrf = http.csrf("/labs/post/credentials").await;
    let (status, preview) = http
        .post(
            "/labs/post/mail/credentials",
            &[("csrf", &csrf), ("to", "ann, bob"), ("action", "preview")],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        preview.contains("already mailed") && preview.contains("Nobody to mail"),
        "{preview}"
    );
    let (status, log) = http.get("/labs/post/mail").await;
    assert_eq!(status, 200);
    for needle in ["temp-tim@example.org", "550", "sent", "failed"] {
        assert!(log.contains(needle), "{needle} on the delivery log");
    }
    let mut student = crate::browser::Http::new(&base);
    student.login("bob", &env.password("bob").await).await;
    assert_eq!(student.get("/labs/post/mail").await.0, 403);
    let _ = TokenScope::Read;
}

/// `pglab serve` killed while it mails a batch: after a restart the rest
/// is sent; nobody gets a message twice; at most the one at the server
/// when it died is uncertain.
async fn crash_in_the_middle(env: &mut TestEnv) {
    let csv: String = std::iter::once("username,name,email".to_string())
        .chain((0..12).map(|i| format!("k{i},Kim {i},k{i}@example.org")))
        .collect::<Vec<_>>()
        .join("\n");
    let lab = shop_lab(env, "bulk");
    env.apply(&lab, &csv, false).await.expect("apply");
    let slow = Sink::start(env, "slow", 0.3);
    let config = use_sink(env, &slow);
    let serve = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pglab serve")
    };
    let mut first = serve();
    pglab(&config, &["mail", "credentials", "bulk"]);
    for _ in 0..300 {
        if slow.messages().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.kill().await.expect("SIGKILL");
    let _ = first.wait().await;
    let before = slow.messages().len();
    assert!(before < 12, "killed in the middle ({before} of 12 sent)");
    let mut second = serve();
    mail_done(env, "bulk").await;
    let id = pglab::ident::LabId::parse("bulk").unwrap();
    let log = env.store.lab_mail(&id, 100).await.unwrap();
    let uncertain = log
        .iter()
        .filter(|m| m.status == MailStatus::Uncertain)
        .count();
    assert!(uncertain <= 1, "{log:?}");
    for m in &log {
        let got = slow.to(&m.to_address).len();
        match m.status {
            MailStatus::Sent => assert_eq!(got, 1, "{} once", m.to_address),
            MailStatus::Uncertain => assert!(got <= 1, "{} at most once", m.to_address),
            other => panic!("{} ended {other}", m.to_address),
        }
    }
    assert_eq!(log.len(), 12);
    let printed = pglab(&config, &["mail", "log", "bulk"]);
    assert_eq!(printed.lines().count(), 13, "{printed}");
    // Gone before the next one binds the same port (a `pglab serve` that
    // cannot bind exits, and its jobs would wait for ever).
    second.kill().await.expect("SIGKILL");

    // No server at the configured address: nothing is sent, every message
    // fails saying so, and the passwords may be mailed again.
    let lab = shop_lab(env, "dead");
    env.apply(
        &lab,
        "username,name,email\nd1,D One,d1@example.org\nd2,D Two,d2@example.org\n",
        false,
    )
    .await
    .expect("apply");
    env.stack.settings.mail.port = pglab::stack::process::free_port();
    let config = env.settings().data_dir.join("pglab.yaml");
    std::fs::write(&config, env.settings().to_yaml()).unwrap();
    let mut third = serve();
    pglab(&config, &["mail", "credentials", "dead"]);
    let job = mail_done(env, "dead").await;
    let job = env.store.job(job).await.unwrap().unwrap();
    assert!(
        job.error.unwrap_or_default().contains("the SMTP server"),
        "job fails naming the server"
    );
    let id = pglab::ident::LabId::parse("dead").unwrap();
    for m in env.store.lab_mail(&id, 10).await.unwrap() {
        assert_eq!(m.status, MailStatus::Unsent);
        assert!(m
            .answer
            .unwrap_or_default()
            .contains("not sent: the SMTP server"));
    }
    let dry = pglab(&config, &["mail", "credentials", "dead", "--dry-run"]);
    assert!(
        dry.contains("would mail d1") && dry.contains("would mail d2"),
        "{dry}"
    );

    // A server that refuses the sender (530 at MAIL FROM) fails like one
    // that cannot be reached: the job ends with its answer, nobody's
    // message is marked refused, the passwords stay mailable.
    let refusing = Sink::start_with(env, "refusing", 0.0, &["--refuse-sender"]);
    let config = use_sink(env, &refusing);
    third.kill().await.expect("SIGKILL");
    let _fourth = serve();
    pglab(&config, &["mail", "credentials", "dead"]);
    let job = mail_done(env, "dead").await;
    let job = env.store.job(job).await.unwrap().unwrap();
    assert!(
        job.error.clone().unwrap_or_default().contains("530"),
        "{job:?}"
    );
    let log = env.store.lab_mail(&id, 10).await.unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log.iter().all(|m| m.status == MailStatus::Unsent),
        "{log:?}"
    );
    assert!(refusing.messages().is_empty());
    let dry = pglab(&config, &["mail", "credentials", "dead", "--dry-run"]);
    assert!(dry.contains("would mail d1"), "{dry}");
}

/// A lab with `mail.digest`: a participant connected for 20 minutes
/// without progress is in the digest to the staff's address, once per
/// period; a participant who is not connected is not.
async fn digest_to_staff(env: &TestEnv, sink: &Sink) {
    env.write(
        "help/ref.sql",
        "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n",
    );
    env.write("help/start.sql", "CREATE TABLE t (x int);\n");
    let lab = env.write(
        "help/help.yaml",
        "id: help\ntitle: Needs help\nreference: {sql: ref.sql}\nstarter: {sql: start.sql}\n\
         mail:\n  digest: {every: 1h, to: [ta@example.org]}\n\
         tasks:\n  - id: one\n    title: Insert the one\n    checks:\n      - sql: SELECT EXISTS (SELECT 1 FROM t WHERE x = 1)\n",
    );
    env.apply(
        &lab,
        "username,name,email\nstu,Stu Stuck,stu@example.org\naway,Al Away,away@example.org\n",
        false,
    )
    .await
    .expect("apply");
    // Stu is connected, and has been (as recorded) for 20 minutes.
    let _stu = env
        .connect_as(0, "stu", &env.password("stu").await, "help_stu")
        .await
        .unwrap();
    // The first round evaluates the new database, the next records its
    // session.
    let mut scorer = env.scorer();
    scorer.round().await;
    scorer.round().await;
    let control = env.admin(0, &env.settings().control.database).await;
    let backdated = control
        .execute(
            "UPDATE session_history SET started_at = now() - interval '20 minutes 10 seconds'
             WHERE lab_id = 'help' AND database = 'help_stu' AND ended_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(backdated, 1, "the round saw Stu's session");
    let queued = pglab::app::mail::send_digests(env.settings(), &env.store)
        .await
        .unwrap();
    assert!(
        queued <= 1,
        "the running pglab's ticker may have been first"
    );
    for _ in 0..200 {
        if !sink.to("ta@example.org").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mail_done(env, "help").await;
    let got = sink.to("ta@example.org");
    assert_eq!(got.len(), 1, "one digest");
    assert!(
        got[0].contains("Subject: Needs help: 1 participant needs help")
            && got[0].contains("Stu Stuck (stu): 20 minutes without progress")
            && got[0].contains("/labs/help/people/stu")
            && !got[0].contains("away"),
        "{}",
        got[0]
    );
    assert_eq!(
        pglab::app::mail::send_digests(env.settings(), &env.store)
            .await
            .unwrap(),
        0,
        "once per period"
    );
}
