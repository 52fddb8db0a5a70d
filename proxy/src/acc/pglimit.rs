//! A bound on what a PostgreSQL server may make siplb hold. tokio-postgres takes a message's
//! length from its header and makes room for all of it before the bytes arrive, so a peer
//! that is not PostgreSQL (a wrong `host` or port, a server in the way) and answers with a
//! header of 2 GiB would have siplb reserve 2 GiB, and abort when that fails. [`Limited`]
//! sits under tokio-postgres, reads the headers of the messages as they go by, and fails the
//! connection with a clear error at the first one longer than [`MAX_MESSAGE`]. The
//! connection is made here too ([`connect`]), on siplb's own socket, as tokio-postgres would
//! make it: each host in turn, `hostaddr`, the ports, `connect_timeout`, keepalives.

use crate::peer::{Framing, Watched};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Config, Connection};

/// The longest message from the server siplb takes: its answers to siplb (the catalog's
/// column names, errors, notices) are a few KiB.
pub const MAX_MESSAGE: u32 = 16 << 20;

/// The first 8 bytes of an SSLRequest: its length and code (80877103).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Where a stream stands in the server's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet: an SSLRequest or a startup message comes first.
    Start,
    /// An SSLRequest went out: one byte answers it ('S', 'N'), or an error message.
    SslAnswer,
    /// TLS: the messages are read above it ([`LimitedTls`]), nothing to check here.
    Through,
    /// Messages: `header` bytes of the next one's five read, or `body` bytes of one left.
    Messages { header: u8, body: u32 },
}

/// A stream whose incoming PostgreSQL messages are checked against [`MAX_MESSAGE`].
pub type Limited<S> = Watched<S, Messages>;

/// PostgreSQL's framing as it goes by.
pub struct Messages {
    state: State,
    /// The header being read (type byte, then a big-endian length that counts itself).
    header: [u8; 5],
}

/// The socket to the server, before anything is sent on it.
pub fn socket<S>(inner: S) -> Limited<S> {
    Watched {
        inner,
        framing: Messages {
            state: State::Start,
            header: [0; 5],
        },
    }
}

/// A stream that carries messages from its first byte (inside TLS).
pub fn messages<S>(inner: S) -> Limited<S> {
    Watched {
        inner,
        framing: Messages {
            state: State::Messages { header: 0, body: 0 },
            header: [0; 5],
        },
    }
}

impl Framing for Messages {
    /// Follows what the client sends first: an SSLRequest is answered by a single byte.
    fn wrote(&mut self, data: &[u8]) {
        if self.state == State::Start {
            self.state = if data.starts_with(&SSL_REQUEST) {
                State::SslAnswer
            } else {
                State::Messages { header: 0, body: 0 }
            };
        }
    }

    /// Follows the bytes just read; an error at a message longer than the bound.
    fn read(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.state {
                State::Start | State::Through => return Ok(()),
                State::SslAnswer => {
                    // 'S': TLS from here on; 'N': messages from the next byte; anything else
                    // starts a message (an error), which tokio-postgres then reports.
                    match bytes[0] {
                        b'S' => self.state = State::Through,
                        b'N' => {
                            self.state = State::Messages { header: 0, body: 0 };
                            bytes = &bytes[1..];
                        }
                        _ => self.state = State::Messages { header: 0, body: 0 },
                    }
                }
                State::Messages { header, body } if body > 0 => {
                    let n = bytes.len().min(body as usize);
                    bytes = &bytes[n..];
                    self.state = State::Messages {
                        header,
                        body: body - n as u32,
                    };
                }
                State::Messages { header, .. } => {
                    let h = usize::from(header);
                    let n = bytes.len().min(5 - h);
                    self.header[h..h + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if h + n < 5 {
                        self.state = State::Messages {
                            header: (h + n) as u8,
                            body: 0,
                        };
                        continue;
                    }
                    let len = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]);
                    if !(4..=MAX_MESSAGE).contains(&len) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the server sent a message of {len} bytes (type {:?}), more than \
                                 siplb takes ({MAX_MESSAGE}): is this a PostgreSQL server?",
                                char::from(self.header[0])
                            ),
                        ));
                    }
                    self.state = State::Messages {
                        header: 0,
                        body: len - 4,
                    };
                }
            }
        }
        Ok(())
    }
}

