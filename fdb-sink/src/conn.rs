//! The TCP listener of both servers (ingest and API): deadlines on every
//! connection and, optionally, a bound on how many are open.
//!
//! Without them, a client that connects and sends nothing, or trickles its
//! headers a byte at a time, holds its connection (and a file descriptor the
//! store also needs) for as long as it likes. Here:
//!
//! - a connection with no request under way is closed after its idle time
//!   without a byte either way (the API's `--api-idle-timeout`; the ingest
//!   server's [`INGEST_IDLE`], longer than the idle time after which clients
//!   such as Vector's drop pooled connections themselves);
//! - with a request deadline (the ingest server), once a request's first
//!   byte arrives the server must have started its answer within it (the
//!   handler answers within `--request-timeout-secs`, with 408 or 503 at the
//!   latest), otherwise the connection is closed. Without one (the API, whose
//!   event streams last as long as the client listens), reads and writes
//!   both keep the connection alive, and streams write keep-alives more
//!   often than the idle time;
//! - with a connection limit (the API's `--api-max-connections`), each
//!   accepted connection holds a permit until it closes; at the limit, new
//!   connections wait in the kernel's backlog.
//!
//! A closed connection loses no acknowledged batch: a request is answered
//! 200 only after its commit, and one cut off before its answer is retried
//! by the client and deduplicated.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long an ingest connection may stay open with no request under way.
pub const INGEST_IDLE: Duration = Duration::from_secs(120);

/// Time beyond the request timeout for the answer to start.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// What a [`Listener`] enforces on its connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Closes a connection with nothing read or written for this long.
    pub idle: Duration,
    /// Once a request begins, its answer must start within this.
    pub request: Option<Duration>,
    /// At most this many connections open at once.
    pub max_connections: Option<usize>,
}

impl Limits {
    /// The ingest server's: `request_timeout` is the handler's
    /// (`--request-timeout-secs`).
    pub fn ingest(request_timeout: Duration) -> Self {
        Limits {
            idle: INGEST_IDLE,
            request: Some(request_timeout + ANSWER_GRACE),
            max_connections: None,
        }
    }

    /// The API's: idle connections closed, open ones bounded.
    pub fn api(idle: Duration, max_connections: usize) -> Self {
        Limits {
            idle,
            request: None,
            max_connections: Some(max_connections.max(1)),
        }
    }
}

/// A TCP listener whose connections obey [`Limits`].
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    limits: Limits,
    permits: Option<Arc<Semaphore>>,
    /// Names the server in logs.
    server: &'static str,
}

impl Listener {
    pub fn new(inner: TcpListener, limits: Limits, server: &'static str) -> Self {
        let permits = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        Listener {
            inner,
            limits,
            permits,
            server,
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let permit = match &self.permits {
                None => None,
                Some(p) => match p.clone().acquire_owned().await {
                    Ok(p) => Some(p),
                    // The semaphore is never closed; wait and try again.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (Conn::new(stream, &self.limits, permit), addr);
                }
                Err(e) => {
                    // A connection reset before it was accepted needs no
                    // pause; running out of descriptors does.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) {
                        tracing::warn!(server = self.server, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection, its current deadline and its permit.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    idle: Duration,
    request: Option<Duration>,
    /// True (with a request deadline only) from a request's first byte
    /// until the server writes.
    in_request: bool,
    deadline: Pin<Box<Sleep>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Conn {
    fn new(stream: TcpStream, limits: &Limits, permit: Option<OwnedSemaphorePermit>) -> Self {
        Conn {
            stream,
            idle: limits.idle,
            request: limits.request,
            in_request: false,
            deadline: Box::pin(tokio::time::sleep(limits.idle)),
            _permit: permit,
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&self) -> io::Error {
        let what = if self.in_request {
            "request not complete within the request deadline"
        } else {
            "connection idle for too long"
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }

    /// Bytes arrived: with a request deadline, a new request starts it and
    /// bytes of the current one do not extend it; without, the connection
    /// is simply not idle.
    fn on_read(&mut self) {
        match self.request {
            Some(request) if !self.in_request => {
                self.in_request = true;
                self.deadline.as_mut().reset(Instant::now() + request);
            }
            Some(_) => {}
            None => self.deadline.as_mut().reset(Instant::now() + self.idle),
        }
    }

    /// The server answers: the request is over, the connection idles.
    fn on_write(&mut self) {
        self.in_request = false;
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// The outcome of a write, with the deadline applied: a client that
    /// does not read its answer is idle too.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) if n > 0 => self.on_write(),
            Poll::Pending if self.expired(cx) => return Poll::Ready(Err(self.timed_out())),
            _ => {}
        }
        r
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.in_request && this.expired(cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(this.timed_out())),
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, data);
        this.wrote(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
