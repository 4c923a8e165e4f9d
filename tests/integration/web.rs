//! The web app end to end in headless Chromium, on real slapd and Postgres:
//! lab master creates a lab, adds participants, applies, hands out
//! credentials; a student changes the password, connects with it, solves a
//! task, and the board shows it without a reload. Screenshots of every page
//! go to target/screenshots/web_e2e/.

use crate::browser::Browser;
use crate::support::{refusal, TestEnv};
use fantoccini::Locator;
use pglab::ident::Username;
use pglab::provision::ldap::Directory;
use std::time::Duration;

/// Adds an LDAP person with a password, optionally to a role group.
pub async fn add_person(env: &TestEnv, user: &str, password: &str, group: Option<&str>) {
    let user = Username::parse(user).expect("username");
    let mut dir = Directory::connect(&env.settings().ldap)
        .await
        .expect("ldap");
    dir.add_person(&user, "Ada Lovelace", "ada@example.org")
        .await
        .expect("add person");
    dir.set_password(&user, password).await.expect("password");
    if let Some(g) = group {
        dir.add_member(g, &user).await.expect("group");
    }
    dir.close().await;
}

const BROKEN_YAML: &str = "id: web\ntitle: Broken\nreference: {sql: reference.sql}\ntasks:\n  - id: one\n    title: One\n    pointz: 3\n    checks:\n      - table: shop.products\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lab_master_to_student_to_live_board_in_chromium() {
    let mut env = TestEnv::start(1).await;
    env.stack.settings.scoring.interval_secs = 1;
    add_person(&env, "ada", "ada-master-pw-1", Some("labmasters")).await;
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let b = Browser::start(&base, "web_e2e").await;

    // Lab master logs in (LDAP group labmasters); pages need a login first.
    b.goto("/labs").await;
    assert!(b.path().await.starts_with("/login"), "{}", b.path().await);
    b.shot("01-login").await;
    b.login("ada", "ada-master-pw-1").await;
    assert_eq!(b.path().await, "/labs");
    b.shot("02-labs-empty").await;

    // Create a lab: a broken file first shows the error at its line.
    b.click("a[href='/labs/new']").await;
    b.set_value("#yaml", BROKEN_YAML).await;
    b.click("form.stack button[type=submit]").await;
    let errors = b.text(".listing").await;
    assert!(
        errors.contains("line 7") && errors.contains("pointz"),
        "{errors}"
    );
    b.shot("03-lab-errors").await;
    let dir = env.dir.path().join("upload");
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, text) in [
        (
            "reference.sql",
            include_str!("../../src/demo/reference.sql"),
        ),
        ("starter.sql", include_str!("../../src/demo/starter.sql")),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let yaml = include_str!("../../src/demo/lab.yaml").replace("id: demo", "id: web");
    b.set_value("#yaml", &yaml).await;
    let files = format!(
        "{}\n{}",
        dir.join("reference.sql").display(),
        dir.join("starter.sql").display()
    );
    let choose = || async {
        b.client
            .find(Locator::Css("#files"))
            .await
            .expect("file input")
            .send_keys(&files)
            .await
            .expect("choose files");
    };
    // "Check only": the mutation report of the lab's view and query
    // checks; nothing is saved.
    choose().await;
    b.click("button[value=report]").await;
    let report = b.text("#mutation-report").await;
    assert!(
        report.contains("Mutation report of lab web")
            && report.contains("not saved")
            && report.contains("survives"),
        "{report}"
    );
    b.shot("03b-mutation-report").await;
    choose().await;
    b.click("button[value=save]").await;
    assert_eq!(
        b.path().await,
        "/labs/web",
        "{}",
        b.client.source().await.unwrap_or_default()
    );
    b.shot("04-lab").await;

    // Participants: one typed row, the rest pasted; a hostile display name.
    b.click("a[href='/labs/web/participants']").await;
    b.fill("input[name=username]", "alice").await;
    b.fill("input[name=name]", "Alice Liddell").await;
    b.fill("input[name=email]", "alice@example.org").await;
    b.set_value(
        "#csv",
        "username,name,email,group\nbob,<script>alert(1)</script>,bob@example.org,\ncarol,Carol O'Neil,carol@example.org,",
    )
    .await;
    b.shot("05-participants").await;
    b.click("form.stack button[type=submit]").await;
    let plan = b.text("main").await;
    assert!(
        plan.contains("3 participants") && plan.contains("changes"),
        "{plan}"
    );
    assert!(plan.contains("Nothing has changed yet"), "{plan}");
    b.shot("06-plan").await;
    b.click("main form button[type=submit]").await;
    let state = b
        .wait_text("#job-state", "succeeded", Duration::from_secs(120))
        .await;
    assert_eq!(state, "succeeded", "{}", b.text("main").await);
    b.shot("07-apply-done").await;

    // Credentials: one slip per participant; the script stays text.
    b.goto("/labs/web/credentials").await;
    let initial = b.text("#slip-alice .password").await;
    assert_eq!(initial.len(), 19, "{initial}");
    assert!(b
        .text("#slip-bob")
        .await
        .contains("<script>alert(1)</script>"));
    b.shot("08-credentials").await;
    b.logout().await;

    // The student logs in with the initial password and changes it.
    b.login("alice", &initial).await;
    assert_eq!(b.path().await, "/me");
    let me = b.text("main").await;
    assert!(me.contains("web_alice") && me.contains("psql -h"), "{me}");
    // Each task with its description; where the tables are; once checked,
    // what the failing check found and the lab's hint.
    assert!(
        me.contains("Set the stock of every product") && me.contains("\\dt shop.*"),
        "{me}"
    );
    let hint = b
        .wait_text("#task-restock .hint", "LIKE", Duration::from_secs(30))
        .await;
    assert!(hint.contains("case-sensitive"), "{hint}");
    assert!(b
        .text("#task-restock .reason")
        .await
        .contains("condition is false"));
    b.shot("09-student").await;
    let new_password = "tea-pots-are-20";
    b.fill("#current", &initial).await;
    b.fill("#new", new_password).await;
    b.fill("#confirm", new_password).await;
    b.click("form[action='/me/password'] button").await;
    // Sent, redirected, shown: a refresh shows the page again, no resend.
    assert!(b.path().await.starts_with("/me?done=password"));
    assert!(b.text("p.ok").await.contains("password was changed"));
    b.shot("10-password-changed").await;

    // psql-like client: the new password works, the old one no longer.
    let old = env.connect_as(0, "alice", &initial, "web_alice").await;
    assert!(old.is_err(), "old password still works");
    let alice = env
        .connect_as(0, "alice", new_password, "web_alice")
        .await
        .unwrap_or_else(|e| panic!("new password refused: {}", refusal(&e)));
    b.logout().await;

    // The lab master watches the board; the student solves a task meanwhile.
    b.login("ada", "ada-master-pw-1").await;
    b.goto("/labs/web/board").await;
    let cell = "table.grid tbody tr:first-child td.cell:nth-of-type(3)";
    assert_eq!(b.text("table.grid tbody tr:first-child th").await, "alice");
    let before = b.wait_text(cell, "✗", Duration::from_secs(20)).await;
    assert!(before.contains('✗'), "restock before: {before}");
    b.client
        .execute("window.pglabMarker = 42;", vec![])
        .await
        .expect("marker");
    b.shot("11-board-before").await;
    alice
        .batch_execute("UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%'")
        .await
        .expect("solve restock");
    let after = b.wait_text(cell, "✓", Duration::from_secs(30)).await;
    assert!(after.contains('✓'), "restock after: {after}");
    let marker = b
        .client
        .execute("return window.pglabMarker;", vec![])
        .await
        .expect("marker");
    assert_eq!(marker, serde_json::json!(42), "the board page was reloaded");
    b.shot("12-board-live").await;

    // A participant's page from the board; the board at a laptop's and a
    // projector's width (pseudonyms there unless names are asked for).
    let link = b
        .client
        .find(fantoccini::Locator::Css(
            "table.grid tbody tr:first-child th a",
        ))
        .await
        .expect("a row links to its participant")
        .attr("href")
        .await
        .expect("href");
    assert_eq!(link.as_deref(), Some("/labs/web/people/alice"));
    b.goto("/labs/web/people/alice").await;
    let page = b.text("main").await;
    assert!(
        page.contains("Needs help")
            && page.contains("Restock the teapots")
            && page.contains("passed"),
        "{page}"
    );
    b.shot("12a-participant").await;
    b.goto("/labs/web/analytics").await;
    let analytics = b.text("main").await;
    assert!(
        analytics.contains("Restock the teapots") && analytics.contains("Without progress"),
        "{analytics}"
    );
    b.shot("12r-analytics").await;
    b.client.set_window_size(1366, 768).await.expect("laptop");
    b.goto("/labs/web/board").await;
    b.shot("12p-board-laptop").await;
    b.client
        .set_window_size(1920, 1080)
        .await
        .expect("projector");
    b.goto("/labs/web/board?projector=true").await;
    let projected = b.text("table.grid").await;
    assert!(
        !projected.contains("alice") && projected.contains("p-"),
        "{projected}"
    );
    b.shot("12q-board-projector-1920").await;
    b.goto("/labs/web/board?projector=true&names=true").await;
    assert!(b.text("table.grid").await.contains("alice"));
    b.client.set_window_size(1280, 900).await.expect("back");
    // The projector view hides the header (and its log-out button).
    b.goto("/labs/web/board").await;

    // The student's page follows the rounds as well: a task solved in psql
    // shows as passed, and is announced, without a reload.
    b.logout().await;
    b.login("alice", new_password).await;
    b.wait_text(
        "#task-restock .task-state",
        "passed",
        Duration::from_secs(10),
    )
    .await;
    b.client
        .execute("window.pglabMarker = 43;", vec![])
        .await
        .expect("marker");
    alice
        .batch_execute(
            "CREATE TABLE shop.reviews (review_id serial PRIMARY KEY, \
             product_id integer NOT NULL REFERENCES shop.products, \
             stars integer NOT NULL CHECK (stars BETWEEN 1 AND 5), body text)",
        )
        .await
        .expect("solve reviews-table");
    // The announcement is for screen readers (visually hidden): read it
    // from the page.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let announced = loop {
        let text = b
            .client
            .execute(
                "return document.getElementById('announce-web').textContent;",
                vec![],
            )
            .await
            .expect("announcement");
        let text = text.as_str().unwrap_or_default().to_string();
        if text.contains("Passed") || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        announced.contains("Create the reviews table"),
        "{announced}"
    );
    assert!(b
        .text("#task-reviews-table .task-state")
        .await
        .contains("passed"));
    let marker = b
        .client
        .execute("return window.pglabMarker;", vec![])
        .await
        .expect("marker");
    assert_eq!(
        marker,
        serde_json::json!(43),
        "the student page was reloaded"
    );
    b.shot("12b-student-live").await;
    // psql, in the same session: the same as the page.
    let in_psql: String = alice
        .query_one(
            "SELECT state FROM pglab.progress WHERE task = 'reviews-table'",
            &[],
        )
        .await
        .expect("pglab.progress in psql")
        .get(0);
    assert_eq!(in_psql, "passed");
    // A bookmark of the form's address is not a blank 405.
    b.goto("/me/password").await;
    assert_eq!(b.path().await, "/me");

    // Back to the starter from the page: the old content is dumped for the
    // lab master, the starter's tables are back, the session was ended.
    drop(alice);
    for css in [
        "details.reset summary",
        "form[action='/me/labs/web/reset'] button",
    ] {
        b.client
            .find(fantoccini::Locator::Css(css))
            .await
            .expect(css)
            .click()
            .await
            .expect("click");
    }
    b.client.accept_alert().await.expect("confirm the reset");
    b.wait_text("p.ok", "being reset", Duration::from_secs(20))
        .await;
    assert!(b.path().await.starts_with("/me?done=reset"));
    assert!(b.text("p.ok").await.contains("being reset"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = env.connect_as(0, "alice", new_password, "web_alice").await {
            let back: bool = c
                .query_one(
                    "SELECT to_regclass('shop.reviews') IS NULL AND (SELECT bool_and(stock <> 20) FROM shop.products WHERE name LIKE '%Teapot%')",
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(false);
            if back {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reset did not happen"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let dumps = std::fs::read_dir(env.settings().data_dir.join("reset/web"))
        .expect("reset dumps")
        .count();
    assert_eq!(dumps, 1);
    b.shot("12c-student-after-reset").await;

    // Public board: pseudonyms, no login; projector and phone sizes.
    b.logout().await;
    b.goto("/public/labs/web/board?projector=true").await;
    let public = b.text("table.grid").await;
    assert!(
        !public.contains("alice") && public.contains("p-"),
        "{public}"
    );
    b.shot("13-public-board-projector").await;
    b.client
        .set_window_size(390, 844)
        .await
        .expect("phone size");
    b.goto("/public/labs/web/board").await;
    b.shot("14-public-board-phone").await;
    // Only the grid scrolls sideways on a phone, never the page.
    assert!(b.fits_width().await, "board page wider than a phone");
    b.login("alice", new_password).await;
    assert_eq!(b.path().await, "/me");
    b.shot("15-student-phone").await;
    assert!(b.fits_width().await, "student page wider than a phone");
    b.goto("/nowhere").await;
    assert!(b.text("main").await.contains("does not exist"));
    b.shot("16-not-found").await;

    b.close().await;
    server.stop().await;
    env.stop().await;
}
