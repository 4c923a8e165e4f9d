//! `/api/v1` on real services: personal tokens (scopes, revoked, expired,
//! unknown, the old shared token), a student's Basic login for their own
//! progress, problem+json errors, ETags on scores, rate limits, and the
//! `pglab token` commands.

use crate::support::{shop_lab, TestEnv};
use pglab::control::TokenScope;

const PEOPLE: &str = "username,name,email\nann,Ann,ann@example.org\nbob,Bob,bob@example.org\n";

async fn get(url: &str, auth: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        r = r.header(reqwest::header::AUTHORIZATION, a);
    }
    r.send().await.expect("request")
}

async fn problem(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn tokens_scopes_students_errors_and_limits() {
    let mut env = TestEnv::start(1).await;
    env.stack.settings.api.rate_per_minute = 40;
    let lab = shop_lab(&env, "apiv");
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    // Tokens work while their owner is a lab master (or staff).
    crate::web::add_person(&env, "ada", "ada-master-pw-1", Some("labmasters")).await;
    let server = env.serve().await;
    let base = format!("http://{}/api/v1", env.settings().listen);
    let store = &env.store;
    let (_, read) = pglab::app::tokens::create(store, "sync", "ada", TokenScope::Read, None)
        .await
        .unwrap();
    let (revoked, revoked_secret) =
        pglab::app::tokens::create(store, "old", "ada", TokenScope::Admin, None)
            .await
            .unwrap();
    assert!(store.revoke_token(revoked.id, Some("ada")).await.unwrap());
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (_, expired) = pglab::app::tokens::create(store, "x", "ada", TokenScope::Read, Some(past))
        .await
        .unwrap();
    let bearer = |t: &str| format!("Bearer {t}");

    assert_eq!(
        get(&format!("{base}/health"), None).await.status().as_u16(),
        200
    );
    problem(
        get(&format!("{base}/labs"), None).await,
        401,
        "unauthorized",
    )
    .await;
    problem(
        get(&format!("{base}/labs"), Some(&bearer(&revoked_secret))).await,
        401,
        "revoked_token",
    )
    .await;
    problem(
        get(&format!("{base}/labs"), Some(&bearer(&expired))).await,
        401,
        "expired_token",
    )
    .await;
    problem(
        get(&format!("{base}/labs"), Some("Bearer pglab_guess")).await,
        401,
        "unknown_token",
    )
    .await;
    let shared = bearer(env.settings().api_token.expose());
    problem(
        get(&format!("{base}/labs"), Some(&shared)).await,
        401,
        "shared_token",
    )
    .await;

    // A read token lists and reads.
    let r = get(&format!("{base}/labs"), Some(&bearer(&read))).await;
    assert_eq!(r.status().as_u16(), 200);
    let labs: serde_json::Value = r.json().await.unwrap();
    assert!(
        labs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == "apiv"),
        "{labs}"
    );
    let r = get(&format!("{base}/labs/apiv"), Some(&bearer(&read))).await;
    let one: serde_json::Value = r.json().await.unwrap();
    assert_eq!(one["tasks"].as_array().unwrap().len(), 4);
    problem(
        get(&format!("{base}/labs/nope"), Some(&bearer(&read))).await,
        404,
        "not_found",
    )
    .await;
    problem(
        get(&format!("{base}/nothing/here"), Some(&bearer(&read))).await,
        404,
        "not_found",
    )
    .await;

    // Scores, with an ETag; pages by cursor. (They come from the served
    // app's own scoring: its first round may still be running.)
    let mut scorer = env.scorer();
    scorer.round().await;
    let since = std::time::Instant::now();
    while !server.board.get().labs.iter().any(|l| {
        l.id == "apiv"
            && !l.participants.is_empty()
            && l.participants.iter().all(|p| p.tasks.is_some())
    }) {
        assert!(
            since.elapsed().as_secs() < 60,
            "the served app never scored the lab"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = get(
        &format!("{base}/labs/apiv/scores?limit=1"),
        Some(&bearer(&read)),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let again = reqwest::Client::new()
        .get(format!("{base}/labs/apiv/scores?limit=1"))
        .header("authorization", bearer(&read))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    let next: serde_json::Value = get(
        &format!("{base}/labs/apiv/scores?limit=1&cursor={cursor}"),
        Some(&bearer(&read)),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(next["items"][0]["username"], "bob");
    assert!(next["next_cursor"].is_null());

    // A student: their own progress only.
    use base64::Engine;
    let pw = env.password("ann").await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ann:{pw}"))
    );
    problem(
        get(&format!("{base}/labs"), Some(&basic)).await,
        403,
        "forbidden",
    )
    .await;
    let mine: serde_json::Value = get(&format!("{base}/me/labs/apiv/progress"), Some(&basic))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["username"], "ann");
    problem(
        get(
            &format!("{base}/me/labs/apiv/progress"),
            Some(&bearer(&read)),
        )
        .await,
        403,
        "forbidden",
    )
    .await;

    // The `pglab token` commands.
    let config = env.settings().data_dir.join("pglab.yaml");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pglab"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("pglab token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let made = run(&[
        "token",
        "create",
        "cli token",
        "--owner",
        "ada",
        "--scope",
        "write",
        "--expires",
        "1d",
    ]);
    let secret = made
        .lines()
        .find(|l| l.starts_with("pglab_"))
        .expect("the token, once")
        .to_string();
    let listed = run(&["token", "list"]);
    assert!(
        listed.contains("cli token") && listed.contains("revoked") && !listed.contains(&secret),
        "{listed}"
    );
    assert_eq!(
        get(&format!("{base}/labs"), Some(&bearer(&secret)))
            .await
            .status()
            .as_u16(),
        200
    );
    let id = made.split_whitespace().nth(1).unwrap().to_string();
    run(&["token", "revoke", &id]);
    problem(
        get(&format!("{base}/labs"), Some(&bearer(&secret))).await,
        401,
        "revoked_token",
    )
    .await;

    // A lab master's tokens page: made (shown once), used, revoked.
    let mut master = crate::browser::Http::new(&format!("http://{}", env.settings().listen));
    master.login("ada", "ada-master-pw-1").await;
    let csrf = master.csrf("/tokens").await;
    let (status, page) = master
        .post(
            "/tokens",
            &[
                ("csrf", &csrf),
                ("name", "notebook"),
                ("scope", "read"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let web_secret = page
        .split("id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the token on the page")
        .to_string();
    assert!(web_secret.starts_with("pglab_"));
    assert_eq!(
        get(&format!("{base}/labs"), Some(&bearer(&web_secret)))
            .await
            .status()
            .as_u16(),
        200
    );
    let (_, page) = master.get("/tokens").await;
    assert!(
        page.contains("notebook") && !page.contains(&web_secret),
        "shown once"
    );
    let mine = store.tokens(Some("ada")).await.unwrap();
    let web_token = mine.iter().find(|t| t.name == "notebook").unwrap();
    let csrf = master.csrf("/tokens").await;
    let (status, _) = master
        .post(
            &format!("/tokens/{}/revoke", web_token.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 303);
    problem(
        get(&format!("{base}/labs"), Some(&bearer(&web_secret))).await,
        401,
        "revoked_token",
    )
    .await;
    let mut student = crate::browser::Http::new(&format!("http://{}", env.settings().listen));
    student.login("ann", &pw).await;
    assert_eq!(student.get("/tokens").await.0, 403, "not for students");

    // Rate limits: 40 a minute, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..60 {
        let r = get(&format!("{base}/labs"), Some(&bearer(&read))).await;
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited within 60 requests");
    assert!(r.headers().get("retry-after").is_some());
    problem(r, 429, "rate_limited").await;
    server.stop().await;
    env.stop().await;
}
