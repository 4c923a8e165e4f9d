//! Export benchmark (issue 16): labs of 250 and 1,000 participants x 20
//! tasks with a history (three changes per task) and one small hand-in
//! (20 kB) each, exported without and with the dumps. Prints each
//! export's time, archive size and peak RSS (reset before each one, so
//! that a flat line from 250 to 1,000 shows the export does not hold the
//! class in memory), next to the baseline of `pg_dump` of the control
//! database, in the same run.
//!
//! Run: cargo bench --bench exports

mod common;

use pglab::export::{archive, ExportOptions};
use pglab::lab::LoadedLab;
use std::time::Instant;

const TASKS: usize = 20;

fn lab_yaml(id: &str) -> String {
    let mut tasks = String::new();
    for i in 0..TASKS {
        tasks += &format!(
            "  - id: t{i}\n    title: Task {i}\n    checks:\n      - sql: SELECT count(*) > {i} FROM pg_class\n"
        );
    }
    format!("id: {id}\ntitle: Export bench {id}\nreference: {{sql: ref.sql}}\ntasks:\n{tasks}")
}

fn rss_peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A lab of `n` participants with results, history and a hand-in each,
/// written straight into the control database.
async fn class(bench: &common::Bench, n: usize) -> LoadedLab {
    let id = format!("ex{n}");
    let dir = bench.dir.path().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ref.sql"), "SELECT 1;\n").unwrap();
    std::fs::write(dir.join("lab.yaml"), lab_yaml(&id)).unwrap();
    let loaded = LoadedLab::load(&dir.join("lab.yaml")).expect("lab");
    let sources = loaded.lab.read_sources().expect("sources");
    bench
        .store
        .upsert_lab(&loaded, &sources)
        .await
        .expect("lab record");
    let client = bench.store.client().await.unwrap();
    client
        .execute(
            "INSERT INTO participants (lab_id, username, name, email, database)
             SELECT $1, 's' || i, 'Student ' || i, 's' || i || '@example.org', $1 || '_s' || i
             FROM generate_series(0, $2 - 1) i",
            &[&id, &(n as i32)],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO lab_databases (lab_id, name, owner, server)
             SELECT $1, $1 || '_s' || i, 's' || i, 'main' FROM generate_series(0, $2 - 1) i",
            &[&id, &(n as i32)],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO task_scores (lab_id, database, task, passed, points, reason, first_passed_at)
             SELECT $1, $1 || '_s' || i, 't' || t, (i + t) % 3 = 0, CASE WHEN (i + t) % 3 = 0 THEN 1 ELSE 0 END,
                    CASE WHEN (i + t) % 3 = 0 THEN NULL ELSE '2 rows missing, 1 unexpected (a row matches only when all its values do)' END,
                    CASE WHEN (i + t) % 3 = 0 THEN now() - interval '1 hour' END
             FROM generate_series(0, $2 - 1) i, generate_series(0, $3 - 1) t",
            &[&id, &(n as i32), &(TASKS as i32)],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO task_history (lab_id, database, task, at, passed, points, class)
             SELECT $1, $1 || '_s' || i, 't' || t, now() - (k || ' minutes')::interval, k % 2 = 0,
                    CASE WHEN k % 2 = 0 THEN 1 ELSE 0 END, CASE WHEN k % 2 = 0 THEN NULL ELSE 'wrong' END
             FROM generate_series(0, $2 - 1) i, generate_series(0, $3 - 1) t, generate_series(1, 3) k",
            &[&id, &(n as i32), &(TASKS as i32)],
        )
        .await
        .unwrap();
    let uploads = bench.stack.settings.data_dir.join("submissions").join(&id);
    std::fs::create_dir_all(&uploads).unwrap();
    let dump = vec![7u8; 20_000];
    for i in 0..n {
        let file = uploads.join(format!("s{i}"));
        std::fs::write(&file, &dump).unwrap();
        client
            .execute(
                "WITH j AS (INSERT INTO jobs (kind, lab_id, lock_key, title, started_by, status, attempts, finished_at, total, done)
                            VALUES ('restore', $1, 'restore:' || $2, 'Restore into ' || $2, $3, 'succeeded', 1, now(), 1, 1)
                            RETURNING id)
                 INSERT INTO submissions (lab_id, database, server, owner, uploaded_by, size, format, file, late, job_id)
                 SELECT $1, $2, 'main', $3, $3, 20000, 'custom', $4, false, j.id FROM j",
                &[&id, &format!("{id}_s{i}"), &format!("s{i}"), &file.display().to_string()],
            )
            .await
            .unwrap();
    }
    loaded
}

#[tokio::main]
async fn main() {
    let bench = common::Bench::start().await;
    let settings = bench.stack.settings.clone();
    let mut lines = vec![];
    for n in [250usize, 1000] {
        let t = Instant::now();
        let loaded = class(&bench, n).await;
        println!(
            "class of {n}: written in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        for options in [
            ExportOptions::default(),
            ExportOptions {
                dumps: true,
                ..Default::default()
            },
        ] {
            let work = bench.dir.path().join(format!("work-{n}-{}", options.dumps));
            std::fs::create_dir_all(&work).unwrap();
            let dest = bench
                .dir
                .path()
                .join(format!("ex{n}-{}.zip", options.dumps));
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            let before = rss_peak_kb();
            let t = Instant::now();
            let built = archive::build(
                &bench.store,
                &settings.data_dir,
                &loaded,
                &options,
                (&work, &dest),
                &|_, _| {},
            )
            .await
            .expect("export");
            let took = t.elapsed();
            lines.push(format!(
                "{:<34} {:>8.2}s {:>10.1}MB {:>9.1}MB {:>9.1}MB",
                format!("{n} participants, {}", options.describe()),
                took.as_secs_f64(),
                built.size as f64 / 1e6,
                rss_peak_kb() as f64 / 1024.0,
                before as f64 / 1024.0
            ));
            let _ = std::fs::remove_dir_all(&work);
        }
    }
    let control = &settings.control.database;
    let out = bench.dir.path().join("control.dump");
    let out_text = out.display().to_string();
    let took = common::pg_tool(&settings, "pg_dump", &["-Fc", "-f", &out_text, control]).await;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!();
    println!(
        "{:<34} {:>9} {:>11} {:>10} {:>10}",
        "export", "time", "archive", "peak RSS", "RSS before"
    );
    for l in lines {
        println!("{l}");
    }
    println!(
        "{:<34} {:>8.2}s {:>10.1}MB   (baseline: the whole control database, both classes)",
        "pg_dump -Fc of the control database",
        took.as_secs_f64(),
        size as f64 / 1e6
    );
    bench.stop().await;
}
