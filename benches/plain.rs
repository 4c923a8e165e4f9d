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
use std::time::Instant;

/// Source databases, dumped as plain SQL; returns (label, file).
async fn dumps(
    settings: &pglab::settings::Settings,
    admin: &tokio_postgres::Client,
    dir: &Path,
) -> Vec<(&'static str, PathBuf)> {
    common::clubdata_db(settings, admin, dir, "src_club", 500).await;
    admin
        .batch_execute("CREATE DATABASE src_schema")
        .await
        .expect("create source");
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
        let path = file.display().to_string();
        common::pg_tool(settings, "pg_dump", &["-Fp", "--no-owner", "-f", &path, db]).await;
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
                    let took = common::pg_tool(
                        &settings,
                        "psql",
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
