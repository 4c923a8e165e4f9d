//! What every benchmark program starts with: the local stack of `pglab up`
//! in a temporary folder, on free ports, and its control store.

#![allow(dead_code)] // each benchmark uses a part

use pglab::control::Store;
use pglab::stack::{process::free_port, LocalStack, StackOptions};
use std::time::Duration;

#[path = "../../tests/common/clubdata.rs"]
pub mod clubdata;

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub stack: LocalStack,
    pub store: Store,
}

impl Bench {
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pglab-bench-")
            .tempdir()
            .expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt;
            // The servers run as postgres / openldap when run as root.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let opts = StackOptions {
            data_dir: dir.path().join("data"),
            pg_port: free_port(),
            pg_servers: 1,
            ldap_port: free_port(),
            http_port: free_port(),
            prometheus_port: None,
            scrape_interval: Duration::from_secs(10),
        };
        let stack = LocalStack::start(&opts).await.expect("stack");
        let store = Store::open_migrated(&stack.settings).await.expect("store");
        Self { dir, stack, store }
    }

    pub async fn stop(self) {
        drop(self.store);
        self.stack.stop().await;
    }
}

/// `username,name,email` with `n` participants `<prefix>0..`.
pub fn participants_csv(prefix: &str, n: usize) -> String {
    std::iter::once("username,name,email".to_string())
        .chain((0..n).map(|i| format!("{prefix}{i},Student {i},{prefix}{i}@example.org")))
        .collect::<Vec<_>>()
        .join("\n")
}
