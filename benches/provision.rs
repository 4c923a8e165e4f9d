//! Provisioning benchmark (issue 2): N participants with a ~10 MB starter,
//! pglab's apply against three baselines measured in the same run on the
//! same local stack:
//!   floor   - a bare `CREATE DATABASE ... TEMPLATE` of the same template, N times
//!   naive   - a shell loop per participant: ldapadd, createuser, createdb -T, psql -c GRANT
//!   batched - one ldapadd of all entries, one psql session of all statements
//!
//! Run: cargo bench --bench provision [-- N]   (default N = 200)

use pglab::control::Store;
use pglab::lab::{LoadedLab, Participants};
use pglab::provision;
use pglab::settings::{PgServerSettings, Settings};
use pglab::stack::{process::free_port, LocalStack, StackOptions};
use std::time::{Duration, Instant};

const STARTER: &str = "CREATE SCHEMA data;
CREATE TABLE data.items AS
  SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b, now() - g * interval '1 minute' AS t
  FROM generate_series(1, 45000) g;
ALTER TABLE data.items ADD PRIMARY KEY (id);
CREATE TABLE data.tags (id int PRIMARY KEY, item int REFERENCES data.items, tag text);
INSERT INTO data.tags SELECT g, g, 'tag' || (g % 50) FROM generate_series(1, 10000) g;
";

fn ms(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / n as f64
}

async fn admin(s: &PgServerSettings) -> tokio_postgres::Client {
    pglab::pgconn::connect(s, "postgres").await.expect("admin")
}

async fn drop_like(s: &PgServerSettings, db_prefix: &str, role_prefix: Option<&str>) {
    let c = admin(s).await;
    let dbs: Vec<String> = c
        .query("SELECT datname::text FROM pg_database WHERE datname LIKE $1", &[&format!("{db_prefix}%")])
        .await
        .expect("list")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for db in dbs {
        c.batch_execute(&format!("DROP DATABASE {}", pglab::ident::quote_ident(&db))).await.expect("drop");
    }
    if let Some(rp) = role_prefix {
        let roles: Vec<String> = c
            .query("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1", &[&format!("{rp}%")])
            .await
            .expect("roles")
            .iter()
            .map(|r| r.get(0))
            .collect();
        for r in roles {
            c.batch_execute(&format!("DROP ROLE {}", pglab::ident::quote_ident(&r))).await.expect("drop role");
        }
    }
    // Let the checkpointer catch up so that the next phase starts even.
    c.batch_execute("CHECKPOINT").await.expect("checkpoint");
}

async fn floor(s: &PgServerSettings, n: usize, strategy: &str, tag: &str) -> Duration {
    let c = admin(s).await;
    let start = Instant::now();
    for i in 0..n {
        c.batch_execute(&format!("CREATE DATABASE \"floor{tag}_{i}\" TEMPLATE \"pglab.tpl.bench\" STRATEGY {strategy}"))
            .await
            .expect("clone");
    }
    let took = start.elapsed();
    drop_like(s, &format!("floor{tag}_"), None).await;
    took
}

fn shell_env(settings: &Settings) -> Vec<(String, String)> {
    let s = &settings.postgres[0];
    vec![
        ("PGHOST".into(), s.host.clone()),
        ("PGPORT".into(), s.port.to_string()),
        ("PGUSER".into(), s.admin_user.clone()),
        ("PGPASSWORD".into(), s.admin_password.expose().to_string()),
        ("PGDATABASE".into(), "postgres".into()),
        ("LDAPURL".into(), settings.ldap.url.clone()),
        ("LDAPDN".into(), settings.ldap.bind_dn.clone()),
        ("LDAPPW".into(), settings.ldap.bind_password.expose().to_string()),
        ("BASE".into(), settings.ldap.base_dn.clone()),
    ]
}

fn entry(prefix: &str, i: usize, base: &str) -> String {
    format!(
        "dn: uid={prefix}{i},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: {prefix}{i}\ncn: Student {i}\nsn: {i}\nmail: {prefix}{i}@example.org\nuserPassword: pw-{i}\n\n"
    )
}

async fn naive(settings: &Settings, n: usize, dir: &std::path::Path) -> Duration {
    let script = dir.join("naive.sh");
    std::fs::write(
        &script,
        r#"set -e
for i in $(seq 0 $(($N - 1))); do
  u="naive$i"
  printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: Student %s\nsn: %s\nmail: %s@example.org\nuserPassword: pw-%s\n' \
    "$u" "$BASE" "$u" "$i" "$i" "$u" "$i" | ldapadd -x -H "$LDAPURL" -D "$LDAPDN" -w "$LDAPPW" >/dev/null
  createuser --no-superuser --no-createdb --no-createrole "$u"
  createdb -T pglab.tpl.bench -O "$u" "naive_$u"
  psql -X -q -c "REVOKE ALL ON DATABASE \"naive_$u\" FROM PUBLIC; GRANT pglab_students TO \"$u\"" >/dev/null
done
"#,
    )
    .expect("script");
    let start = Instant::now();
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .envs(shell_env(settings))
        .env("N", n.to_string())
        .status()
        .await
        .expect("bash");
    assert!(status.success());
    start.elapsed()
}

