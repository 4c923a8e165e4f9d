//! Provisioning benchmark (issue 2): N participants with a ~10 MB starter,
//! pglab's apply against three baselines measured in the same run on the
//! same local stack:
//!   floor   - a bare `CREATE DATABASE ... TEMPLATE` of the same template, N times
//!   naive   - a shell loop per participant: ldapadd, createuser, createdb -T, psql -c GRANT
//!   batched - one ldapadd of all entries, one psql session of all statements
//!
//! Run: cargo bench --bench provision [-- N]   (default N = 200)

mod common;

use pglab::lab::{LoadedLab, Participants};
use pglab::provision;
use pglab::settings::{PgServerSettings, Settings};
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

const ROUNDS: usize = 4;

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
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
            &[&format!("{db_prefix}%")],
        )
        .await
        .expect("list")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for db in dbs {
        c.batch_execute(&format!("DROP DATABASE {}", pglab::ident::quote_ident(&db)))
            .await
            .expect("drop");
    }
    if let Some(rp) = role_prefix {
        let roles: Vec<String> = c
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1",
                &[&format!("{rp}%")],
            )
            .await
            .expect("roles")
            .iter()
            .map(|r| r.get(0))
            .collect();
        for r in roles {
            c.batch_execute(&format!("DROP ROLE {}", pglab::ident::quote_ident(&r)))
                .await
                .expect("drop role");
        }
    }
    // Let the checkpointer catch up so that the next phase starts even.
    c.batch_execute("CHECKPOINT").await.expect("checkpoint");
}

async fn floor(s: &PgServerSettings, n: usize, strategy: &str, tag: &str) -> Duration {
    let c = admin(s).await;
    let start = Instant::now();
    for i in 0..n {
        c.batch_execute(&format!(
            "CREATE DATABASE \"floor{tag}_{i}\" TEMPLATE \"pglab.tpl.bench\" STRATEGY {strategy}"
        ))
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
        (
            "LDAPPW".into(),
            settings.ldap.bind_password.expose().to_string(),
        ),
        ("BASE".into(), settings.ldap.base_dn.clone()),
    ]
}

fn entry(prefix: &str, i: usize, base: &str) -> String {
    format!(
        "dn: uid={prefix}{i},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: {prefix}{i}\ncn: Student {i}\nsn: {i}\nmail: {prefix}{i}@example.org\nuserPassword: pw-{i}\n\n"
    )
}