impl<S: TlsStream + Unpin> TlsStream for Watched<S, Messages> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose streams check the messages inside TLS.
pub struct LimitedTls<T>(pub T);

impl<S, T> TlsConnect<S> for LimitedTls<T>
where
    T: TlsConnect<S> + Send + 'static,
    T::Future: Send + 'static,
    T::Stream: Send,
    S: Send + 'static,
{
    type Stream = Limited<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let tls = self.0.connect(stream);
        Box::pin(async move { Ok(messages(tls.await?)) })
    }
}

/// A socket to the server: TCP, or a Unix socket.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The connection's I/O half, to be polled while its client is used.
pub type PgConnection<T> = Connection<Limited<Socket>, Limited<T>>;

/// Why one attempt to connect failed.
#[derive(Debug)]
pub enum PgError {
    /// The socket could not be had (refused, no route, a name that does not resolve).
    Socket(io::Error),
    /// `connect_timeout` passed.
    TimedOut,
    /// The server refused or broke the session (or is not PostgreSQL).
    Pg(tokio_postgres::Error),
    /// `target_session_attrs=read-write` and the server takes no writes.
    ReadOnly,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Socket(e) => write!(f, "error connecting to server: {e}"),
            PgError::TimedOut => f.write_str("timeout waiting for server"),
            PgError::Pg(e) => {
                // With its causes: tokio-postgres's own text says only what kind of error.
                write!(f, "{e}")?;
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            PgError::ReadOnly => {
                f.write_str("the server is read-only (target_session_attrs=read-write)")
            }
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> PgError {
        PgError::Pg(e)
    }
}

/// Connects as tokio-postgres's `Config::connect` does (each host in turn, with its
/// `hostaddr` and port; `connect_timeout` per attempt; TCP keepalives; a read-write server
/// for `target_session_attrs=read-write`), through [`Limited`] streams. The first host's
/// error is kept when every host fails.
pub async fn connect<M>(
    pg: &Config,
    tls: &mut M,
) -> Result<(Client, PgConnection<M::Stream>), PgError>
where
    M: MakeTlsConnect<Limited<Socket>>,
    M::TlsConnect: Send + 'static,
    <M::TlsConnect as TlsConnect<Limited<Socket>>>::Future: Send + 'static,
    M::Stream: Send,
{
    let hosts = pg.get_hosts();
    let addrs = pg.get_hostaddrs();
    let ports = pg.get_ports();
    let mut error = None;
    for i in 0..hosts.len().max(addrs.len()) {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        // The name TLS checks the certificate against: `host`, whatever `hostaddr` says.
        let name = match hosts.get(i) {
            Some(Host::Tcp(h)) => h.as_str(),
            _ => "",
        };
        let attempt = async {
            let socket = match (addrs.get(i), hosts.get(i)) {
                (Some(ip), _) => tcp(pg, &ip.to_string(), port).await?,
                (None, Some(Host::Tcp(h))) => tcp(pg, h, port).await?,
                (None, Some(Host::Unix(dir))) => Socket::Unix(
                    UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                        .await
                        .map_err(PgError::Socket)?,
                ),
                (None, None) => return Err(PgError::Socket(io::ErrorKind::InvalidInput.into())),
            };
            let tls = tls.make_tls_connect(name).map_err(|e| {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                PgError::Socket(io::Error::other(format!("TLS: {e}")))
            })?;
            let (client, mut conn) = pg
                .connect_raw(self::socket(socket), LimitedTls(tls))
                .await?;
            if pg.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
                let mut ask = std::pin::pin!(client.simple_query("SHOW transaction_read_only"));
                let answer = tokio::select! {
                    a = &mut ask => a?,
                    ended = &mut conn => {
                        ended?;
                        return Err(PgError::Socket(io::ErrorKind::UnexpectedEof.into()));
                    }
                };
                let read_only = answer.iter().any(|m| {
                    matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("on"))
                });
                if read_only {
                    return Err(PgError::ReadOnly);
                }
            }
            Ok((client, conn))
        };
        let result = match pg.get_connect_timeout() {
            Some(t) => tokio::time::timeout(*t, attempt)
                .await
                .unwrap_or(Err(PgError::TimedOut)),
            None => attempt.await,
        };
        match result {
            Ok(c) => return Ok(c),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    Err(error.unwrap_or(PgError::Socket(io::ErrorKind::InvalidInput.into())))
}

/// A TCP connection to `host` (a name or an address) and `port`, each address it resolves
/// to in turn, with tokio-postgres's socket options (no Nagle delay; keepalives as set).
async fn tcp(pg: &Config, host: &str, port: u16) -> Result<Socket, PgError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(PgError::Socket)?
    {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                if pg.get_keepalives() {
                    let mut k = socket2::TcpKeepalive::new().with_time(pg.get_keepalives_idle());
                    if let Some(i) = pg.get_keepalives_interval() {
                        k = k.with_interval(i);
                    }
                    if let Some(r) = pg.get_keepalives_retries() {
                        k = k.with_retries(r);
                    }
                    let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&k);
                }
                return Ok(Socket::Tcp(s));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(PgError::Socket(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve any addresses",
        )
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `len` body bytes, of type `t`.
    fn message(t: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![t];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup() -> Messages {
        let mut l = socket(()).framing;
        l.wrote(b"\0\0\0\x10\0\x03\0\0user\0x\0\0");
        l
    }

    #[test]
    fn messages_of_any_size_up_to_the_bound_pass_split_anywhere() {
        let mut bytes = message(b'R', &[0, 0, 0, 0]);
        bytes.extend(message(b'S', &vec![b'x'; 70_000]));
        bytes.extend(message(b'Z', b"I"));
        for cut in [1, 2, 3, 5, 7, 4096] {
            let mut l = startup();
            for chunk in bytes.chunks(cut) {
                l.read(chunk).unwrap();
            }
            assert_eq!(l.state, State::Messages { header: 0, body: 0 }, "cut {cut}");
        }
    }

    #[test]
    fn a_header_longer_than_the_bound_or_shorter_than_itself_fails_the_stream_at_once() {
        for len in [MAX_MESSAGE + 1, 0x7fff_fff0, 3] {
            let mut l = startup();
            let mut header = vec![b'E'];
            header.extend_from_slice(&len.to_be_bytes());
            let e = l.read(&header).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(
                e.to_string().contains("is this a PostgreSQL server?"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_answer_to_an_ssl_request_is_one_byte_then_tls_or_messages() {
        let mut tls = socket(()).framing;
        tls.wrote(&SSL_REQUEST);
        // 'S': TLS records follow, whatever they look like.
        tls.read(b"S\x16\x03\x03\xff\xff\xff\xff").unwrap();
        assert_eq!(tls.state, State::Through);
        let mut plain = socket(()).framing;
        plain.wrote(&SSL_REQUEST);
        let mut bytes = b"N".to_vec();
        bytes.extend(message(b'R', &[0, 0, 0, 0]));
        plain.read(&bytes).unwrap();
        assert_eq!(plain.state, State::Messages { header: 0, body: 0 });
        bytes = vec![b'N', b'E'];
        bytes.extend_from_slice(&0x7fff_fff0u32.to_be_bytes());
        let mut huge = socket(()).framing;
        huge.wrote(&SSL_REQUEST);
        assert!(huge.read(&bytes).is_err());
    }

    /// A server that answers the startup with a message header of 2 GiB and then zeros.
    #[tokio::test(flavor = "current_thread")]
    async fn a_server_that_claims_a_huge_message_is_refused_before_siplb_makes_room_for_it() {
        let (port, server) = crate::peer::announcing_server(b"R\x7f\xff\xff\xf0");
        let target = crate::acc::pgtls::parse(&format!(
            "host=127.0.0.1 port={port} user=u dbname=d sslmode=disable connect_timeout=10"
        ))
        .unwrap();
        let e = match target.connect().await {
            Ok(_) => panic!("connected to a server that is not PostgreSQL"),
            Err(e) => e.first.to_string(),
        };
        assert!(e.contains("is this a PostgreSQL server?"), "{e}");
        let sent = server.join().unwrap();
        assert!(
            sent < 64 << 20,
            "the client read {sent} bytes before it gave up"
        );
    }
}
