//! Several Postgres servers: participants are spread over them, each
//! placement is recorded and stays put.

use crate::support::{shop_lab, TestEnv};

#[tokio::test]
async fn participants_spread_over_two_servers_and_stay() {
    let env = TestEnv::start(2).await;
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
    env.stop().await;
}
