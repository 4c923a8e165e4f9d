//! The API as scripts use it, on real services: the Python and Java
//! examples drive a lab end to end (their scores equal `pglab score
//! --json`), every route family answers each kind of caller as the page it
//! mirrors would, bodies are limited, and schemathesis finds no 5xx and no
//! answer outside the OpenAPI document (linted by redocly) for an
//! anonymous caller, a student and a lab master's token.

use crate::support::TestEnv;
use pglab::control::TokenScope;
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// A lab folder for the examples: the demo shop lab under another id.
fn lab_folder(env: &TestEnv, id: &str) -> PathBuf {
    env.write(
        &format!("{id}/starter.sql"),
        include_str!("../../src/demo/starter.sql"),
    );
    env.write(
        &format!("{id}/reference.sql"),
        include_str!("../../src/demo/reference.sql"),
    );
    let yaml = include_str!("../../src/demo/lab.yaml").replace("id: demo", &format!("id: {id}"));
    env.write(&format!("{id}/lab.yaml"), &yaml)
        .parent()
        .expect("folder")
        .to_path_buf()
}

/// A custom-format dump of the reference (every task solved).
async fn solved_dump(env: &TestEnv, folder: &Path) -> PathBuf {
    let s = &env.settings().postgres[0];
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .current_dir(folder)
            .env("PGHOST", &s.host)
            .env("PGPORT", s.port.to_string())
            .env("PGUSER", &s.admin_user)
            .env("PGPASSWORD", s.admin_password.expose())
            .args(args)
            .output()
            .expect(program);
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("psql", &["-qd", "postgres", "-c", "CREATE DATABASE solved"]);
    run(
        "psql",
        &[
            "-qd",
            "solved",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "reference.sql",
        ],
    );
    let dump = env.dir.path().join("solved.dump");
    run(
        "pg_dump",
        &[
            "-Fc",
            "--no-owner",
            "--no-acl",
            "-f",
            dump.to_str().unwrap(),
            "solved",
        ],
    );
    dump
}

/// What `cmd` printed; it must succeed (`what` names it when it fails).
fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs an example; the scores it printed last (`SCORES {...}`).
fn run_example(mut cmd: Command, url: &str, token: &str) -> serde_json::Value {
    let stdout = stdout_of(
        cmd.env("PGLAB_URL", url).env("PGLAB_TOKEN", token),
        "the example",
    );
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("SCORES "))
        .unwrap_or_else(|| panic!("no SCORES line in\n{stdout}"));
    serde_json::from_str(line).expect("scores as JSON")
}

/// `pglab score LAB --json`, as username -> points.
fn cli_scores(env: &TestEnv, lab: &str) -> serde_json::Value {
    let out = stdout_of(
        Command::new(env!("CARGO_BIN_EXE_pglab"))
            .arg("--config")
            .arg(env.settings().data_dir.join("pglab.yaml"))
            .args(["score", lab, "--json"]),
        "pglab score",
    );
    let board: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut points = serde_json::Map::new();
    for p in board["participants"].as_array().expect("participants") {
        let sum: u64 = p["tasks"].as_array().map_or(0, |t| {
            t.iter().map(|t| t["points"].as_u64().unwrap_or(0)).sum()
        });
        points.insert(p["username"].as_str().unwrap().to_string(), sum.into());
    }
    serde_json::Value::Object(points)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn examples_roles_limits_and_schemathesis() {
    let mut env = TestEnv::start(1).await;
    env.stack.settings.api.rate_per_minute = 1_000_000;
    env.stack.settings.scoring.interval_secs = 1;
    crate::web::add_person(&env, "ada", "ada-master-pw-1", Some("labmasters")).await;
    crate::web::add_person(&env, "sam", "sam-staff-pw-12", Some("labstaff")).await;
    let server = env.serve().await;
    let url = format!("http://{}", env.settings().listen);
    let token = |owner: &'static str, scope| {
        let store = env.store.clone();
        async move {
            pglab::app::tokens::create(&store, "t", owner, scope, None)
                .await
                .unwrap()
                .1
        }
    };
    let admin = token("ada", TokenScope::Admin).await;

    // The examples, each on its own lab; their scores are pglab's.
    let py = lab_folder(&env, "pyex");
    let dump = solved_dump(&env, &py).await;
    let csv = env.write(
        "py.csv",
        "username,name,email\npya,Py A,a@example.org\npyb,Py B,b@example.org\n",
    );
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(MANIFEST).join("examples/python/pglab_example.py"))
        .args([&py, &csv, &dump]);
    let scores = run_example(cmd, &url, &admin);
    assert_eq!(scores, serde_json::json!({ "pya": 6, "pyb": 0 }));
    assert_eq!(scores, cli_scores(&env, "pyex"));
    let jv = lab_folder(&env, "jvex");
    let csv = env.write("jv.csv", "username,name,email\njva,Jv A,ja@example.org\n");
    let mut cmd = Command::new("java");
    cmd.arg(Path::new(MANIFEST).join("examples/java/PglabExample.java"))
        .args([&jv, &csv, &dump]);
    let scores = run_example(cmd, &url, &admin);
    assert_eq!(scores, serde_json::json!({ "jva": 6 }));
    assert_eq!(scores, cli_scores(&env, "jvex"));

    let student = {
        use base64::Engine;
        let pw = env.password("jva").await;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("jva:{pw}"))
        )
    };
    roles(&env, &url).await;
    limits(&url, &admin, &student).await;
    lint_and_schemathesis(&env, &url).await;
    server.stop().await;
    env.stop().await;
}

