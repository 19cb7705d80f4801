//! Plain HTTP/1.1 probes of a node (`GET /readyz`), blocking and async, with no HTTP client
//! library: a probe must not depend on what it probes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The request line and headers of `GET path` on `addr`.
fn request(addr: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// The status code of an HTTP response's first line.
fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// `HOST:PORT` of `http://HOST:PORT[/...]` (or of `HOST:PORT` itself).
fn authority(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// Status code of `GET path` on `addr` (`HOST:PORT`), or `None` when nothing answers within
/// `timeout` (blocking).
pub fn http_status(addr: &str, path: &str, timeout: Duration) -> Option<u16> {
    let to: SocketAddr = addr.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&to, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(request(addr, path).as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    status_of(&resp)
}

/// Status code of `GET path` on `addr`, async; `None` when nothing answers within `timeout`.
async fn http_status_async(addr: &str, path: &str, timeout: Duration) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(request(addr, path).as_bytes()).await.ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.ok()?;
        status_of(&resp)
    };
    tokio::time::timeout(timeout, get).await.ok().flatten()
}

/// Waits until `GET /readyz` of `url` (`http://HOST:PORT`) answers 200; false after `within`.
pub async fn ready(url: &str, within: Duration) -> bool {
    let addr = authority(url);
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left.min(Duration::from_secs(2));
        if http_status_async(addr, "/readyz", attempt).await == Some(200) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_urls_are_read() {
        assert_eq!(
            status_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"garbage"), None);
        assert_eq!(authority("http://127.0.0.2:7071"), "127.0.0.2:7071");
        assert_eq!(authority("http://127.0.0.2:7071/readyz"), "127.0.0.2:7071");
        assert_eq!(authority("127.0.0.2:7071"), "127.0.0.2:7071");
    }

    #[test]
    fn nothing_listening_is_none() {
        let port = crate::free_port("127.0.0.1").unwrap();
        let addr = format!("127.0.0.1:{port}");
        assert_eq!(
            http_status(&addr, "/readyz", Duration::from_millis(200)),
            None
        );
    }
}
