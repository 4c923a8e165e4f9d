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
    let page = reqwest::get(format!("http://127.0.0.1:{http}/public/labs/demo/board"))
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(page.contains("Demo: a small shop"), "{page}");

    // The printed lab master login works; `staff add` makes a TA who can
    // log in with the printed password and read, not manage.
    let admin = first
        .lines
        .iter()
        .find_map(|l| l.split_once("lab master login: admin / "))
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("{text}"));
    let base = format!("http://127.0.0.1:{http}");
    let mut web = crate::browser::Http::new(&base);
    assert_eq!(web.login("admin", &admin).await, (303, "/labs".to_string()));
    assert!(web.get("/labs").await.1.contains("Demo: a small shop"));
    let staff = pglab()
        .arg("--config")
        .arg(&config)
        .args([
            "staff",
            "add",
            "tess",
            "--name",
            "Tess Assistant",
            "--email",
            "tess@example.org",
            "--read-only",
        ])
        .output()
        .await
        .expect("staff add");
    let out = String::from_utf8_lossy(&staff.stdout).to_string();
    assert!(staff.status.success(), "{staff:?}");
    let tess_pw = out
        .rsplit("password: ")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut tess = crate::browser::Http::new(&base);
    assert_eq!(
        tess.login("tess", &tess_pw).await,
        (303, "/labs".to_string()),
        "{out}"
    );
    assert_eq!(tess.get("/labs/demo/board").await.0, 200);
    assert_eq!(tess.get("/labs/demo/credentials").await.0, 403);

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