/// Who may call a route: the role its page needs and the token scope, and
/// whether a participant (Basic) may too.
#[derive(Clone, Copy)]
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    role: u8,
    scope: TokenScope,
    student: bool,
}

const STAFF: u8 = 1;
const MASTER: u8 = 2;

fn routes() -> Vec<Route> {
    use TokenScope::{Admin, Read, Write};
    let r = |method, path, body, role, scope, student| Route {
        method,
        path,
        body,
        role,
        scope,
        student,
    };
    vec![
        r("GET", "/api/v1/labs", None, STAFF, Read, false),
        r("GET", "/api/v1/labs/pyex", None, STAFF, Read, false),
        r("GET", "/api/v1/labs/pyex/scores", None, STAFF, Read, false),
        r(
            "GET",
            "/api/v1/labs/pyex/analytics",
            None,
            STAFF,
            Read,
            false,
        ),
        r(
            "GET",
            "/api/v1/labs/pyex/participants",
            None,
            MASTER,
            Read,
            false,
        ),
        r(
            "GET",
            "/api/v1/labs/pyex/participants/pya",
            None,
            STAFF,
            Read,
            false,
        ),
        r(
            "GET",
            "/api/v1/labs/pyex/participants/pya/history",
            None,
            STAFF,
            Read,
            false,
        ),
        r(
            "GET",
            "/api/v1/labs/pyex/participants/pya/snapshots",
            None,
            STAFF,
            Read,
            false,
        ),
        r(
            "GET",
            "/api/v1/labs/pyex/submissions",
            None,
            STAFF,
            Read,
            true,
        ),
        r(
            "GET",
            "/api/v1/labs/pyex/exports",
            None,
            MASTER,
            Read,
            false,
        ),
        r("GET", "/api/v1/exports/999999", None, MASTER, Read, false),
        r(
            "GET",
            "/api/v1/snapshots/999999/download",
            None,
            MASTER,
            Read,
            false,
        ),
        r("GET", "/api/v1/jobs/1", None, MASTER, Read, false),
        r(
            "GET",
            "/api/v1/labs/pyex/credentials",
            None,
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/pyex/participants/plan",
            Some(r#"{"csv":"pyc,Py C,c@example.org"}"#),
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/pyex/exports",
            Some(r#"{"with":"nonsense"}"#),
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/snapshots/999999/restore",
            Some(r#"{"target":"copy"}"#),
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/pyex/participants/pyb/extension",
            Some(r#"{"until":"+1d"}"#),
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/pyex/participants/pyb/snapshots",
            None,
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/pyex/participants/pyb/reset",
            None,
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/pyex/participants/pya/password",
            None,
            MASTER,
            Write,
            false,
        ),
        r(
            "DELETE",
            "/api/v1/labs/jvex/credentials",
            None,
            MASTER,
            Write,
            false,
        ),
        r("GET", "/api/v1/labs/pyex/mail", None, MASTER, Read, false),
        r(
            "POST",
            "/api/v1/labs/pyex/mail/credentials",
            Some(r#"{"dry_run":true}"#),
            MASTER,
            Write,
            false,
        ),
        r(
            "POST",
            "/api/v1/labs/check",
            Some("LAB"),
            MASTER,
            Admin,
            false,
        ),
        r(
            "PUT",
            "/api/v1/labs/pyex",
            Some("LAB"),
            MASTER,
            Admin,
            false,
        ),
    ]
}

/// A caller: how it authenticates, its role (0: a participant) and scope.
struct Who {
    name: &'static str,
    auth: Option<String>,
    role: u8,
    scope: Option<TokenScope>,
    /// The code of the 401 it gets, if it is refused whatever it asks.
    refused: Option<&'static str>,
}

async fn roles(env: &TestEnv, url: &str) {
    let store = &env.store;
    let mk = |owner: &'static str, scope| async move {
        pglab::app::tokens::create(store, "role", owner, scope, None)
            .await
            .unwrap()
    };
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let (old, revoked) = mk("ada", TokenScope::Admin).await;
    assert!(store.revoke_token(old.id, None).await.unwrap());
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (_, expired) = pglab::app::tokens::create(store, "x", "ada", TokenScope::Admin, Some(past))
        .await
        .unwrap();
    use base64::Engine;
    let pw = env.password("pyb").await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("pyb:{pw}"))
    );
    let callers = vec![
        Who {
            name: "anonymous",
            auth: None,
            role: 0,
            scope: None,
            refused: Some("unauthorized"),
        },
        Who {
            name: "student",
            auth: Some(basic),
            role: 0,
            scope: None,
            refused: None,
        },
        Who {
            name: "staff read",
            auth: bearer(&mk("sam", TokenScope::Read).await.1),
            role: STAFF,
            scope: Some(TokenScope::Read),
            refused: None,
        },
        Who {
            name: "staff write",
            auth: bearer(&mk("sam", TokenScope::Write).await.1),
            role: STAFF,
            scope: Some(TokenScope::Write),
            refused: None,
        },
        Who {
            name: "master read",
            auth: bearer(&mk("ada", TokenScope::Read).await.1),
            role: MASTER,
            scope: Some(TokenScope::Read),
            refused: None,
        },
        Who {
            name: "master write",
            auth: bearer(&mk("ada", TokenScope::Write).await.1),
            role: MASTER,
            scope: Some(TokenScope::Write),
            refused: None,
        },
        Who {
            name: "master admin",
            auth: bearer(&mk("ada", TokenScope::Admin).await.1),
            role: MASTER,
            scope: Some(TokenScope::Admin),
            refused: None,
        },
        Who {
            name: "revoked",
            auth: bearer(&revoked),
            role: MASTER,
            scope: None,
            refused: Some("revoked_token"),
        },
        Who {
            name: "expired",
            auth: bearer(&expired),
            role: MASTER,
            scope: None,
            refused: Some("expired_token"),
        },
        Who {
            name: "someone else",
            auth: bearer(&mk("nobody", TokenScope::Admin).await.1),
            role: 0,
            scope: None,
            refused: None,
        },
    ];
    let lab = serde_json::json!({
        "yaml": include_str!("../../src/demo/lab.yaml").replace("id: demo", "id: pyex"),
        "files": {
            "reference.sql": include_str!("../../src/demo/reference.sql"),
            "starter.sql": include_str!("../../src/demo/starter.sql"),
        },
    })
    .to_string();
    let http = reqwest::Client::new();
    let mut seen = vec![];
    for route in routes() {
        for who in &callers {
            let mut req = http.request(
                route.method.parse().unwrap(),
                format!("{url}{}", route.path),
            );
            if let Some(a) = &who.auth {
                req = req.header("authorization", a);
            }
            if let Some(body) = route.body {
                let body = if body == "LAB" {
                    lab.clone()
                } else {
                    body.to_string()
                };
                req = req.header("content-type", "application/json").body(body);
            }
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let code = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_default();
            let allowed = match who.scope {
                None => {
                    who.role == 0 && who.auth.is_some() && route.student && who.name == "student"
                }
                Some(scope) => who.role >= route.role && scope.allows(route.scope),
            };
            let what = format!(
                "{} {} as {}: {status} {text}",
                route.method, route.path, who.name
            );
            if let Some(refusal) = who.refused {
                assert_eq!((status, code.as_str()), (401, refusal), "{what}");
            } else if allowed {
                assert!(status != 401 && status != 403 && status < 500, "{what}");
            } else {
                assert_eq!(status, 403, "{what}");
                let expected = if who.role >= route.role && who.scope.is_some() {
                    "insufficient_scope"
                } else {
                    "forbidden"
                };
                assert_eq!(code, expected, "{what}");
            }
            seen.push(status);
        }
    }
    assert!(seen.iter().filter(|s| **s < 300).count() > 40, "{seen:?}");
    // A lab's YAML (its checks' SQL) goes to lab masters only.
    let get = |path: &str, who: usize| {
        http.get(format!("{url}{path}"))
            .header("authorization", callers[who].auth.clone().unwrap())
            .send()
    };
    for (who, yaml) in [(2, false), (4, true)] {
        let lab: serde_json::Value = get("/api/v1/labs/pyex", who)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            lab["yaml"].is_string(),
            yaml,
            "{}: {lab}",
            callers[who].name
        );
    }
    // A participant sees only their own hand-ins and progress.
    let other = get("/api/v1/me/labs/jvex/progress", 1).await.unwrap();
    assert_eq!(other.status().as_u16(), 404, "not in lab jvex");
    let mine: serde_json::Value = get("/api/v1/me/labs/pyex/progress", 1)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (mine["username"].as_str(), mine["max_points"].as_u64()),
        (Some("pyb"), Some(6))
    );
    let handins: serde_json::Value = get("/api/v1/labs/pyex/submissions", 1)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        handins["items"].as_array().unwrap().len(),
        0,
        "pya's hand-in is not pyb's: {handins}"
    );
}

