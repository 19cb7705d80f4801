//! Who may do what on the HTTP port (Hardening case 7), in process: with `[auth]` tokens, an
//! anonymous membership change is refused 401 and roles are enforced (403); without tokens, a
//! foreign `Host` (DNS rebinding) and a cross-site state-changing request are refused 403 while
//! the dashboard's same-origin calls and plain clients still work.

mod common;

use common::{code, json, test_config, Node, BASE};
use perdure_types::config::{Role, TokenConfig};

const READ: &str = "reader-token-0123456789";
const WRITE: &str = "writer-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

async fn with_tokens() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    let t = |name: &str, token: &str, role| TokenConfig {
        name: name.into(),
        token: token.into(),
        role,
    };
    c.auth.tokens = vec![
        t("reader", READ, Role::Read),
        t("writer", WRITE, Role::Write),
        t("ops", ADMIN, Role::Admin),
    ];
    (Node::start_with(c).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_an_anonymous_client_can_change_nothing() {
    let (node, _dir) = with_tokens().await;
    let h = &node.http;
    let member = format!("{}/cluster/members/4", node.url);
    // the case: an anonymous DELETE of a member, with a foreign Host
    let (s, headers, body) = json(h.delete(&member).header("host", "attacker.example")).await;
    assert_eq!((s.as_u16(), code(&body)), (401, "unauthorized"));
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (s, _, body) = json(h.delete(&member).bearer_auth("not-a-token-of-ours")).await;
    assert_eq!((s.as_u16(), code(&body)), (401, "unauthorized"));
    // a role too low
    let (s, _, body) = json(h.delete(&member).bearer_auth(WRITE)).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "forbidden"));
    // admin gets through to the handler (a single node has no member 4 to remove)
    let (s, _, body) = json(h.delete(&member).bearer_auth(ADMIN)).await;
    assert_eq!(
        (s.as_u16(), code(&body)),
        (409, "membership_change_refused")
    );

    let signal = node.api("/entities/counter/a?op=add");
    let (s, _, _) = json(h.post(&signal).body("1")).await;
    assert_eq!(s, 401);
    let (s, _, body) = json(h.post(&signal).bearer_auth(READ).body("1")).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "forbidden"));
    let (s, _, _) = json(h.post(&signal).bearer_auth(WRITE).body("1")).await;
    assert_eq!(s, 202);
    // Durable Functions clients: x-functions-key and ?code=
    let (s, _, _) = json(h.post(&signal).header("x-functions-key", WRITE).body("1")).await;
    assert_eq!(s, 202);
    let (s, _, body) = json(
        h.get(node.api("/entities/counter/a"))
            .query(&[("code", READ)]),
    )
    .await;
    assert_eq!((s.as_u16(), body), (200, serde_json::json!(2)));
    let (s, _, _) = json(h.get(node.api("/entities/counter/a"))).await;
    assert_eq!(s, 401);

    // open: health and the dashboard page; read: metrics and the cluster status
    for (path, anonymous) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/", 200),
        ("/dashboard/app.js", 200),
        ("/metrics", 401),
        ("/cluster", 401),
        ("/dashboard/types", 401),
    ] {
        let r = h.get(format!("{}{path}", node.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), anonymous, "{path} without a token");
        let r = h
            .get(format!("{}{path}", node.url))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} with a read token");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_browsers_on_other_sites_are_refused() {
    let node = Node::start().await;
    let h = &node.http;
    let host = node.url.trim_start_matches("http://").to_string();
    // DNS rebinding: the browser sends the attacker's name as Host
    let (s, _, body) = json(
        h.delete(format!("{}/cluster/members/4", node.url))
            .header("host", "attacker.example"),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (403, "host_not_allowed"));
    let (s, _, body) = json(
        h.get(node.api("/entities/counter/a"))
            .header("host", "attacker.example:80"),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (403, "host_not_allowed"));
    // a cross-site text/plain POST
    let signal = node.api("/entities/counter/a?op=add");
    let (s, _, body) = json(
        h.post(&signal)
            .header("origin", "https://attacker.example")
            .header("content-type", "text/plain")
            .body("1"),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (403, "cross_origin"));
    // the dashboard (same origin) and plain clients (no Origin) still work
    let (s, _, _) = json(
        h.post(&signal)
            .header("origin", format!("http://{host}"))
            .body("1"),
    )
    .await;
    assert_eq!(s, 202);
    let (s, _, _) = json(h.post(&signal).body("1")).await;
    assert_eq!(s, 202);
    for path in ["/", "/cluster", "/dashboard/types", "/readyz"] {
        let r = h
            .get(format!("{}{path}", node.url))
            .header("origin", format!("http://{host}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let (s, _, _) = json(
        h.get(format!("{}{BASE}/entities/counter/a", node.url))
            .header("host", "localhost"),
    )
    .await;
    assert_eq!(s, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.http.allowed_hosts = vec!["perdure.internal".into()];
    let node = Node::start_with(c).await;
    let r = node
        .http
        .get(format!("{}/cluster", node.url))
        .header("host", "perdure.internal:7071")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.stop().await;
}
