//! Several Postgres servers: participants are spread over them, each
//! placement is recorded and stays put.

use crate::support::{shop_lab, TestEnv};

#[tokio::test]
async fn participants_spread_over_two_servers_and_stay() {
    let mut env = TestEnv::start(2).await;
    let lab = shop_lab(&env, "multi");
    let people: String = std::iter::once("username,name,email".to_string())
        .chain((1..=6).map(|i| format!("s{i},Student {i},s{i}@example.org")))
        .collect::<Vec<_>>()
        .join("\n");
    let (plan, _) = env.apply(&lab, &people, false).await.expect("apply");
    let on = |server: &str| {
        plan.placements
            .iter()
            .filter(|p| p.server == server)
            .count()
    };
    assert_eq!(
        (on("main"), on("node2")),
        (3, 3),
        "placements: {:?}",
        plan.placements
    );

    let recorded = env
        .store
        .databases(&pglab::ident::LabId::parse("multi").expect("id"))
        .await
        .expect("records");
    assert_eq!(recorded.len(), 6);
    for p in &plan.placements {
        let idx = if p.server == "main" { 0 } else { 1 };
        let other = 1 - idx;
        let user = p.members[0].as_str();
        let pw = env.password(user).await;
        let c = env
            .connect_as(idx, user, &pw, p.db.as_str())
            .await
            .expect("student reaches their server");
        c.batch_execute("CREATE TABLE t (x int)")
            .await
            .expect("works");
        assert!(
            !env.database_exists(other, p.db.as_str()).await,
            "database only on its own server"
        );
    }

    // A seventh participant joins: the old ones stay where they are.
    let more = format!("{people}\ns7,Student 7,s7@example.org\n");
    let (plan2, _) = env.apply(&lab, &more, false).await.expect("apply");
    for p in &plan.placements {
        let again = plan2
            .placements
            .iter()
            .find(|q| q.db == p.db)
            .expect("still placed");
        assert_eq!(again.server, p.server, "placement of {} moved", p.db);
    }
    assert!(env
        .plan(&lab, &more, false)
        .await
        .expect("plan")
        .changes
        .is_empty());
    one_server_down(&mut env, &lab, &plan, &more).await;
    env.stop().await;
}

/// A server stops during a class: only its participants are affected
/// (marked, their last scores kept), the control database records it, new
/// participants go elsewhere, and all comes back by itself.
async fn one_server_down(
    env: &mut TestEnv,
    lab: &std::path::Path,
    plan: &pglab::provision::Plan,
    people: &str,
) {
    let mut scorer = env.scorer();
    for _ in 0..2 {
        scorer.round().await;
    }
    let on_node2: Vec<String> = plan
        .placements
        .iter()
        .filter(|p| p.server == "node2")
        .map(|p| p.members[0].to_string())
        .collect();
    let board = |scorer: &crate::support::Scorer| {
        let snap = scorer.board.get();
        let l = snap.labs.iter().find(|l| l.id == "multi").expect("lab");
        l.participants
            .iter()
            .map(|p| {
                (
                    p.username.clone(),
                    (p.server_down, p.tasks.is_some(), p.error.clone()),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    env.stack.stop_server(1).await;
    scorer.round().await;
    for (user, (down, scored, error)) in board(&scorer) {
        let expected = on_node2.contains(&user);
        assert_eq!(down, expected, "{user}: {error:?}");
        assert!(scored, "{user}: the last scores are kept");
        if expected {
            assert!(error.unwrap_or_default().contains("node2"), "{user}");
        } else {
            assert_eq!(error, None, "{user} is not affected");
        }
    }
    let health = env.store.server_health().await.expect("health");
    let node2 = health
        .iter()
        .find(|h| h.server.as_str() == "node2")
        .expect("recorded");
    assert!(!node2.up && node2.error.is_some(), "{node2:?}");
    assert!(health.iter().any(|h| h.server.as_str() == "main" && h.up));
    // A lab with databases there cannot be planned (with a clear message);
    // a new lab's participants all go to the server that is up.
    let more = format!("{people}s8,Student 8,s8@example.org\n");
    let e = env
        .plan(lab, &more, false)
        .await
        .expect_err("node2 is down");
    assert!(e.to_string().contains("server node2"), "{e}");
    let other = shop_lab(env, "other");
    let (planned, _) = env
        .apply(
            &other,
            "username,name,email\no1,O,o1@example.org\no2,P,o2@example.org\n",
            false,
        )
        .await
        .expect("apply on the server that is up");
    assert!(
        planned.placements.iter().all(|p| p.server == "main"),
        "{:?}",
        planned.placements
    );
    // Back: marked up, scored again, without a restart of pglab.
    env.stack.start_server(1).await.expect("restart node2");
    scorer.round().await;
    for (user, (down, scored, error)) in board(&scorer) {
        assert!(!down && scored && error.is_none(), "{user}: {error:?}");
    }
    let health = env.store.server_health().await.expect("health");
    assert!(health.iter().all(|h| h.up), "{health:?}");
}
