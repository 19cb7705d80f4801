//! One client connection's clock: how long it may stay idle, and how long a request head may
//! take once its first byte arrived (Go's `IdleTimeout` and `ReadHeaderTimeout`).
//!
//! hyper's own `header_read_timeout` starts as soon as hyper waits for a head, so it cannot tell
//! an idle keep-alive connection from a slow head; here the two are separate:
//!
//! ```text
//!   Idle(since) ──first byte──> Head(since) ──request handed to the router──> Busy(n)
//!       ^                                                                        │
//!       └─────────────────────── last response of the connection done ───────────┘
//! ```
//!
//! `Idle` ends at `since + idle_timeout`, `Head` at `since + header_read_timeout`; `Busy` has no
//! deadline here (the request body has its own timeout layer, and a request waiting for its
//! partition has the runtime's deadline). At a deadline the socket's next read fails with
//! `TimedOut` and hyper drops the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where a connection is in its life, with when that phase started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in flight and no byte of the next one yet.
    Idle(Instant),
    /// Bytes of a request head arrived, the head is not complete yet.
    Head(Instant),
    /// This many requests are with the router.
    Busy(usize),
}

/// The two deadlines of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// See `http.header_read_timeout_ms`.
    pub header_read: Duration,
    /// See `http.idle_timeout_ms`.
    pub idle: Duration,
}

/// A connection's phase, shared by its socket ([`TimedIo`]) and its service (which says when a
/// request starts and ends).
#[derive(Debug)]
pub struct Clock {
    phase: Mutex<Phase>,
    timeouts: Timeouts,
    /// The task last told that a read is pending: woken when a request ends, so that its read
    /// is polled again and the idle deadline armed (hyper may have polled the read while the
    /// request was busy, when there was no deadline to arm).
    reader: Mutex<Option<std::task::Waker>>,
}

impl Clock {
    /// A clock for a connection accepted now.
    pub fn new(timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            timeouts,
            reader: Mutex::new(None),
        })
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived.
    fn on_bytes(&self) {
        let mut p = self.phase();
        if let Phase::Idle(_) = *p {
            *p = Phase::Head(Instant::now());
        }
    }

    /// The router took a request (its head is complete).
    pub fn request_started(&self) {
        let mut p = self.phase();
        *p = match *p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
    }

    /// The router answered a request.
    pub fn request_done(&self) {
        let idle = {
            let mut p = self.phase();
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            };
            matches!(*p, Phase::Idle(_))
        };
        if idle {
            let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(w) = reader {
                w.wake();
            }
        }
    }

    /// Remembers the task waiting on a read.
    fn waiting(&self, waker: &std::task::Waker) {
        let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if !r.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *r = Some(waker.clone());
        }
    }

    /// When the connection must be cut if nothing changes, and why.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match *self.phase() {
            Phase::Idle(since) => Some((since + self.timeouts.idle, "idle timeout")),
            Phase::Head(since) => Some((
                since + self.timeouts.header_read,
                "request head not complete within the header read timeout",
            )),
            Phase::Busy(_) => None,
        }
    }
}

/// A socket whose reads fail with `TimedOut` once its [`Clock`] says so.
#[derive(Debug)]
pub struct TimedIo<T> {
    inner: T,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
    /// Counts the connections cut by a deadline.
    timed_out: prometheus::IntCounter,
}

impl<T> TimedIo<T> {
    /// Wraps `inner` under `clock`; a cut is counted in `timed_out`.
    pub fn new(inner: T, clock: Arc<Clock>, timed_out: prometheus::IntCounter) -> Self {
        Self {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timed_out,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.clock.waiting(cx.waker());
                let Some((deadline, why)) = this.clock.deadline() else {
                    return Poll::Pending;
                };
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timed_out.inc();
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn counter() -> prometheus::IntCounter {
        prometheus::IntCounter::new("t", "t").unwrap()
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            header_read: Duration::from_millis(200),
            idle: Duration::from_millis(600),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_after_the_idle_timeout() {
        let (a, _b) = tokio::io::duplex(64);
        let clock = Clock::new(timeouts());
        let mut io = TimedIo::new(a, clock, counter());
        let t = Instant::now();
        let e = io.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            (600..650).contains(&t.elapsed().as_millis()),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_must_complete_within_the_header_timeout() {
        let (a, mut b) = tokio::io::duplex(64);
        let clock = Clock::new(timeouts());
        let mut io = TimedIo::new(a, clock.clone(), counter());
        b.write_all(b"GET / HT").await.unwrap();
        assert_eq!(io.read(&mut [0u8; 64]).await.unwrap(), 8);
        let t = Instant::now();
        let e = io.read(&mut [0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            (200..250).contains(&t.elapsed().as_millis()),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_has_no_deadline_and_idles_again_after_its_request() {
        let (a, mut b) = tokio::io::duplex(64);
        let clock = Clock::new(timeouts());
        let mut io = TimedIo::new(a, clock.clone(), counter());
        clock.request_started();
        let read = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut [0u8; 8])).await;
        assert!(read.is_err(), "a busy connection was cut");
        clock.request_done();
        let t = Instant::now();
        let e = io.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            (600..650).contains(&t.elapsed().as_millis()),
            "{:?}",
            t.elapsed()
        );
        drop(b.write_all(b"x").await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_pending_while_busy_gets_the_idle_deadline_when_the_request_ends() {
        let (a, _b) = tokio::io::duplex(64);
        let clock = Clock::new(timeouts());
        let mut io = TimedIo::new(a, clock.clone(), counter());
        clock.request_started();
        let t = Instant::now();
        let ender = {
            let clock = clock.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                clock.request_done();
            })
        };
        // one read, first polled while busy (no deadline), must end at done + idle
        let e = io.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            (5600..5650).contains(&t.elapsed().as_millis()),
            "{:?}",
            t.elapsed()
        );
        ender.await.unwrap();
    }
}
