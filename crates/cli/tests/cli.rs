//! The real binary: `perdure serve` on a local port answers `/readyz`, stops with exit code 0 on
//! SIGTERM, refuses a taken port clearly; the client subcommands report bad input on stderr with
//! a non-zero exit code and nothing on stdout.

mod common;

use common::{free_port, http_status, run_with_url, stderr, Server, BIN};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn serve_is_ready_then_stops_cleanly_on_sigterm() {
    let mut server = Server::start();
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(http_status(port, "/healthz"), Some(200));
    assert!(
        server
            .stderr()
            .contains(&format!("listening on {}", server.url)),
        "{}",
        server.stderr()
    );
    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(http_status(port, "/healthz"), None, "the port is closed");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--http-addr", &addr, "--grpc-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("PERDURE_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&addr) && err.contains("listen"), "{err}");
}

#[test]
fn client_commands_report_bad_input_with_a_non_zero_exit() {
    // no gRPC workers: an entity type without Rust code is refused (else it is theirs)
    let server = Server::start_with_env(&[("PERDURE_GRPC__ENABLED", "false")]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["signal", "nosuchtype/a", "add", "1"],
            "unknown_entity_type",
        ),
        (&["call", "counter/a", "explode"], "unknown_operation"),
        // `five` is not JSON: it is sent as the string "five", which add refuses
        (&["signal", "counter/a", "add", "five"], "bad_input"),
        (&["call", "register/a", "set"], "bad_input"),
        (&["get", "bad name/a"], "invalid entity id"),
        (&["list", "counter", "--top", "0"], "bad_query"),
        (
            &["signal", "counter/a", "add", "--idempotency-key", ""],
            "idempotency key is empty",
        ),
    ];
    for (args, want) in cases {
        let out = server.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    }
    // usage errors are clap's: exit code 2
    for args in [&["get", "counter"][..], &["signal", "counter/a"][..]] {
        let out = server.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!stderr(&out).is_empty());
    }
}

#[test]
fn the_url_comes_from_perdure_url() {
    let server = Server::start();
    let out = Command::new(BIN)
        .args(["call", "counter/a", "explode"])
        .env("PERDURE_URL", &server.url)
        .env("PERDURE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown_operation"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_server_is_a_transport_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run_with_url(&url, &["get", "counter/a"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("transport") && err.contains("counter/a"),
        "{err}"
    );
}
