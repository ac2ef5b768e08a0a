//! Connection deadlines of the ingest server.
//!
//! The request timeout of the handler starts once a request's headers are
//! in. Before that, nothing limited how long a client may take: one that
//! trickles its headers a byte at a time, or connects and sends nothing,
//! held its connection (and a file descriptor the store also needs) for as
//! long as it liked. Here every connection has two deadlines:
//!
//! - once a request's first byte arrives, the server must have started its
//!   answer within the request deadline (the handler answers within
//!   `--request-timeout-secs`, with 408 or 503 at the latest), otherwise the
//!   connection is closed;
//! - a connection with no request under way is closed after [`IDLE`]
//!   without a byte (longer than the idle time after which clients such as
//!   Vector's drop pooled connections themselves).
//!
//! A closed connection loses no acknowledged batch: a request is answered
//! 200 only after its commit, and one cut off before its answer is retried
//! by the client and deduplicated.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// How long a connection may stay open with no request under way.
pub const IDLE: Duration = Duration::from_secs(120);

/// Time beyond the request timeout for the answer to start.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// The ingest server's listener: TCP connections with deadlines.
#[derive(Debug)]
pub struct DeadlineListener {
    inner: TcpListener,
    request: Duration,
    idle: Duration,
}

impl DeadlineListener {
    /// `request_timeout` is the handler's (`--request-timeout-secs`).
    pub fn new(inner: TcpListener, request_timeout: Duration) -> Self {
        DeadlineListener {
            inner,
            request: request_timeout + ANSWER_GRACE,
            idle: IDLE,
        }
    }
}

impl axum::serve::Listener for DeadlineListener {
    type Io = DeadlineIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (DeadlineIo::new(stream, self.request, self.idle), addr);
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
                        tracing::warn!(error = %e, "ingest accept failed");
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

/// An accepted connection and its current deadline.
#[derive(Debug)]
pub struct DeadlineIo {
    stream: TcpStream,
    request: Duration,
    idle: Duration,
    /// True from a request's first byte until the server writes.
    in_request: bool,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineIo {
    fn new(stream: TcpStream, request: Duration, idle: Duration) -> Self {
        DeadlineIo {
            stream,
            request,
            idle,
            in_request: false,
            deadline: Box::pin(tokio::time::sleep(idle)),
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

    /// Bytes arrived: a new request starts its deadline; bytes of the
    /// current one do not extend it.
    fn on_read(&mut self) {
        if !self.in_request {
            self.in_request = true;
            self.deadline.as_mut().reset(Instant::now() + self.request);
        }
    }

    /// The server answers: the request is over, the connection idles.
    fn on_write(&mut self) {
        self.in_request = false;
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }
}

impl AsyncRead for DeadlineIo {
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

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, data);
        match r {
            Poll::Ready(Ok(n)) if n > 0 => this.on_write(),
            // A client that does not read its answer is idle too.
            Poll::Pending if this.expired(cx) => return Poll::Ready(Err(this.timed_out())),
            _ => {}
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        match r {
            Poll::Ready(Ok(n)) if n > 0 => this.on_write(),
            // A client that does not read its answer is idle too.
            Poll::Pending if this.expired(cx) => return Poll::Ready(Err(this.timed_out())),
            _ => {}
        }
        r
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
