//! What every benchmark program starts with: the local stack of `pglab up`
//! in a temporary folder, on free ports, and its control store.

#![allow(dead_code)] // each benchmark uses a part

use pglab::control::Store;
use pglab::stack::process::{free_port, free_ports};
use pglab::stack::{LocalStack, StackOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../tests/common/clubdata.rs"]
pub mod clubdata;
pub mod measure;

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub stack: LocalStack,
    pub store: Store,
}

impl Bench {
    pub async fn start() -> Self {
        Self::start_with(1).await
    }

    /// The stack with `pg_servers` Postgres servers.
    pub async fn start_with(pg_servers: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pglab-bench-")
            .tempdir()
            .expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt;
            // The servers run as postgres / openldap when run as root.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let opts = StackOptions {
            data_dir: dir.path().join("data"),
            pg_port: free_ports(pg_servers as u16),
            pg_servers,
            ldap_port: free_port(),
            http_port: free_port(),
            prometheus_port: None,
            scrape_interval: Duration::from_secs(10),
        };
        let stack = LocalStack::start(&opts).await.expect("stack");
        let store = Store::open_migrated(&stack.settings).await.expect("store");
        Self { dir, stack, store }
    }

    pub async fn stop(self) {
        drop(self.store);
        self.stack.stop().await;
    }
}

