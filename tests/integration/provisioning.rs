//! A participant provisioned by `apply` works in their own database and
//! nowhere else; apply is idempotent; removal never drops without --prune.

use crate::support::{refusal, shop_lab, TestEnv};
use pglab::provision::Change;
use tokio::process::Command;

const PEOPLE: &str = "username,name,email,group\n\
    alice,Alice Archer,alice@example.org,\n\
    bob,Bob Baker,bob@example.org,\n\
    carol,Carol Cooper,carol@example.org,\n";

#[tokio::test]
async fn participant_works_in_own_database_only() {
    let env = TestEnv::start(1).await;
    let lab = shop_lab(&env, "shop");

    // plan changes nothing
    let plan = env.plan(&lab, PEOPLE, false).await.expect("plan");
    assert!(plan
        .changes
        .iter()
        .any(|c| matches!(c, Change::CreateDatabase { .. })));
    assert!(
        !env.database_exists(0, "shop_alice").await,
        "plan must not create anything"
    );

    let (plan, report) = env.apply(&lab, PEOPLE, false).await.expect("apply");
    assert_eq!(report.applied, plan.changes.len());

    let pw = env.password("alice").await;
    let alice = env
        .connect_as(0, "alice", &pw, "shop_alice")
        .await
        .expect("alice logs in with her LDAP password");
    alice
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             INSERT INTO notes VALUES (1, 'mine');
             UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%';
             ALTER TABLE shop.customers ADD COLUMN email text;
             DROP TABLE shop.orders;",
        )
        .await
        .expect("alice owns her database and the starter's tables");
    let owner: String = alice
        .query_one("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'shop' AND tablename = 'products'", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(owner, "alice");
    // Her tables are found without the schema name (`\dt` lists them).
    let path: String = alice
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .expect("search_path")
        .get(0);
    assert_eq!(path, "\"$user\", public, shop");
    alice
        .query_one("SELECT count(*) FROM products", &[])
        .await
        .expect("shop.products by its bare name");

    let wrong = env
        .connect_as(0, "alice", "not-her-password", "shop_alice")
        .await
        .expect_err("wrong password");
    assert!(
        refusal(&wrong).contains("LDAP authentication failed"),
        "{wrong}"
    );
    for db in [
        "shop_bob",
        "pglab.ref.shop",
        "pglab.tpl.shop",
        "postgres",
        "pglab",
        "template1",
    ] {
        let e = env.connect_as(0, "alice", &pw, db).await.expect_err(db);
        let msg = refusal(&e);
        assert!(
            msg.contains("permission denied")
                || msg.contains("not currently accepting connections"),
            "{db}: {msg}"
        );
    }

    // The password pglab set works with ldapwhoami.
    let dn = "uid=alice,ou=people,dc=pglab,dc=local";
    let url = format!("ldap://127.0.0.1:{}", env.ldap_port());
    let out = Command::new("ldapwhoami")
        .args(["-x", "-H", &url, "-D", dn, "-w", &pw])
        .output()
        .await
        .expect("ldapwhoami runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dn:{dn}")
    );

    // Second apply: nothing to do.
    let again = env.plan(&lab, PEOPLE, false).await.expect("plan");
    assert!(again.changes.is_empty(), "second plan: {again}");

    // Carol leaves the list: nothing is dropped without --prune.
    let two = "username,name,email\nalice,Alice Archer,alice@example.org\nbob,Bob Baker,bob@example.org\n";
    let (plan, report) = env.apply(&lab, two, false).await.expect("apply");
    assert_eq!(report.applied, 0, "{plan}");
    assert!(
        plan.notices.iter().any(|n| n.contains("shop_carol")),
        "{plan}"
    );
    assert!(env.database_exists(0, "shop_carol").await);
    let carol_pw = env.password("carol").await;
    env.connect_as(0, "carol", &carol_pw, "shop_carol")
        .await
        .expect("carol still logs in");

    // With --prune her database is dumped, then dropped.
    let (plan, report) = env.apply(&lab, two, true).await.expect("apply --prune");
    assert!(
        plan.changes
            .iter()
            .any(|c| matches!(c, Change::Prune { db, .. } if db.as_str() == "shop_carol")),
        "{plan}"
    );
    assert_eq!(report.dumps.len(), 1);
    assert!(
        std::fs::metadata(&report.dumps[0])
            .expect("dump written")
            .len()
            > 1000
    );
    assert!(!env.database_exists(0, "shop_carol").await);
    assert!(env
        .connect_as(0, "carol", &carol_pw, "shop_alice")
        .await
        .is_err());
    let after = env.plan(&lab, two, true).await.expect("plan");
    assert!(
        after.changes.is_empty() && after.notices.is_empty(),
        "{after}"
    );

    // Alice's work survived all of it.
    let alice = env
        .connect_as(0, "alice", &pw, "shop_alice")
        .await
        .expect("alice");
    let n: i64 = alice
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .expect("notes")
        .get(0);
    assert_eq!(n, 1);
    env.stop().await;
}