async fn batched(settings: &Settings, n: usize, dir: &std::path::Path) -> Duration {
    let ldif: String = (0..n).map(|i| entry("batch", i, &settings.ldap.base_dn)).collect();
    std::fs::write(dir.join("batch.ldif"), ldif).expect("ldif");
    let sql: String = (0..n)
        .map(|i| {
            format!(
                "CREATE ROLE batch{i} LOGIN IN ROLE pglab_students;\nCREATE DATABASE \"batch_{i}\" TEMPLATE \"pglab.tpl.bench\" OWNER batch{i};\nREVOKE ALL ON DATABASE \"batch_{i}\" FROM PUBLIC;\n"
            )
        })
        .collect();
    std::fs::write(dir.join("batch.sql"), sql).expect("sql");
    let start = Instant::now();
    let status = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; ldapadd -x -H \"$LDAPURL\" -D \"$LDAPDN\" -w \"$LDAPPW\" -f {d}/batch.ldif >/dev/null; psql -X -q -v ON_ERROR_STOP=1 -f {d}/batch.sql >/dev/null",
            d = dir.display()
        ))
        .envs(shell_env(settings))
        .status()
        .await
        .expect("bash");
    assert!(status.success());
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let dir = tempfile::Builder::new().prefix("pglab-bench-").tempdir().expect("tempdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let opts = StackOptions {
        data_dir: dir.path().join("data"),
        pg_port: free_port(),
        pg_servers: 1,
        ldap_port: free_port(),
        http_port: free_port(),
        prometheus_port: None,
    };
    let stack = LocalStack::start(&opts).await.expect("stack");
    let settings = stack.settings.clone();
    let s = settings.postgres[0].clone();
    let store = Store::open_migrated(&settings).await.expect("store");

    // The lab, built once (reference and template) with no participants.
    std::fs::write(dir.path().join("starter.sql"), STARTER).expect("starter");
    let lab_path = dir.path().join("lab.yaml");
    std::fs::write(
        &lab_path,
        "id: bench\ntitle: Bench\nreference: {sql: starter.sql}\nstarter: {sql: starter.sql}\ntasks:\n  - id: t\n    title: T\n    checks:\n      - table: data.items\n",
    )
    .expect("lab");
    let lab = LoadedLab::load(&lab_path).expect("lab");
    let plan = provision::plan(&settings, &store, lab.clone(), Participants::default(), false).await.expect("plan");
    provision::apply(&settings, &store, &plan, |_, _| {}).await.expect("build");
    let size: i64 = admin(&s)
        .await
        .query_one("SELECT pg_database_size('pglab.tpl.bench')", &[])
        .await
        .expect("size")
        .get(0);
    println!("template pglab.tpl.bench: {:.1} MB; {n} participants per run", size as f64 / 1e6);

    let floor_wal = floor(&s, n, "WAL_LOG", "w").await;
    let floor_copy = floor(&s, n, "FILE_COPY", "c").await;
    let naive_t = naive(&settings, n, dir.path()).await;
    drop_like(&s, "naive_", Some("naive")).await;
    let batch_t = batched(&settings, n, dir.path()).await;
    drop_like(&s, "batch_", Some("batch")).await;

    let csv: String = std::iter::once("username,name,email".to_string())
        .chain((0..n).map(|i| format!("p{i},Student {i},p{i}@example.org")))
        .collect::<Vec<_>>()
        .join("\n");
    let people = Participants::parse("bench.csv", &csv).expect("csv");
    let start = Instant::now();
    let plan = provision::plan(&settings, &store, lab.clone(), people.clone(), false).await.expect("plan");
    let plan_t = start.elapsed();
    let start = Instant::now();
    provision::apply(&settings, &store, &plan, |_, _| {}).await.expect("apply");
    let apply_t = start.elapsed();
    let start = Instant::now();
    let again = provision::plan(&settings, &store, lab, people, false).await.expect("plan");
    let noop_t = start.elapsed();
    assert!(again.changes.is_empty());
    let floor_again = floor(&s, n, "WAL_LOG", "w2").await;

    let floor_ms = (ms(floor_wal, n) + ms(floor_again, n)) / 2.0;
    let pglab_ms = ms(plan_t + apply_t, n);
    println!();
    println!("{:<44} {:>10} {:>10}", "per participant", "ms", "x floor");
    let row = |name: &str, v: f64| println!("{name:<44} {v:>10.1} {:>10.2}", v / floor_ms);
    row("floor: CREATE DATABASE TEMPLATE (WAL_LOG)", floor_ms);
    println!("{:<44} {:>10.1} {:>10.2}", "  (first / last floor run)", ms(floor_wal, n), ms(floor_again, n) / ms(floor_wal, n));
    row("floor with STRATEGY FILE_COPY", ms(floor_copy, n));
    row("naive shell loop", ms(naive_t, n));
    row("batched ldapadd + one psql session", ms(batch_t, n));
    row("pglab plan + apply", pglab_ms);
    println!("{:<44} {:>10.1}", "  of which plan", ms(plan_t, n));
    println!("{:<44} {:>10.0}", "pglab second plan (no changes), total ms", noop_t.as_secs_f64() * 1000.0);
    println!();
    println!(
        "target: pglab within 1.3x of the floor ({}) and faster than both scripts ({})",
        if pglab_ms <= 1.3 * floor_ms { "met" } else { "NOT met" },
        if pglab_ms < ms(naive_t, n) && pglab_ms < ms(batch_t, n) { "met" } else { "NOT met" }
    );
    stack.stop().await;
}