/// pglab's web app (with its scoring loop and workers) on the bench's
/// stack, as `pglab serve` runs it.
pub struct Served {
    pub board: pglab::scoring::Board,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub async fn start(settings: &pglab::settings::Settings) -> Self {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .expect("listen");
        let state = pglab::server::start(settings.clone())
            .await
            .expect("server");
        let board = state.board.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(pglab::web::serve(state, listener, async move {
            let _ = stopped.await;
        }));
        Self { board, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The program's arguments `[N [MINUTES]]` (cargo's `--bench` left out),
/// or the defaults.
pub fn class_args(n: usize, minutes: f64) -> (usize, f64) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    (
        args.first().and_then(|a| a.parse().ok()).unwrap_or(n),
        args.get(1).and_then(|a| a.parse().ok()).unwrap_or(minutes),
    )
}

/// `username,name,email` with `n` participants `<prefix>0..`.
pub fn participants_csv(prefix: &str, n: usize) -> String {
    std::iter::once("username,name,email".to_string())
        .chain((0..n).map(|i| format!("{prefix}{i},Student {i},{prefix}{i}@example.org")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a Postgres client tool (`psql`, `pg_dump`, `pg_restore`) as the
/// admin; its seconds.
pub async fn pg_tool(settings: &pglab::settings::Settings, tool: &str, args: &[&str]) -> Duration {
    let s = &settings.postgres[0];
    pg_tool_as(
        settings,
        (&s.admin_user, s.admin_password.expose()),
        tool,
        args,
    )
    .await
}

pub async fn pg_tool_as(
    settings: &pglab::settings::Settings,
    (user, password): (&str, &str),
    tool: &str,
    args: &[&str],
) -> Duration {
    let s = &settings.postgres[0];
    let bin = s
        .bin_dir
        .clone()
        .map_or(PathBuf::from(tool), |d| d.join(tool));
    let t = Instant::now();
    let out = tokio::process::Command::new(bin)
        .env("PGHOST", &s.host)
        .env("PGPORT", s.port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .args(args)
        .output()
        .await
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// A database `db` with clubdata whose bookings are grown `copies` times
/// (with its keys and indexes made after the data, as a restore would).
pub async fn clubdata_db(
    settings: &pglab::settings::Settings,
    admin: &tokio_postgres::Client,
    dir: &Path,
    db: &str,
    copies: u32,
) {
    let text = clubdata::cleaned_clubdata();
    // pg_dump's plain format: tables and data, then the post-data section
    // (keys, indexes) from the first ALTER TABLE ONLY on.
    let cut = text.find("ALTER TABLE ONLY").expect("post-data section");
    let (pre, post) = text.split_at(cut);
    let (pre_file, post_file) = (dir.join("club-pre.sql"), dir.join("club-post.sql"));
    std::fs::write(&pre_file, pre).expect("pre");
    std::fs::write(&post_file, format!("SET search_path = cd, public;\n{post}")).expect("post");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create club");
    let (pre_path, post_path) = (
        pre_file.display().to_string(),
        post_file.display().to_string(),
    );
    let quiet = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"];
    pg_tool(
        settings,
        "psql",
        &[&quiet[..], &[pre_path.as_str()]].concat(),
    )
    .await;
    let club = pglab::pgconn::connect(&settings.postgres[0], db)
        .await
        .expect("club");
    club.batch_execute(&format!(
        "INSERT INTO cd.bookings
           SELECT b.bookid + k * 10000, b.facid, b.memid,
                  b.starttime + ((k * 7919 + b.bookid) % 20000) * interval '30 minutes',
                  1 + (b.slots + k) % 6
           FROM cd.bookings b, generate_series(1, {copies}) k"
    ))
    .await
    .expect("grow bookings");
    drop(club);
    pg_tool(
        settings,
        "psql",
        &[&quiet[..], &[post_path.as_str()]].concat(),
    )
    .await;
}

/// Plans and applies `lab` with `n` participants `s0..`; returns how long
/// it took.
pub async fn provision_class(
    settings: &pglab::settings::Settings,
    store: &Store,
    lab: &pglab::lab::LoadedLab,
    n: usize,
) -> Duration {
    let people =
        pglab::lab::Participants::parse("bench.csv", &participants_csv("s", n)).expect("csv");
    let started = Instant::now();
    let plan = pglab::provision::plan(settings, store, lab.clone(), people, false)
        .await
        .expect("plan");
    pglab::provision::apply(settings, store, &plan, |_, _| {})
        .await
        .expect("apply");
    started.elapsed()
}

/// Views of the clubdata starter that the class lab's view checks expect.
pub const CLUB_VIEWS: &str = "
CREATE VIEW cd.member_hours AS SELECT m.memid, m.surname, sum(b.slots) / 2.0 AS hours
  FROM cd.members m JOIN cd.bookings b USING (memid) GROUP BY m.memid, m.surname;
CREATE VIEW cd.facility_revenue AS SELECT f.name, sum(b.slots * CASE WHEN b.memid = 0 THEN f.guestcost ELSE f.membercost END) AS revenue
  FROM cd.bookings b JOIN cd.facilities f USING (facid) GROUP BY f.name;
CREATE VIEW cd.monthly AS SELECT date_trunc('month', starttime) AS month, facid, sum(slots) AS slots
  FROM cd.bookings GROUP BY 1, 2;
CREATE VIEW cd.recommenders AS SELECT r.memid, r.surname, count(*) AS recommended
  FROM cd.members m JOIN cd.members r ON r.memid = m.recommendedby GROUP BY r.memid, r.surname;
CREATE VIEW cd.busy_days AS SELECT starttime::date AS day, count(*) AS bookings
  FROM cd.bookings GROUP BY 1 HAVING count(*) > 20;
";

/// The lab of the scoring benchmarks: 10 tasks, 20 checks on clubdata
/// (`club.sql`: clubdata and `CLUB_VIEWS`); `options` goes in as it is.
pub fn club_lab_yaml(options: &str) -> String {
    let mut tasks = String::new();
    let views = [
        "member_hours",
        "facility_revenue",
        "monthly",
        "recommenders",
        "busy_days",
    ];
    let queries = [
        "SELECT facid, count(*) FROM cd.bookings GROUP BY facid",
        "SELECT m.surname, count(b.*) FROM cd.members m LEFT JOIN cd.bookings b USING (memid) GROUP BY m.surname",
        "SELECT f.name, avg(b.slots) FROM cd.facilities f JOIN cd.bookings b USING (facid) GROUP BY f.name",
        "SELECT memid, max(starttime) FROM cd.bookings GROUP BY memid",
        "SELECT date_part('dow', starttime) AS dow, sum(slots) FROM cd.bookings GROUP BY 1",
    ];
    let tables = ["members", "bookings", "facilities", "members", "bookings"];
    for i in 0..5 {
        tasks.push_str(&format!(
            "  - id: view{i}\n    title: View {i}\n    checks:\n      - view: cd.{}\n      - query: \"{}\"\n",
            views[i], queries[i]
        ));
        tasks.push_str(&format!(
            "  - id: table{i}\n    title: Table {i}\n    checks:\n      - table: cd.{}\n        compare: [columns, primary_key, foreign_keys, rows]\n      - sql: SELECT count(*) > {i} FROM cd.{}\n",
            tables[i], tables[i]
        ));
    }
    format!("id: bench\ntitle: Scoring bench\nreference: {{sql: club.sql}}\nstarter: {{sql: club.sql}}\n{options}tasks:\n{tasks}")
}