/// Bodies over a route's limit, of the wrong type, or not what it takes.
async fn limits(url: &str, admin: &str, student: &str) {
    let http = reqwest::Client::new();
    // A client per request: a body refused half-way closes its connection.
    let post = |path: &str, ctype: &str, body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{url}{path}"))
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", ctype.to_string())
            .body(body)
            .send()
    };
    // Who may call a route is known before its body is read.
    let r = http
        .post(format!("{url}/api/v1/labs/check"))
        .header("authorization", student)
        .header("content-type", "application/json")
        .body(vec![b' '; 60 << 20])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 403, "refused before the body");
    }
    let big = format!(r#"{{"csv":"{}"}}"#, "x".repeat(5 << 20)).into_bytes();
    let r = post(
        "/api/v1/labs/pyex/participants/plan",
        "application/json",
        big,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = post(
        "/api/v1/labs/pyex/participants/plan",
        "text/csv",
        b"a,b".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = post(
        "/api/v1/labs/pyex/participants/plan",
        "application/json",
        br#"{"csv":"a","oops":1}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("bad_request"), Some("oops")),
        "{p}"
    );
    // A lab with a mistake: every problem with its line.
    let bad = serde_json::json!({ "yaml": "id: broken\ntitle: B\nreference: {sql: reference.sql}\ntasks:\n  - id: one\n    title: One\n    pointz: 3\n", "files": { "reference.sql": "SELECT 1;" } });
    let r = post(
        "/api/v1/labs/check",
        "application/json",
        bad.to_string().into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "invalid_lab", "{p}");
    assert!(
        p["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["line"].as_u64() == Some(7)),
        "{p}"
    );
    // A lab's files are files of its upload: a path on the server is
    // refused before it is looked at, in the same words whether or not
    // something is there, and nothing of it runs.
    let mut answers = vec![];
    for path in [
        "/etc/passwd",
        "/etc/no-such-file.sql",
        "../../../etc/passwd",
        "/../etc/passwd",
    ] {
        let yaml = format!("id: peek\ntitle: P\nreference: {{sql: {path}}}\nstarter: {{sql: starter.sql}}\ntasks:\n  - id: one\n    title: One\n    checks: [{{sql: SELECT true}}]\n");
        let body = serde_json::json!({ "yaml": yaml, "files": { "starter.sql": "SELECT 1;" } });
        let r = post(
            "/api/v1/labs/check",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{path}");
        let p: serde_json::Value = r.json().await.unwrap();
        let text = p["problems"].to_string();
        assert!(
            text.contains("name a file uploaded with the lab, without folders"),
            "{path}: {p}"
        );
        answers.push(text.replace(path, "PATH"));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // Absolute addresses in Location.
    let r = post(
        "/api/v1/labs/pyex/participants/pyb/snapshots",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    if r.status().as_u16() == 202 {
        let at = r.headers()["location"].to_str().unwrap().to_string();
        assert!(at.starts_with(&format!("{url}/api/v1/jobs/")), "{at}");
    }
}

async fn lint_and_schemathesis(env: &TestEnv, url: &str) {
    // The document pglab serves is the one `pglab openapi` prints; it lints.
    let served = reqwest::get(format!("{url}/api/v1/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let printed = Command::new(env!("CARGO_BIN_EXE_pglab"))
        .arg("openapi")
        .output()
        .unwrap();
    assert_eq!(
        served.trim(),
        String::from_utf8_lossy(&printed.stdout).trim()
    );
    let doc = env.write("openapi.json", &served);
    // The reference page lists every operation of the document.
    let page = reqwest::get(format!("{url}/api/v1/docs"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let document: serde_json::Value = serde_json::from_str(&served).unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            assert!(
                page.contains(&format!("id=\"{id}\"")),
                "{id} ({path}) on /api/v1/docs"
            );
        }
    }
    let redocly = Path::new(MANIFEST).join("tests/schema/node_modules/.bin/redocly");
    stdout_of(
        Command::new(&redocly)
            .args(["lint", "--format=summary"])
            .arg(&doc),
        "redocly lint (scripts/test.sh installs it)",
    );

    let st = Path::new(MANIFEST).join("target/pytools/bin/st");
    let store = &env.store;
    let (_, token) = pglab::app::tokens::create(store, "st", "ada", TokenScope::Read, None)
        .await
        .unwrap();
    let (_, admin) = pglab::app::tokens::create(store, "st", "ada", TokenScope::Admin, None)
        .await
        .unwrap();
    let pw = env.password("pya").await;
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("anonymous", vec![]),
        ("student", vec!["-a".into(), format!("pya:{pw}")]),
        (
            "lab master (read)",
            vec!["-H".into(), format!("Authorization: Bearer {token}")],
        ),
        (
            "lab master (admin, reads and checks)",
            vec![
                "-H".into(),
                format!("Authorization: Bearer {admin}"),
                "--include-method".into(),
                "GET".into(),
                "--include-operation-id".into(),
                "checkLab".into(),
                "--include-operation-id".into(),
                "planParticipants".into(),
            ],
        ),
    ];
    for (who, auth) in runs {
        let text = stdout_of(
            Command::new(&st)
                .current_dir(env.dir.path())
                .env("ST_LAB", "pyex")
                .env("ST_USER", "pya")
                .arg("--config-file")
                .arg(Path::new(MANIFEST).join("tests/api/schemathesis.toml"))
                .arg("run")
                .arg(format!("{url}/api/v1/openapi.json"))
                .args(&auth)
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
                    "--phases", "examples,coverage,fuzzing",
                    "--max-examples", "15",
                    "--seed", "17",
                    "--no-color",
                ]),
            &format!("schemathesis (scripts/test.sh installs it) as {who}"),
        );
        let cases = text
            .lines()
            .find(|l| l.contains(" generated, "))
            .unwrap_or("")
            .trim()
            .to_string();
        eprintln!("schemathesis as {who}: {cases}");
    }
}