#[tokio::test]
async fn per_group_databases_are_shared_by_members_only() {
    let env = TestEnv::start(1).await;
    let lab_path = shop_lab(&env, "proj");
    let text = std::fs::read_to_string(&lab_path)
        .expect("read")
        .replace("per-participant", "per-group");
    let lab = env.write("lab/proj.yaml", &text);
    let people = "username,name,email,group\n\
        ann,Ann,ann@example.org,g1\n\
        ben,Ben,ben@example.org,g1\n\
        cat,Cat,cat@example.org,g2\n";
    env.apply(&lab, people, false).await.expect("apply");
    let (ann, ben, cat) = (
        env.password("ann").await,
        env.password("ben").await,
        env.password("cat").await,
    );
    let a = env
        .connect_as(0, "ann", &ann, "proj.g1")
        .await
        .expect("ann in g1");
    a.batch_execute("CREATE TABLE shared (x int); INSERT INTO shared VALUES (1); UPDATE shop.products SET stock = 1")
        .await
        .expect("group members own the group database");
    a.batch_execute("GRANT ALL ON shared TO \"proj.g1\"")
        .await
        .expect("grant to group");
    let b = env
        .connect_as(0, "ben", &ben, "proj.g1")
        .await
        .expect("ben in g1");
    b.batch_execute("UPDATE shop.products SET stock = 2")
        .await
        .expect("ben works on the starter tables");
    let e = env
        .connect_as(0, "cat", &cat, "proj.g1")
        .await
        .expect_err("cat is in g2");
    assert!(refusal(&e).contains("permission denied"));
    env.connect_as(0, "cat", &cat, "proj.g2")
        .await
        .expect("cat in g2");
    assert!(env
        .plan(&lab, people, false)
        .await
        .expect("plan")
        .changes
        .is_empty());

    let no_group = "username,name,email\nann,Ann,ann@example.org\n";
    let err = env
        .plan(&lab, no_group, false)
        .await
        .expect_err("needs groups");
    assert!(err.to_string().contains("has no group"), "{err}");

    // The control database holds the lab's files as applied: with the
    // folder gone, any pglab process builds from the same bytes.
    let id = pglab::ident::LabId::parse("proj").expect("id");
    let stored = env.store.lab_sources(&id).await.expect("sources");
    let on_disk = pglab::lab::LoadedLab::load(&lab)
        .expect("lab")
        .lab
        .read_sources()
        .expect("read");
    assert_eq!(stored, on_disk);
    assert_eq!(
        stored.iter().map(|f| f.role).collect::<Vec<_>>(),
        ["reference", "starter"]
    );
    std::fs::remove_dir_all(lab.parent().expect("folder")).expect("remove the lab's folder");
    let from_store = pglab::app::labs::stored_lab(env.settings(), &env.store, &id)
        .await
        .expect("read back")
        .expect("the lab");
    assert_eq!(from_store.lab.read_sources().expect("written"), stored);
    pglab::app::check_lab_loads(&env.settings().postgres[0], &from_store)
        .await
        .expect("the stored files build the lab");

    // One apply of a lab at a time, whoever starts it.
    let people = pglab::lab::Participants::parse("people", people).expect("csv");
    let plan = pglab::provision::plan(env.settings(), &env.store, from_store, people, false)
        .await
        .expect("plan");
    let held = env
        .store
        .lock_apply(&id)
        .await
        .expect("lock")
        .expect("free");
    assert!(env.store.lock_apply(&id).await.expect("lock").is_none());
    let refused = pglab::app::apply_lab(env.settings(), &env.store, &plan, |_, _| {})
        .await
        .err()
        .expect("refused while another apply runs")
        .to_string();
    assert!(refused.contains("being applied"), "{refused}");
    held.release().await;
    pglab::app::apply_lab(env.settings(), &env.store, &plan, |_, _| {})
        .await
        .expect("applies once the other apply ended");
    env.stop().await;
}
