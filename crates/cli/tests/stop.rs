//! SIGTERM always stops a node (Hardening case 5): a stop held up by an unfinished request (here
//! an upload that trickles in) is ended by a second signal at once, exit status 1.

mod common;

use common::{Server, BASE};
use std::io::Write;
use std::time::{Duration, Instant};

fn kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_second_sigterm_ends_a_stop_held_up_by_a_request() {
    let mut server = Server::start();
    let pid = server.pid().expect("running");
    let addr = server.url.trim_start_matches("http://").to_string();
    // a request whose body trickles in: the graceful stop waits for it
    let mut upload = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        upload,
        "POST {BASE}/entities/counter/a?op=add HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n1"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(pid, "-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.running(),
        "the upload did not hold the stop up: the test proves nothing"
    );
    // the harness's stop: a second SIGTERM, then at most 3 s for the exit
    let t = Instant::now();
    let status = server.terminate(Duration::from_secs(3));
    assert_eq!(status.code(), Some(1), "{status}");
    eprintln!("exited {:?} after the second signal", t.elapsed());
    drop(upload);
}
