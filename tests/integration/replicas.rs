//! Two real `pglab serve` processes behind a real HAProxy, with the config
//! `pglab haproxy` writes, over three Postgres servers: a browser session,
//! the board and scoring go on when the replica that scores a server is
//! killed (SIGKILL), an apply that a killed replica was running is finished
//! by the other, one of the three servers stopped affects only its
//! participants, and both replicas follow the control database to its
//! promoted standby without a restart.

use crate::browser::Http;
use crate::support::{shop_lab, TestEnv};
use pglab::stack::process::free_port;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

fn pglab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pglab"))
}

/// A `pglab serve` on `port`, with the test stack's config.
fn replica(env: &TestEnv, port: u16) -> Child {
    let mut settings = env.settings().clone();
    settings.listen = ([127, 0, 0, 1], port).into();
    settings.web.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let config = env.write(&format!("replica-{port}.yaml"), &settings.to_yaml());
    let log =
        std::fs::File::create(env.dir.path().join(format!("replica-{port}.log"))).expect("log");
    pglab()
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("pglab serve starts")
}

/// Waits until `base` answers `/healthz` with 200; when it never does, the
/// failure shows the log of the replica on that port, if there is one.
async fn healthy(env: &TestEnv, base: &str) {
    let since = Instant::now();
    loop {
        let last = match reqwest::get(format!("{base}/healthz")).await {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        if since.elapsed() > Duration::from_secs(60) {
            let port = base.rsplit(':').next().unwrap_or_default();
            let log = std::fs::read_to_string(env.dir.path().join(format!("replica-{port}.log")));
            panic!(
                "{base} never healthy ({last}); its log:\n{}",
                log.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
}

/// The process ids of the replicas holding a scoring lease (of `server`).
async fn lease_holders(env: &TestEnv, server: Option<&str>) -> Vec<u32> {
    // A lease: the two-key advisory lock (namespace, hashtext(server)).
    env.admin(0, &env.settings().control.database)
        .await
        .query(
            "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'pglab-scoring %'
               AND ($1::text IS NULL OR (l.objsubid = 2 AND l.objid::bigint = (hashtext($1)::bigint & 4294967295)))",
            &[&server],
        )
        .await
        .expect("locks")
        .iter()
        .filter_map(|r| r.get::<_, String>(0).rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Waits until the board (through HAProxy) shows `passes` passed cells.
async fn board_shows(master: &mut Http, passes: usize, what: &str) {
    let since = Instant::now();
    loop {
        let (status, page) = master.get("/labs/ha/board").await;
        let found = page.matches("<span class=\"sr\"> passed</span>").count();
        if status == 200 && found == passes {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{what}: status {status}, {found} passes"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn two_replicas_behind_haproxy_survive_a_kill() {
    let mut env = TestEnv::start(3).await;
    let lab = shop_lab(&env, "ha");
    env.apply(
        &lab,
        "username,name,email\nann,Ann,ann@example.org\n",
        false,
    )
    .await
    .expect("apply");
    // The control database's server gets a streaming standby, which the
    // replicas' configs list (control.standbys).
    env.stack.add_standby(free_port()).await.expect("standby");
    let ports = [free_port(), free_port()];
    let mut replicas = vec![replica(&env, ports[0]), replica(&env, ports[1])];
    let front = free_port();
    let cfg = env.dir.path().join("haproxy.cfg");
    let mut args = vec![
        "haproxy".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{front}"),
        "--out".into(),
        cfg.display().to_string(),
    ];
    for p in ports {
        args.extend(["--replica".to_string(), format!("127.0.0.1:{p}")]);
    }
    assert!(pglab()
        .args(&args)
        .status()
        .await
        .expect("pglab haproxy")
        .success());
    let checked = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .await;
    assert!(
        checked.expect("haproxy -c").status.success(),
        "the config is valid"
    );
    let _haproxy = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy starts");
    for p in ports {
        healthy(&env, &format!("http://127.0.0.1:{p}")).await;
    }
    let base = format!("http://127.0.0.1:{front}");
    healthy(&env, &base).await;
    let web = &env.settings().web;
    let mut master = Http::new(&base);
    assert_eq!(
        master
            .login(&web.admin_user, web.admin_password.expose())
            .await
            .0,
        303
    );
    let t = Instant::now();
    scoring_goes_on(&env, &mut master, &mut replicas, ports).await;
    eprintln!("scoring drill: {:?}", t.elapsed());
    apply_goes_on(&env, &mut master, &mut replicas, ports).await;
    eprintln!("apply drill: {:?}", t.elapsed());
    one_of_three_down(&mut env, &mut master, ports).await;
    eprintln!("server down drill: {:?}", t.elapsed());
    control_failover(&mut env, &mut master, ports).await;
    eprintln!("failover drill: {:?}", t.elapsed());
    for mut r in replicas {
        let _ = r.kill().await;
    }
    env.stop().await;
}

/// The replica that scores is killed: its lease moves to the other within
/// seconds, the board through HAProxy follows a change made after the kill,
/// and the lab master's session goes on. A new replica takes its place.
async fn scoring_goes_on(
    env: &TestEnv,
    master: &mut Http,
    replicas: &mut [Child],
    ports: [u16; 2],
) {
    let pw = env.password("ann").await;
    let ann = env.connect_as(0, "ann", &pw, "ha_ann").await.expect("ann");
    ann.batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .expect("restock");
    board_shows(master, 1, "a pass shows through HAProxy").await;
    // Each replica shows it (one scores the server, the other reads the
    // row it wrote): asked directly, not through HAProxy's choice.
    for port in ports {
        let mut direct = Http::new(&format!("http://127.0.0.1:{port}"));
        direct.cookies = master.cookies.clone();
        board_shows(&mut direct, 1, &format!("replica {port} shows the pass")).await;
    }
    // Three servers, two replicas: each holds a share; ann's server's
    // holder is killed.
    let holders = lease_holders(env, Some("main")).await;
    assert_eq!(holders.len(), 1, "one replica scores main: {holders:?}");
    let pids: Vec<u32> = replicas.iter().map(|c| c.id().expect("running")).collect();
    let killed = pids
        .iter()
        .position(|p| *p == holders[0])
        .expect("a replica holds it");
    kill(pids[killed]);
    let since = Instant::now();
    loop {
        let now = lease_holders(env, None).await;
        if now == [pids[1 - killed]] {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "the lease never moved: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ann.batch_execute("UPDATE shop.products SET stock = 1 WHERE name LIKE '%Teapot%'")
        .await
        .expect("unstock");
    board_shows(master, 0, "scored by the replica left").await;
    assert_eq!(master.get("/labs").await.0, 200, "the session goes on");
    replicas[killed] = replica(env, ports[killed]);
    healthy(env, &format!("http://127.0.0.1:{}", ports[killed])).await;
}

/// An apply of twenty new participants: the replica that runs it is
/// killed; the other's sweeper takes it over and finishes it.
async fn apply_goes_on(env: &TestEnv, master: &mut Http, replicas: &mut [Child], ports: [u16; 2]) {
    let mut people = "username,name,email\nann,Ann,ann@example.org\n".to_string();
    for i in 0..20 {
        people += &format!("p{i},P {i},p{i}@example.org\n");
    }
    let list = pglab::lab::Participants::parse("p.csv", &people).expect("csv");
    let lab = pglab::ident::LabId::parse("ha").expect("id");
    let queue = pglab::app::Queue::default();
    let job = pglab::app::labs::start_apply(&env.store, &queue, &lab, &list, "test")
        .await
        .expect("queued");
    let since = Instant::now();
    let worker = loop {
        let j = env.store.job(job).await.expect("job").expect("kept");
        let worker: Option<String> = env
            .admin(0, &env.settings().control.database)
            .await
            .query_one("SELECT worker FROM jobs WHERE id = $1", &[&job])
            .await
            .expect("worker")
            .get(0);
        if j.status == pglab::control::JobStatus::Running {
            break worker.expect("claimed");
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "never started: {:?}",
            j.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid: u32 = worker
        .split('-')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let killed = replicas
        .iter()
        .position(|c| c.id() == Some(pid))
        .expect("a replica runs it");
    kill(pid);
    let since = Instant::now();
    let done = loop {
        let j = env.store.job(job).await.expect("job").expect("kept");
        if j.status.ended() {
            break j;
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "the apply never ended"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(done.error, None, "{:?}", done.summary);
    assert!(
        done.attempts >= 2,
        "taken over after the kill: {}",
        done.attempts
    );
    for (i, db) in placed(env).await {
        assert!(env.database_exists(i, &db).await, "{db} on server {i}");
    }
    assert_eq!(master.get("/labs/ha/board").await.0, 200);
    replicas[killed] = replica(env, ports[killed]);
    healthy(env, &format!("http://127.0.0.1:{}", ports[killed])).await;
}

/// Every database of lab `ha`, with the index of its server.
async fn placed(env: &TestEnv) -> Vec<(usize, String)> {
    let lab = pglab::ident::LabId::parse("ha").expect("id");
    let servers = &env.settings().postgres;
    env.store
        .databases(&lab)
        .await
        .expect("databases")
        .into_iter()
        .map(|d| {
            let i = servers.iter().position(|s| s.name == d.server.as_str());
            (i.expect("a server of the config"), d.name.to_string())
        })
        .collect()
}

/// How many rows of the board (through `http`) say "server down".
async fn down_rows(http: &mut Http) -> usize {
    let (status, page) = http.get("/labs/ha/board").await;
    assert_eq!(status, 200);
    page.matches(">server down").count()
}

/// One of the three servers stops during the class: on each replica's
/// board exactly its participants say "server down", a participant on
/// another server goes on being scored, and all comes back when it
/// restarts.
async fn one_of_three_down(env: &mut TestEnv, master: &mut Http, ports: [u16; 2]) {
    let on_node3 = placed(env).await.iter().filter(|(i, _)| *i == 2).count();
    assert!(
        on_node3 > 0,
        "the apply spread the class over three servers"
    );
    let mut direct: Vec<Http> = ports
        .iter()
        .map(|p| {
            let mut h = Http::new(&format!("http://127.0.0.1:{p}"));
            h.cookies = master.cookies.clone();
            h
        })
        .collect();
    env.stack.stop_server(2).await;
    for (http, port) in direct.iter_mut().zip(ports) {
        let since = Instant::now();
        while down_rows(http).await != on_node3 {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "replica {port} never showed node3's {on_node3} participants down"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let pw = env.password("ann").await;
    env.connect_as(0, "ann", &pw, "ha_ann")
        .await
        .expect("ann is on main, which is up")
        .batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .expect("restock");
    board_shows(master, 1, "ann is scored while node3 is down").await;
    env.stack.start_server(2).await.expect("node3 back");
    for (http, port) in direct.iter_mut().zip(ports) {
        let since = Instant::now();
        while down_rows(http).await != 0 {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "replica {port} never showed node3 back"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Scoring rounds a replica finished (`/metrics`).
async fn rounds(env: &TestEnv, port: u16) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(env.settings().metrics_token.expose())
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("pglab_scoring_round_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The control database's server stops; its standby is promoted: the
/// next page through HAProxy and the next scoring round of each replica
/// work, without a restart.
async fn control_failover(env: &mut TestEnv, master: &mut Http, ports: [u16; 2]) {
    env.stack.stop_server(0).await;
    env.stack.promote_standby().await.expect("promoted");
    let promoted = [rounds(env, ports[0]).await, rounds(env, ports[1]).await];
    let since = Instant::now();
    loop {
        let (status, _) = master.get("/labs").await;
        if status == 200 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "pages never came back: {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (i, port) in ports.into_iter().enumerate() {
        let since = Instant::now();
        while rounds(env, port).await <= promoted[i] {
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "replica {port} never scored again"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
