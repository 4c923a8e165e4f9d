//! One helper to start the real stack (slapd, Postgres, optionally
//! Prometheus) with pglab's own code, on free loopback ports in a temp dir.

use pglab::control::Store;
use pglab::lab::{LoadedLab, Participants};
use pglab::provision::{self, ApplyReport, Plan, ProvisionError};
use pglab::settings::Settings;
use pglab::stack::process::{free_port, free_ports};
use pglab::stack::{LocalStack, StackOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub stack: LocalStack,
    pub store: Store,
}

pub fn temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("pglab-test-")
        .tempdir()
        .expect("temp dir");
    // The servers run as postgres / openldap when the tests run as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

impl TestEnv {
    pub async fn start(pg_servers: usize) -> Self {
        Self::start_with(pg_servers, false).await
    }

    /// With `prometheus`, a real Prometheus scrapes the web app's port every second.
    pub async fn start_with(pg_servers: usize, prometheus: bool) -> Self {
        let dir = temp_dir();
        let opts = StackOptions {
            data_dir: dir.path().join("data"),
            pg_port: free_ports(pg_servers as u16),
            pg_servers,
            ldap_port: free_port(),
            http_port: free_port(),
            prometheus_port: prometheus.then(free_port),
            scrape_interval: Duration::from_secs(1),
        };
        let mut stack = LocalStack::start(&opts).await.expect("local stack starts");
        // Short limits keep the hostile-database tests quick.
        stack.settings.scoring.statement_timeout_ms = 1000;
        stack.settings.scoring.lock_timeout_ms = 500;
        stack.settings.scoring.max_rows = 10_000;
        let store = Store::open_migrated(&stack.settings)
            .await
            .expect("control store");
        Self { dir, stack, store }
    }

    pub fn settings(&self) -> &Settings {
        &self.stack.settings
    }

    pub async fn stop(self) {
        drop(self.store);
        self.stack.stop().await;
    }

    /// Writes files into a folder of the test and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    pub async fn plan(&self, lab: &Path, csv: &str, prune: bool) -> Result<Plan, ProvisionError> {
        let lab = LoadedLab::load(lab).expect("lab loads");
        let people = Participants::parse("p.csv", csv).expect("csv parses");
        provision::plan(self.settings(), &self.store, lab, people, prune).await
    }

    pub async fn apply(
        &self,
        lab: &Path,
        csv: &str,
        prune: bool,
    ) -> Result<(Plan, ApplyReport), ProvisionError> {
        let plan = self.plan(lab, csv, prune).await?;
        let report = provision::apply(self.settings(), &self.store, &plan, |_, _| {}).await?;
        Ok((plan, report))
    }

    pub async fn password(&self, user: &str) -> String {
        self.store
            .initial_password(&pglab::ident::Username::parse(user).expect("username"))
            .await
            .expect("store")
            .expect("initial password kept")
    }

    /// Connects like a student's psql would: by LDAP password.
    pub async fn connect_as(
        &self,
        server: usize,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let s = &self.settings().postgres[server];
        let (client, conn) = tokio_postgres::Config::new()
            .host(&s.host)
            .port(s.port)
            .user(user)
            .password(password)
            .dbname(db)
            .connect(NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    pub async fn admin(&self, server: usize, db: &str) -> Client {
        pglab::pgconn::connect(&self.settings().postgres[server], db)
            .await
            .expect("admin connects")
    }

    pub async fn database_exists(&self, server: usize, db: &str) -> bool {
        self.admin(server, "postgres")
            .await
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .expect("query")
            .is_some()
    }

    pub fn ldap_port(&self) -> u16 {
        self.stack.ldap_port()
    }
}

/// The SQLSTATE or message of a failed connection, for assertions.
pub fn refusal(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// A small lab with a starter, like the demo lab.
pub fn shop_lab(env: &TestEnv, id: &str) -> PathBuf {
    env.write(
        "lab/starter.sql",
        include_str!("../../src/demo/starter.sql"),
    );
    env.write(
        "lab/reference.sql",
        include_str!("../../src/demo/reference.sql"),
    );
    let yaml = include_str!("../../src/demo/lab.yaml").replace("id: demo", &format!("id: {id}"));
    env.write(&format!("lab/{id}.yaml"), &yaml)
}

/// A scoring engine on the test's stack, rounds run by the test.
pub struct Scorer {
    pub engine: pglab::scoring::Engine,
    pub board: pglab::scoring::Board,
}

impl TestEnv {
    pub fn scorer(&self) -> Scorer {
        let board = pglab::scoring::Board::default();
        let engine = pglab::scoring::Engine::new(
            std::sync::Arc::new(self.settings().clone()),
            self.store.clone(),
            board.clone(),
            std::sync::Arc::new(pglab::scoring::Health::new()),
        );
        Scorer { engine, board }
    }
}

impl Scorer {
    pub async fn round(&mut self) -> usize {
        self.engine.round(None).await.expect("round")
    }

    /// (passed, reason) of a participant's task in the latest round.
    pub fn task(&self, lab: &str, user: &str, task: &str) -> (bool, Option<String>) {
        let snap = self.board.get();
        let lab = snap
            .labs
            .iter()
            .find(|l| l.id == lab)
            .expect("lab on the board");
        let i = lab.tasks.iter().position(|t| t.id == task).expect("task");
        let p = lab
            .participants
            .iter()
            .find(|p| p.username == user)
            .expect("participant");
        let t = &p
            .tasks
            .as_ref()
            .unwrap_or_else(|| panic!("{user} not evaluated: {:?}", p.error))[i];
        (t.passed, t.reason.clone())
    }

    pub fn passed(&self, lab: &str, user: &str) -> Vec<String> {
        let snap = self.board.get();
        let lab = snap.labs.iter().find(|l| l.id == lab).expect("lab");
        let p = lab
            .participants
            .iter()
            .find(|p| p.username == user)
            .expect("participant");
        lab.tasks
            .iter()
            .zip(p.tasks.iter().flatten())
            .filter(|(_, t)| t.passed)
            .map(|(i, _)| i.id.clone())
            .collect()
    }
}

/// The web app with its scoring loop, as `pglab serve` runs it.
pub struct Server {
    pub metrics: std::sync::Arc<pglab::metrics::Metrics>,
    pub board: pglab::scoring::Board,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestEnv {
    pub async fn serve(&self) -> Server {
        let listener = tokio::net::TcpListener::bind(self.settings().listen)
            .await
            .expect("listen");
        self.serve_on(listener).await
    }

    /// Another replica on a port of its own (the same control database),
    /// and its base URL.
    pub async fn replica(&self) -> (Server, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        (self.serve_on(listener).await, base)
    }

    async fn serve_on(&self, listener: tokio::net::TcpListener) -> Server {
        let state = pglab::server::start(self.settings().clone())
            .await
            .expect("server");
        let metrics = state.metrics.clone();
        let board = state.board.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(pglab::web::serve(state, listener, async move {
            let _ = stopped.await;
        }));
        Server {
            metrics,
            board,
            stop,
            task,
        }
    }
}

impl Server {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
