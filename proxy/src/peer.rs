//! What siplb's peers outside the SIP path (PostgreSQL, Redis) may make it hold: a stream that
//! shows every byte read from the peer, and written to it, to a [`Framing`] that follows the
//! protocol's framing and ends the connection with an error at a message past its bound.
//! The client libraries make room for a message as long as its header says, or keep it until
//! it is whole, so the bound has to be kept beneath them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A protocol's framing, followed byte by byte.
pub trait Framing {
    /// Bytes just read from the peer; an error ends the connection.
    fn read(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Bytes about to be written to the peer.
    fn wrote(&mut self, _bytes: &[u8]) {}
}

/// A stream whose traffic a [`Framing`] follows.
pub struct Watched<S, F> {
    pub inner: S,
    pub framing: F,
}

impl<S: AsyncRead + Unpin, F: Framing + Unpin> AsyncRead for Watched<S, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => Poll::Ready(this.framing.read(&buf.filled()[before..])),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin, F: Framing + Unpin> AsyncWrite for Watched<S, F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.framing.wrote(data);
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP server for one connection that answers its first bytes with `header` and then
/// zeros, up to 1 GiB or until the client hangs up: how many bytes it got to send.
#[cfg(test)]
pub fn announcing_server(header: &'static [u8]) -> (u16, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut first = [0u8; 512];
        let _ = s.read(&mut first);
        let _ = s.write_all(header);
        let zeros = vec![0u8; 1 << 16];
        let mut sent = 0usize;
        while sent < 1 << 30 && s.write_all(&zeros).is_ok() {
            sent += zeros.len();
        }
        sent
    });
    (port, server)
}
