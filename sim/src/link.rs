//! The TCP layer under every simulator connection, with a switch that turns one
//! connection dark: from the client's side a half-open socket, open but silent.
//!
//! Owns [`Listener`] (what `server` accepts from) and [`Link`], the byte stream
//! hyper and then the WebSocket run on. A dark link swallows every write and
//! discards every byte it reads, but still reports end-of-stream and errors, so
//! the connection task learns when the client leaves. It knows nothing of HTTP or
//! frames: `ws` decides when a connection goes dark, through the [`LinkHandle`]
//! axum hands each request as `ConnectInfo`.
//!
//! Going dark happens below the WebSocket protocol on purpose: the protocol
//! layer answers pings and close frames on its own, and a half-open socket must
//! not answer anything.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections and wraps each in a [`Link`].
pub(super) struct Listener(TcpListener);

impl Listener {
    pub fn new(listener: TcpListener) -> Listener {
        Listener(listener)
    }
}

impl axum::serve::Listener for Listener {
    type Io = Link;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Link, SocketAddr) {
        // axum's own accept loop already rides out transient accept errors.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        // Without this, a small frame written right behind another waits for
        // the client's delayed ACK, some 40 ms of real time, during which a
        // client's paused clock may jump to its next timer.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "zoom simulator: could not disable Nagle");
        }
        let link = Link {
            stream,
            dark: Arc::new(AtomicBool::new(false)),
        };
        (link, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// One accepted TCP connection that can be switched dark.
pub(super) struct Link {
    stream: TcpStream,
    dark: Arc<AtomicBool>,
}

/// Switches its [`Link`] dark from outside the task that owns the socket.
#[derive(Clone, Debug)]
pub(super) struct LinkHandle {
    dark: Arc<AtomicBool>,
}

impl LinkHandle {
    /// From now on nothing more reaches the client, not even the rest of a frame
    /// being written, and nothing the client sends is seen. There is no way back.
    pub fn go_dark(&self) {
        self.dark.store(true, Ordering::Release);
    }

    pub fn is_dark(&self) -> bool {
        self.dark.load(Ordering::Acquire)
    }
}

impl Connected<IncomingStream<'_, Listener>> for LinkHandle {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> LinkHandle {
        LinkHandle {
            dark: Arc::clone(&stream.io().dark),
        }
    }
}

impl Link {
    fn is_dark(&self) -> bool {
        self.dark.load(Ordering::Acquire)
    }
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.is_dark() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        // Draining rather than not reading at all: end-of-stream sits behind
        // whatever the client sent last, and only reading reaches it.
        let mut scratch = [0u8; 1024];
        loop {
            let mut discarded = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut discarded))?;
            if discarded.filled().is_empty() {
                // End of stream, passed on as such (nothing put in `buf`).
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_dark() {
            // Accepted and lost, as on a path that died without telling anyone.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_dark() {
            return Poll::Ready(Ok(bufs.iter().map(|buf| buf.len()).sum()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dark() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN would tell the client the connection is gone; a dark link lets
        // only dropping the socket (client gone, or simulator stopped) do that.
        if self.is_dark() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
