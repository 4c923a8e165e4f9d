//! Plain-SQL restore benchmark (issue 12): pglab's own splitter and
//! executor (`submissions::plain_restore`, statements over the protocol,
//! COPY data through copy-in) against what pglab ran before, `psql -X -q
//! -v ON_ERROR_STOP=1 --single-transaction -f`, on the same plain dumps,
//! into fresh databases, on the real stack in one run.
//!
//! Dumps: clubdata grown to ~2M bookings with its keys and indexes (mostly
//! COPY data), and a schema-heavy one (2,000 tables, views and functions,
//! many small statements). Rounds alternate the order; medians.
//!
//! Run: cargo bench --bench plain [-- ROUNDS]   (default 5)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

async fn psql(settings: &pglab::settings::Settings, args: &[&str]) -> Duration {
    let s = &settings.postgres[0];
    let bin = s
        .bin_dir
        .clone()
        .map_or(PathBuf::from("psql"), |d| d.join("psql"));
    let t = Instant::now();
    let out = tokio::process::Command::new(bin)
        .env("PGHOST", &s.host)
        .env("PGPORT", s.port.to_string())
        .env("PGUSER", &s.admin_user)
        .env("PGPASSWORD", s.admin_password.expose())
        .args(args)
        .output()
        .await
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

async fn pg_dump_plain(settings: &pglab::settings::Settings, db: &str, out: &Path) {
    let s = &settings.postgres[0];
    let bin = s
        .bin_dir
        .clone()
        .map_or(PathBuf::from("pg_dump"), |d| d.join("pg_dump"));
    let status = tokio::process::Command::new(bin)
        .env("PGHOST", &s.host)
        .env("PGPORT", s.port.to_string())
        .env("PGUSER", &s.admin_user)
        .env("PGPASSWORD", s.admin_password.expose())
        .args(["-Fp", "--no-owner", "-f"])
        .arg(out)
        .arg(db)
        .status()
        .await
        .expect("pg_dump runs");
    assert!(status.success());
}

/// Source databases, dumped as plain SQL; returns (label, file).
async fn dumps(
    settings: &pglab::settings::Settings,
    admin: &tokio_postgres::Client,
    dir: &Path,
) -> Vec<(&'static str, PathBuf)> {
    let club = common::clubdata::cleaned_clubdata();
    let cut = club.find("ALTER TABLE ONLY").expect("post-data section");
    let (pre, post) = club.split_at(cut);
    std::fs::write(dir.join("pre.sql"), pre).expect("pre");
    std::fs::write(
        dir.join("post.sql"),
        format!("SET search_path = cd, public;\n{post}"),
    )
    .expect("post");
    for db in ["src_club", "src_schema"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create source");
    }
    let quiet = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "src_club", "-f"];
    let pre_file = dir.join("pre.sql").display().to_string();
    psql(settings, &[&quiet[..], &[pre_file.as_str()]].concat()).await;
    let c = pglab::pgconn::connect(&settings.postgres[0], "src_club")
        .await
        .expect("club");
    c.batch_execute(
        "INSERT INTO cd.bookings
           SELECT b.bookid + k * 10000, b.facid, b.memid,
                  b.starttime + ((k * 7919 + b.bookid) % 20000) * interval '30 minutes',
                  1 + (b.slots + k) % 6
           FROM cd.bookings b, generate_series(1, 500) k",
    )
    .await
    .expect("grow");
    let post_file = dir.join("post.sql").display().to_string();
    psql(settings, &[&quiet[..], &[post_file.as_str()]].concat()).await;
    let s = pglab::pgconn::connect(&settings.postgres[0], "src_schema")
        .await
        .expect("schema");
    s.batch_execute(
        "DO $$ BEGIN FOR i IN 1..2000 LOOP
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, a text, b numeric DEFAULT 0)', i);
           EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text), g FROM generate_series(1, 5) g', i);
           EXECUTE format('CREATE VIEW v%s AS SELECT id, upper(a) AS a FROM t%s WHERE b > 1', i, i);
           EXECUTE format('CREATE FUNCTION f%s(x int) RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN x + %s; END $f$', i, i);
         END LOOP; END $$",
    )
    .await
    .expect("schema objects");
    let mut out = vec![];
    for (label, db) in [
        ("clubdata x500 (COPY-heavy)", "src_club"),
        (
            "2,000 tables, views, functions (statement-heavy)",
            "src_schema",
        ),
    ] {
        let file = dir.join(format!("{db}.sql"));
        pg_dump_plain(settings, db, &file).await;
        out.push((label, file));
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let bench = common::Bench::start().await;
    let settings = bench.stack.settings.clone();
    let server = &settings.postgres[0];
    let admin = pglab::pgconn::connect(server, "postgres")
        .await
        .expect("admin");
    let files = dumps(&settings, &admin, bench.dir.path()).await;
    println!("plain-SQL restore, {rounds} rounds, medians (2 cores)");
    for (label, file) in &files {
        let size = std::fs::metadata(file).expect("size").len() as f64 / 1e6;
        let (mut ours, mut theirs) = (vec![], vec![]);
        for round in 0..rounds {
            for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                let db = format!("r_{round}_{side}");
                admin
                    .batch_execute(&format!("CREATE DATABASE {db}"))
                    .await
                    .expect("create");
                admin.batch_execute("CHECKPOINT").await.ok();
                if side == 0 {
                    let t = Instant::now();
                    let mut client = pglab::pgconn::connect(server, &db).await.expect("connect");
                    let run = pglab::submissions::plain_restore::restore(
                        &mut client,
                        file,
                        &db,
                        &server.admin_user,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("pglab restore: {e:?}"));
                    ours.push(t.elapsed().as_secs_f64());
                    assert!(run.statements > 0);
                } else {
                    let path = file.display().to_string();
                    let took = psql(
                        &settings,
                        &[
                            "-X",
                            "-q",
                            "-v",
                            "ON_ERROR_STOP=1",
                            "--single-transaction",
                            "-d",
                            &db,
                            "-f",
                            &path,
                        ],
                    )
                    .await;
                    theirs.push(took.as_secs_f64());
                }
                admin
                    .batch_execute(&format!("DROP DATABASE {db}"))
                    .await
                    .expect("drop");
            }
        }
        let (o, p) = (median(ours), median(theirs));
        println!(
            "  {label}, {size:.1} MB: psql {p:.2} s, pglab's splitter and executor {o:.2} s ({:+.1}%)",
            (o / p - 1.0) * 100.0
        );
    }
    bench.stop().await;
}
