//! What the web app refuses: forms without a CSRF token, pages of another
//! role, script in participant names, old passwords, password guessing,
//! forged cookies.

use crate::browser::Http;
use crate::support::{shop_lab, TestEnv};
use crate::web::add_person;

const PEOPLE: &str = "username,name,email,group\n\
    alice,Alice Archer,alice@example.org,\n\
    bob,<script>alert(1)</script>,bob@example.org,\n";

const SCRIPT: &str = "<script>alert(1)</script>";
const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

fn escaped_only(page: &str, what: &str) {
    assert!(!page.contains(SCRIPT), "{what}: raw script in the page");
    assert!(
        page.contains(ESCAPED) || page.contains("&lt;script&gt;"),
        "{what}: the name is not shown at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_csrf_escaping_passwords_and_rate_limit() {
    let mut env = TestEnv::start(1).await;
    let lab = shop_lab(&env, "sec");
    let yaml = std::fs::read_to_string(&lab).expect("lab");
    std::fs::write(
        &lab,
        yaml.replace("public_board: true", "public_board: false"),
    )
    .expect("lab");
    env.apply(&lab, PEOPLE, false).await.expect("apply");
    add_person(&env, "ada", "ada-master-pw-1", Some("labmasters")).await;
    add_person(&env, "tina", "tina-staff-pw-1", Some("labstaff")).await;
    add_person(&env, "eve", "eve-nobody-pw-1", None).await;
    let server = env.serve().await;
    let base = format!("http://{}", env.settings().listen);
    let alice_pw = env.password("alice").await;

    // Without a login every page sends the browser to the login form.
    let mut anon = Http::new(&base);
    for page in ["/labs", "/labs/sec/credentials", "/me", "/labs/sec/board"] {
        let (status, location) = anon.get(page).await;
        assert_eq!(status, 303, "{page}");
        let _ = location;
    }
    // The lab does not allow a public board.
    assert_eq!(anon.get("/public/labs/sec/board").await.0, 404);
    // A login form without its token is refused, as is a session cookie
    // someone edited.
    let (status, _) = anon
        .post(
            "/login",
            &[("username", "ada"), ("password", "ada-master-pw-1")],
        )
        .await;
    assert_eq!(status, 403);
    anon.cookies
        .push(("pglab_session".into(), "eyJ1c2VyIjoiYWRhIn0.AAAA".into()));
    assert_eq!(anon.get("/labs").await.0, 303);
    // An LDAP person in no lab and no group gets no session; nor does an
    // empty password (an anonymous bind in LDAP terms).
    let mut eve = Http::new(&base);
    let (status, page) = eve.login("eve", "eve-nobody-pw-1").await;
    assert_eq!(status, 401);
    assert!(page.contains("no lab"), "{page}");
    assert_eq!(eve.login("alice", "").await.0, 401);

    // Session cookie flags.
    let mut ada = Http::new(&base);
    let r = ada
        .client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    let set = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert_eq!(
        ada.login("ada", "ada-master-pw-1").await,
        (303, "/labs".to_string())
    );

    // CSRF: the same lab master's form without or with a wrong token.
    let plan_form = [("csv", "dave,Dave,dave@example.org,")];
    let (status, _) = ada.post("/labs/sec/participants/plan", &plan_form).await;
    assert_eq!(status, 403);
    let (status, _) = ada
        .post(
            "/labs/sec/participants/plan",
            &[("csv", "dave,Dave,dave@example.org,"), ("csrf", "forged")],
        )
        .await;
    assert_eq!(status, 403);
    let token = ada.csrf("/labs/sec/participants").await;
    let (status, plan) = ada
        .post(
            "/labs/sec/participants/plan",
            &[("csv", "dave,Dave,dave@example.org,"), ("csrf", &token)],
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert!(plan.contains("dave"));
    // A username with script is rejected, and the error shows it escaped.
    let (status, page) = ada
        .post(
            "/labs/sec/participants/plan",
            &[
                ("csv", &format!("{SCRIPT},X,x@example.org,")),
                ("csrf", &token),
            ],
        )
        .await;
    assert_eq!(status, 422);
    escaped_only(&page, "rejected username");
    // The display name with script is shown escaped everywhere.
    for page in [
        "/labs/sec/participants",
        "/labs/sec/credentials",
        "/labs/sec/board",
    ] {
        let (status, html) = ada.get(page).await;
        assert_eq!(status, 200, "{page}");
        if page != "/labs/sec/board" {
            escaped_only(&html, page);
        }
    }
    let (_, csv) = ada.get("/labs/sec/credentials.csv").await;
    assert!(csv.contains(&alice_pw), "CSV has the initial passwords");
    // Logout needs the token too.
    assert_eq!(ada.post("/logout", &[]).await.0, 403);

    // Staff: read-only pages.
    let mut tina = Http::new(&base);
    assert_eq!(tina.login("tina", "tina-staff-pw-1").await.0, 303);
    assert_eq!(tina.get("/labs").await.0, 200);
    assert_eq!(tina.get("/labs/sec/board").await.0, 200);
    assert_eq!(tina.get("/labs/sec/credentials").await.0, 403);
    assert_eq!(tina.get("/labs/sec/credentials.csv").await.0, 403);
    assert_eq!(tina.get("/labs/sec/participants").await.0, 403);
    let staff_token = tina.csrf("/labs").await;
    let (status, _) = tina
        .post(
            "/labs/sec/participants/plan",
            &[
                ("csv", "dave,Dave,dave@example.org,"),
                ("csrf", &staff_token),
            ],
        )
        .await;
    assert_eq!(status, 403);

    // Student: only their own page.
    let mut alice = Http::new(&base);
    assert_eq!(
        alice.login("alice", &alice_pw).await,
        (303, "/me".to_string())
    );
    let (status, me) = alice.get("/me").await;
    assert_eq!(status, 200);
    assert!(me.contains("sec_alice") && !me.contains("sec_bob"));
    for page in [
        "/labs",
        "/labs/sec",
        "/labs/sec/credentials",
        "/labs/sec/credentials.csv",
        "/labs/sec/participants",
        "/labs/sec/board",
        "/labs/sec/board/grid",
    ] {
        let (status, body) = alice.get(page).await;
        assert_eq!(status, 403, "{page}");
        assert!(
            !body.contains(&alice_pw) && !body.contains("sec_bob"),
            "{page}"
        );
    }
    let token = alice.csrf("/me").await;
    let (status, _) = alice
        .post("/labs/sec/participants/bob/reset", &[("csrf", &token)])
        .await;
    assert_eq!(status, 403);

    // Password change: wrong current, too short, then right.
    let new_pw = "a-much-longer-secret";
    let change = |current: &str, new: &str| {
        vec![
            ("csrf".to_string(), token.clone()),
            ("current".to_string(), current.to_string()),
            ("new".to_string(), new.to_string()),
            ("confirm".to_string(), new.to_string()),
        ]
    };
    let (_, page) = alice
        .post_owned("/me/password", &change("wrong-password", new_pw))
        .await;
    assert!(page.contains("current password is wrong"), "{page}");
    let (_, page) = alice
        .post_owned("/me/password", &change(&alice_pw, "short"))
        .await;
    assert!(page.contains("at least 10 characters"), "{page}");
    let (status, _) = alice
        .post(
            "/me/password",
            &[("current", &alice_pw), ("new", new_pw), ("confirm", new_pw)],
        )
        .await;
    assert_eq!(status, 403, "password change without CSRF token");
    let (status, location) = alice
        .post_owned("/me/password", &change(&alice_pw, new_pw))
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/me?done=password#password")
    );
    let (_, page) = alice.get("/me?done=password").await;
    assert!(page.contains("password was changed"), "{page}");
    // The old password stops working: web, LDAP (psql) alike.
    let mut again = Http::new(&base);
    assert_eq!(again.login("alice", &alice_pw).await.0, 401);
    assert!(env
        .connect_as(0, "alice", &alice_pw, "sec_alice")
        .await
        .is_err());
    assert!(env
        .connect_as(0, "alice", new_pw, "sec_alice")
        .await
        .is_ok());
    assert_eq!(again.login("alice", new_pw).await.0, 303);
    // pglab no longer keeps (nor shows) the initial password.
    let (_, creds) = ada.get("/labs/sec/credentials").await;
    assert!(!creds.contains(&alice_pw));

    // The lab master resets bob's password: the old one stops working.
    let bob_old = env.password("bob").await;
    let token = ada.csrf("/labs/sec/credentials").await;
    let (status, location) = ada
        .post("/labs/sec/participants/bob/reset", &[("csrf", &token)])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/labs/sec/credentials#slip-bob")
    );
    let bob_new = env.password("bob").await;
    assert_ne!(bob_old, bob_new);
    assert!(ada.get("/labs/sec/credentials").await.1.contains(&bob_new));
    assert!(env.connect_as(0, "bob", &bob_old, "sec_bob").await.is_err());
    assert!(env.connect_as(0, "bob", &bob_new, "sec_bob").await.is_ok());
    // Nobody outside the lab can be reset through it.
    assert_eq!(
        ada.post("/labs/sec/participants/ada/reset", &[("csrf", &token)])
            .await
            .0,
        404
    );

    // A second replica: the lab master's session and form tokens work
    // there too.
    let (replica, base2) = env.replica().await;
    let mut ada2 = Http::new(&base2);
    ada2.cookies = ada.cookies.clone();
    assert_eq!(ada2.get("/labs/sec/credentials").await.0, 200);
    let token = ada.csrf("/labs/sec/credentials").await;
    let (status, _) = ada2
        .post("/labs/sec/participants/bob/reset", &[("csrf", &token)])
        .await;
    assert_eq!(status, 303, "a form of one replica is taken by the other");

    // Guessing: after 5 failures even the right password waits, whichever
    // replica the guesses reach (here: in parallel, spread over both).
    let guesses = (0..12).map(|i| {
        let base = if i % 2 == 0 {
            base.clone()
        } else {
            base2.clone()
        };
        tokio::spawn(async move { Http::new(&base).login("bob", &format!("guess-{i}")).await.0 })
    });
    let mut statuses = vec![];
    for g in guesses {
        statuses.push(g.await.expect("guess"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    let bob_pw = env.password("bob").await;
    for base in [&base, &base2] {
        let (status, page) = Http::new(base).login("bob", &bob_pw).await;
        assert_eq!(status, 429, "{page}");
        assert!(page.contains("Too many failed logins"));
    }

    replica.stop().await;
    ldap_down(&mut env, &lab, &base).await;
    server.stop().await;
    env.stop().await;
}

/// What `/healthz` says of LDAP.
async fn ldap_health(base: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.expect("json");
    (
        status,
        body["ldap"].as_str().unwrap_or_default().to_string(),
    )
}

/// slapd stops during a class: students cannot log in (psql, the web
/// app, with a clear message), `/healthz` (still 200) and the board say
/// that LDAP is down, the bootstrap admin still logs in; all comes back
/// when slapd does.
async fn ldap_down(env: &mut TestEnv, lab: &std::path::Path, base: &str) {
    env.apply(lab, &format!("{PEOPLE}zoe,Zoe,zoe@example.org,\n"), false)
        .await
        .expect("zoe joins");
    let zoe_pw = env.password("zoe").await;
    env.stack.stop_ldap().await;
    assert!(env.connect_as(0, "zoe", &zoe_pw, "sec_zoe").await.is_err());
    let since = std::time::Instant::now();
    while !ldap_health(base).await.1.starts_with("down") {
        assert!(since.elapsed().as_secs() < 40, "LDAP never reported down");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(ldap_health(base).await.0, 200, "the replica still serves");
    let web = &env.settings().web;
    let mut admin = Http::new(base);
    assert_eq!(
        admin
            .login(&web.admin_user, web.admin_password.expose())
            .await
            .0,
        303
    );
    let (_, board) = admin.get("/labs/sec/board").await;
    assert!(
        board.contains("The LDAP directory does not answer"),
        "{board}"
    );
    let (status, page) = Http::new(base).login("zoe", &zoe_pw).await;
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("LDAP directory that holds the passwords does not answer"));
    env.stack.start_ldap().await.expect("slapd again");
    let since = std::time::Instant::now();
    while ldap_health(base).await.1 != "ok" {
        assert!(since.elapsed().as_secs() < 40, "LDAP never reported back");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    env.connect_as(0, "zoe", &zoe_pw, "sec_zoe")
        .await
        .expect("zoe logs in to psql again");
    assert!(!admin
        .get("/labs/sec/board")
        .await
        .1
        .contains("The LDAP directory does not answer"));
    assert_eq!(Http::new(base).login("zoe", &zoe_pw).await.0, 303);
}