async fn naive(settings: &Settings, range: Range<usize>, dir: &std::path::Path) -> Duration {
    let script = dir.join("naive.sh");
    std::fs::write(
        &script,
        r#"set -e
for i in $(seq $FROM $(($TO - 1))); do
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
        .env("FROM", range.start.to_string())
        .env("TO", range.end.to_string())
        .status()
        .await
        .expect("bash");
    assert!(status.success());
    start.elapsed()
}

async fn batched(settings: &Settings, range: Range<usize>, dir: &std::path::Path) -> Duration {
    let ldif: String = range
        .clone()
        .map(|i| entry("batch", i, &settings.ldap.base_dn))
        .collect();
    std::fs::write(dir.join("batch.ldif"), ldif).expect("ldif");
    let sql: String = range
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
    tracing_subscriber::fmt()
        .with_env_filter("warn,pglab::provision=info")
        .init();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let bench = common::Bench::start().await;
    let dir = &bench.dir;
    let settings = bench.stack.settings.clone();
    let store = bench.store.clone();
    let s = settings.postgres[0].clone();

    // The lab, built once (reference and template) with no participants.
    std::fs::write(dir.path().join("starter.sql"), STARTER).expect("starter");
    let lab_path = dir.path().join("lab.yaml");
    std::fs::write(
        &lab_path,
        "id: bench\ntitle: Bench\nreference: {sql: starter.sql}\nstarter: {sql: starter.sql}\ntasks:\n  - id: t\n    title: T\n    checks:\n      - table: data.items\n",
    )
    .expect("lab");
    let lab = LoadedLab::load(&lab_path).expect("lab");
    let plan = provision::plan(
        &settings,
        &store,
        lab.clone(),
        Participants::default(),
        false,
    )
    .await
    .expect("plan");
    provision::apply(&settings, &store, &plan, |_, _| {})
        .await
        .expect("build");
    let size: i64 = admin(&s)
        .await
        .query_one("SELECT pg_database_size('pglab.tpl.bench')", &[])
        .await
        .expect("size")
        .get(0);
    println!(
        "template pglab.tpl.bench: {:.1} MB; {n} participants per method in {ROUNDS} rounds",
        size as f64 / 1e6
    );

    // Warm-up (discarded): the first clones also create WAL segments.
    floor(&s, n / 4, "WAL_LOG", "warm").await;

    // Rounds: each method provisions n / ROUNDS participants per round, in
    // an order rotated every round, so that the machine's drift under
    // sustained writes falls on every method alike.
    let chunk = n / ROUNDS;
    let methods = ["floor", "floor_file_copy", "naive", "batched", "pglab"];
    let mut totals: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut pglab_timings: BTreeMap<&'static str, Duration> = BTreeMap::new();
    for round in 0..ROUNDS {
        let range = round * chunk..(round + 1) * chunk;
        for k in 0..methods.len() {
            let method = methods[(k + round) % methods.len()];
            let took = match method {
                "floor" => floor(&s, chunk, "WAL_LOG", &format!("w{round}")).await,
                "floor_file_copy" => floor(&s, chunk, "FILE_COPY", &format!("c{round}")).await,
                "naive" => naive(&settings, range.clone(), dir.path()).await,
                "batched" => batched(&settings, range.clone(), dir.path()).await,
                _ => {
                    let csv: String = common::participants_csv("p", range.end);
                    let people = Participants::parse("bench.csv", &csv).expect("csv");
                    let start = Instant::now();
                    let plan = provision::plan(&settings, &store, lab.clone(), people, false)
                        .await
                        .expect("plan");
                    let report = provision::apply(&settings, &store, &plan, |_, _| {})
                        .await
                        .expect("apply");
                    for (k, v) in report.timings {
                        *pglab_timings.entry(k).or_default() += v;
                    }
                    start.elapsed()
                }
            };
            *totals.entry(method).or_default() += took;
        }
        eprintln!("round {}/{ROUNDS} done", round + 1);
    }
    let all: String = common::participants_csv("p", ROUNDS * chunk);
    let people = Participants::parse("bench.csv", &all).expect("csv");
    let start = Instant::now();
    let again = provision::plan(&settings, &store, lab, people, false)
        .await
        .expect("plan");
    let noop_t = start.elapsed();
    assert!(again.changes.is_empty());

    let total = ROUNDS * chunk;
    let per = |m: &str| ms(totals[m], total);
    let floor_ms = per("floor");
    println!();
    println!("{:<46} {:>8} {:>8}", "per participant", "ms", "x floor");
    let rows = [
        ("floor: CREATE DATABASE TEMPLATE (WAL_LOG)", "floor"),
        ("floor with STRATEGY FILE_COPY", "floor_file_copy"),
        ("naive shell loop", "naive"),
        ("batched: one ldapadd + one psql session", "batched"),
        ("pglab plan + apply", "pglab"),
    ];
    for (label, m) in rows {
        println!("{label:<46} {:>8.1} {:>8.2}", per(m), per(m) / floor_ms);
    }
    println!("pglab time by kind of change (ms per participant):");
    for (k, v) in &pglab_timings {
        println!("  {k:<44} {:>8.2}", ms(*v, total));
    }
    println!(
        "{:<46} {:>8.0}",
        "pglab plan with nothing to do, total ms",
        noop_t.as_secs_f64() * 1000.0
    );
    println!();
    let pglab_ms = per("pglab");
    println!(
        "target: within 1.3x of the floor: {}; faster than both scripts: {}",
        if pglab_ms <= 1.3 * floor_ms {
            "met"
        } else {
            "NOT met"
        },
        if pglab_ms < per("naive") && pglab_ms < per("batched") {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(store);
    bench.stop().await;
}
