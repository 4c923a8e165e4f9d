//! The real `pglab up --demo` binary: starts everything, answers its
//! healthcheck, stops every child on SIGTERM, and reuses its data.

use crate::support::temp_dir;
use pglab::stack::process::free_port;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn pglab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pglab"))
}

struct Up {
    child: Child,
    lines: Vec<String>,
}

async fn up(args: &[String]) -> Up {
    let mut child = pglab()
        .arg("up")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("pglab starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut lines = vec![];
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = out.next_line().await {
            let done = line.starts_with("web app:");
            lines.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let _ = child.kill().await;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
        }
        panic!("pglab up did not get ready: {lines:?}\n{err}");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    Up { child, lines }
}

async fn terminate(mut up: Up) {
    let pid = nix::unistd::Pid::from_raw(up.child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = tokio::time::timeout(Duration::from_secs(60), up.child.wait())
        .await
        .expect("stops in time")
        .expect("wait");
    assert!(status.success(), "{status}");
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn up_demo_serves_stops_and_restarts_with_its_data() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let (pg, ldap, http) = (free_port(), free_port(), free_port());
    let args: Vec<String> = vec![
        "--demo".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--pg-port".into(),
        pg.to_string(),
        "--ldap-port".into(),
        ldap.to_string(),
        "--http-port".into(),
        http.to_string(),
        "--no-prometheus".into(),
    ];
    let first = up(&args).await;
    let text = first.lines.join("\n");
    let password_line = first
        .lines
        .iter()
        .find(|l| l.contains("initial password:"))
        .unwrap_or_else(|| panic!("{text}"))
        .clone();
    assert!(
        text.contains(&format!("psql -h 127.0.0.1 -p {pg} -U ")),
        "{text}"
    );
    let config = data.join("pglab.yaml");

    let health = pglab()
        .arg("--config")
        .arg(&config)
        .arg("healthcheck")
        .output()
        .await
        .expect("runs");
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    let page = reqwest::get(format!("http://127.0.0.1:{http}/"))
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(page.contains("Demo: a small shop"), "{page}");

    let demo = data.join("demo");
    let plan = pglab()
        .arg("--config")
        .arg(&config)
        .arg("plan")
        .arg(demo.join("lab.yaml"))
        .arg("--participants")
        .arg(demo.join("participants.csv"))
        .output()
        .await
        .expect("plan");
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("5 participants, 0 changes"),
        "{plan:?}"
    );

    // A taken port is named clearly, and nothing starts.
    let busy = pglab()
        .arg("up")
        .args(&args)
        .output()
        .await
        .expect("second up");
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("already in use"),
        "{busy:?}"
    );

    terminate(first).await;
    for port in [pg, ldap, http] {
        assert!(!port_open(port), "port {port} still open after SIGTERM");
    }

    // Again: same data, same passwords, no re-initialisation.
    let second = up(&args).await;
    assert!(second.lines.contains(&password_line), "{:?}", second.lines);
    assert!(
        second.lines.iter().any(|l| l.contains("0 changes applied")),
        "{:?}",
        second.lines
    );
    terminate(second).await;
}
