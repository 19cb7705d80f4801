//! Hardening case 7 against the real binary: a node with `[auth]` tokens refuses an anonymous
//! `DELETE /cluster/members/4`; the Rust client and the CLI send a token (`token(..)`,
//! `--token`/`PERDURE_TOKEN`) and get what its role allows.

mod common;

use common::{run_with_url, stderr, BIN};
use perdure_harness::{Node, NodeSpec, StartOptions};
use perdure_types::config::{Role, TokenConfig};
use std::time::Duration;

const READ: &str = "reader-token-0123456789";
const WRITE: &str = "writer-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_send_tokens_and_get_what_their_role_allows() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 4;
    let t = |name: &str, token: &str, role| TokenConfig {
        name: name.into(),
        token: token.into(),
        role,
    };
    config.auth.tokens = vec![
        t("reader", READ, Role::Read),
        t("writer", WRITE, Role::Write),
        t("ops", ADMIN, Role::Admin),
    ];
    spec.write_config(&config).unwrap();
    let mut node = Node::new(spec.clone(), BIN);
    node.start(&StartOptions::default()).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = spec.url();

    // the Rust client
    let anonymous = perdure_client::Client::builder(&url)
        .attempts(1)
        .build()
        .unwrap();
    let e = anonymous
        .signal("counter", "a", "add", Some(1.into()))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(401), Some("unauthorized")),
        "{e}"
    );
    let reader = perdure_client::Client::builder(&url)
        .token(READ)
        .build()
        .unwrap();
    let e = reader
        .signal("counter", "a", "add", Some(1.into()))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    let writer = perdure_client::Client::builder(&url)
        .token(WRITE)
        .build()
        .unwrap();
    writer
        .signal("counter", "a", "add", Some(5.into()))
        .await
        .unwrap();
    assert_eq!(
        reader.get("counter", "a").await.unwrap(),
        Some(serde_json::json!(5))
    );

    // the CLI: an anonymous member removal is refused; admin reaches the membership check
    let out = run_with_url(&url, &["cluster", "remove", "4"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let out = run_with_url(&url, &["cluster", "remove", "4", "--token", WRITE]);
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));
    let out = std::process::Command::new(BIN)
        .args(["cluster", "remove", "4", "--url", &url])
        .env("PERDURE_TOKEN", ADMIN)
        .env("PERDURE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("membership_change_refused") || stderr(&out).contains("409"),
        "{}",
        stderr(&out)
    );
    let out = run_with_url(&url, &["get", "counter/a", "--token", READ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
