//! A WebSocket as a byte stream: the EICE tunnel's framing.
//!
//! [`connect`] dials a presigned `wss://…/openTunnel?…` URL (or a plain `ws://` one, for test
//! servers) and gives a [`Stream`], like every other transport. The handshake is the one AWS
//! CLI v2 makes (`shared/protocols/eice.md` §1.5): the URL goes out exactly as signed, with a
//! `User-Agent: aws-hop/<version>`, no subprotocol and no extensions, over TLS with SNI,
//! TCP_NODELAY set. An answer other than `101` becomes [`Error::EiceRefused`] with the status,
//! the `x-amzn-RequestId` and the start of the body; failures before that (DNS, TCP, TLS, a
//! bad handshake) become [`Error::EiceConnect`], naming the host and what to check.
//!
//! [`WsStream`] carries the tunnel's TCP bytes (§1.6–1.8):
//!
//! - writes go out as binary frames of at most [`MAX_FRAME`] bytes;
//! - reads yield the payloads of binary (and continuation) frames; a text frame is an error;
//! - a Close with code 1000, or with no code, is a clean end of stream; any other code is an
//!   error carrying the code and the reason, which a forward turns into a reset;
//! - the connection ending without a Close is an error, not an end of stream (as
//!   [`crate::hop::channel`] does for SSH), so a cut tunnel is never mistaken for a complete
//!   transfer;
//! - `shutdown` is a half-close: it sends Close 1000, and reading goes on until the
//!   endpoint's own Close (unlike the CLI, which keeps sending empty frames);
//! - pings are answered: tungstenite queues the pong and sends it on the next read or flush,
//!   and a read that meets a ping reads on, so a stream that is only read still answers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::hop::Stream;

/// The largest binary frame written, as the CLI sends it (one local read of 65,000 bytes).
pub const MAX_FRAME: usize = 65_000;

/// How long DNS, TCP, TLS and the WebSocket upgrade may take together. Well inside the 60 s a
/// presigned URL is valid.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How much of a refusal's body goes into the error.
const BODY_SHOWN: usize = 300;

/// The `User-Agent` of the upgrade request.
const USER_AGENT: &str = concat!("aws-hop/", env!("CARGO_PKG_VERSION"));

/// Dials an EICE tunnel URL and returns the tunnel as a [`Stream`].
///
/// `url` is a presigned `wss://` URL ([`super::eice::url::PresignedUrl::as_str`]), sent exactly
/// as given; a `ws://` URL (no TLS) is accepted for test servers. Dial within the URL's 60 s.
///
/// # Example
///
/// ```no_run
/// # async fn demo(request: aws_hop::hop::eice::url::TunnelRequest) -> aws_hop::Result<()> {
/// use tokio::io::AsyncWriteExt;
///
/// let url = request.presign()?;
/// let mut tunnel = aws_hop::hop::ws::connect(url.as_str()).await?;
/// tunnel.write_all(b"SSH-2.0-aws-hop\r\n").await.map_err(|e| aws_hop::Error::io("EICE", e))?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Stream> {
    Ok(Box::new(dial(url).await?))
}

/// [`connect`], keeping the concrete stream type.
pub async fn dial(url: &str) -> Result<WsStream<MaybeTlsStream<TcpStream>>> {
    crate::tls::install_crypto_provider();
    let mut request = url.into_client_request().map_err(|e| {
        // Never show the URL itself: it is a credential for 60 s.
        Error::invalid(format!("the EICE tunnel URL is malformed: {e}"))
    })?;
    let uri = request.uri();
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(Error::invalid(
                "the EICE tunnel URL must start with wss:// (or ws:// for a test server)",
            ));
        }
    };
    let Some(authority) = uri.authority() else {
        return Err(Error::invalid("the EICE tunnel URL has no host"));
    };
    let host = authority.as_str().to_owned();
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    request
        .headers_mut()
        .insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));

    let handshake = async {
        let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| eice_connect(&host, format!("cannot resolve {name}: {e}"), dns_hint()))?
            .collect();
        let tcp = TcpStream::connect(&*addrs).await.map_err(|e| {
            eice_connect(
                &host,
                format!("TCP connect to port {port} failed: {e}"),
                tcp_hint(&e, port),
            )
        })?;
        // Keystrokes and protocol greetings must not wait for a delayed ACK.
        let _ = tcp.set_nodelay(true);
        let connector = if tls {
            Connector::Rustls(
                crate::tls::client_config().map_err(|e| eice_connect(&host, e.reason, e.hint))?,
            )
        } else {
            Connector::Plain
        };
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector))
            .await
            .map_err(|e| handshake_error(&host, e))
    };
    // Boxed: the TLS and HTTP handshake state is large (about 20 KB), and it is short-lived.
    let (ws, _response) = tokio::time::timeout(HANDSHAKE_TIMEOUT, Box::pin(handshake))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("opening an EICE tunnel through {host}"),
            secs: HANDSHAKE_TIMEOUT.as_secs_f64(),
            hint: format!(
                "check that this machine reaches {host} on TCP {port}: a firewall, or a proxy \
                 (aws-hop does not use one yet), may be in the way"
            ),
        })??;
    Ok(WsStream::new(ws, &host))
}

/// An [`Error::EiceConnect`] for `host`.
fn eice_connect(host: &str, reason: String, hint: String) -> Error {
    Error::EiceConnect {
        host: host.to_owned(),
        reason,
        hint,
    }
}

/// What to check when the endpoint's name does not resolve.
fn dns_hint() -> String {
    "check the endpoint's DNS name (DescribeInstanceConnectEndpoints gives it as DnsName) and \
     this machine's DNS"
        .into()
}

/// What to check when the TCP connection to the endpoint fails, by the kind of failure.
fn tcp_hint(e: &io::Error, port: u16) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "nothing accepts connections there: check the endpoint's DNS name".into()
        }
        _ => format!(
            "check that this machine reaches the endpoint on TCP {port}: a firewall, or a proxy \
             (aws-hop does not use one yet), may be in the way"
        ),
    }
}

/// Turns a failed TLS or WebSocket handshake into an error that says what to check.
fn handshake_error(host: &str, e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Http(response) => {
            let request_id = response
                .headers()
                .get("x-amzn-RequestId")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .body()
                .as_deref()
                .map(body_start)
                .unwrap_or_default();
            let status = response.status().as_u16();
            refusal_with_cause(host, status, request_id.as_deref(), &body).unwrap_or(
                Error::EiceRefused {
                    host: host.to_owned(),
                    status,
                    request_id,
                    body,
                },
            )
        }
        tungstenite::Error::Io(e) => match e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            Some(tls @ rustls::Error::InvalidCertificate(_)) => eice_connect(
                host,
                format!("TLS failed: {tls}"),
                "the endpoint's certificate is not trusted here; if a proxy or a test CA signs \
                 it, point SSL_CERT_FILE at that CA's PEM file"
                    .into(),
            ),
            Some(tls) => eice_connect(
                host,
                format!("TLS failed: {tls}"),
                "check that nothing between here and AWS intercepts TLS".into(),
            ),
            None => eice_connect(
                host,
                format!("the connection failed during the handshake: {e}"),
                "check that the name is an EC2 Instance Connect Endpoint and try again".into(),
            ),
        },
        tungstenite::Error::Tls(e) => eice_connect(
            host,
            format!("TLS failed: {e}"),
            "the endpoint's DNS name must be a host name, as DescribeInstanceConnectEndpoints \
             gives it"
                .into(),
        ),
        other => eice_connect(
            host,
            format!("the WebSocket handshake failed: {other}"),
            "the server there does not answer as an EC2 Instance Connect Endpoint: check the \
             DNS name"
                .into(),
        ),
    }
}

/// A refusal whose cause the body makes plain, as an error that names that cause and its
/// fix: a signature outside its validity window (this machine's clock), or the endpoint's
/// limit of 20 tunnels at once. `None`: show the refusal as it came ([`Error::EiceRefused`]).
fn refusal_with_cause(
    host: &str,
    status: u16,
    request_id: Option<&str>,
    body: &str,
) -> Option<Error> {
    let lower = body.to_ascii_lowercase();
    let answered = format!(
        "HTTP {status}{}: {body}",
        request_id
            .map(|r| format!(" (request id {r})"))
            .unwrap_or_default()
    );
    let clock = [
        "request has expired",
        "signature expired",
        "not yet valid",
        "not yet current",
        "in the future",
        "too skewed",
    ];
    if matches!(status, 400 | 401 | 403) && clock.iter().any(|w| lower.contains(w)) {
        return Some(eice_connect(
            host,
            format!(
                "the tunnel URL's signature is outside its validity window (a presigned URL is \
                 valid from its X-Amz-Date for 60 s, and aws-hop signs it just before dialing); \
                 {answered}"
            ),
            "check this machine's clock: it is probably off by a minute or more (compare \
             `date -u` with the real time; turn on NTP, e.g. `timedatectl set-ntp true`)"
                .into(),
        ));
    }
    if status == 429 && lower.contains("concurrent") {
        return Some(eice_connect(
            host,
            format!("the endpoint carries too many tunnels at once; {answered}"),
            "an EC2 Instance Connect Endpoint allows at most 20 concurrent connections (an AWS \
             quota that cannot be raised): close some tunnels or forwarded connections through \
             it, share one SSH session (one tunnel) for many forwards, or use another route \
             (ssm, a bastion)"
                .into(),
        ));
    }
    None
}

/// The first [`BODY_SHOWN`] bytes of a body as one line of text (cut at a character
/// boundary, control characters as spaces).
fn body_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(BODY_SHOWN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Where the read side stands.
#[derive(Debug)]
enum ReadState {
    Open,
    /// The endpoint closed the tunnel normally (Close 1000, or no code).
    Eof,
    /// The tunnel failed; every later read repeats the error.
    Failed(io::ErrorKind, String),
}

/// Where the write side stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    Open,
    /// Our Close 1000 is queued; `shutdown` is flushing it.
    Closing,
    /// Our Close went out (or the endpoint's Close made writing pointless).
    Closed,
}

/// `AsyncRead + AsyncWrite` over an EICE WebSocket (see the module docs for the rules).
///
/// Both directions poll the one [`WebSocketStream`]: no split and no lock, since `&mut self`
/// already serializes them. Dropping it drops the connection without a Close; call
/// `shutdown` first for a clean end.
///
/// # Example
///
/// ```no_run
/// # async fn demo(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use aws_hop::hop::ws::WsStream;
///
/// let (ws, _) = tokio_tungstenite::client_async("ws://127.0.0.1:8080/openTunnel", tcp).await?;
/// let mut tunnel = WsStream::new(ws, "127.0.0.1:8080");
/// tunnel.write_all(b"hello").await?;
/// tunnel.shutdown().await?; // Close 1000; the reply ends the read side
/// let mut answer = Vec::new();
/// tunnel.read_to_end(&mut answer).await?;
/// # Ok(()) }
/// ```
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// Payload received and not yet read out.
    pending: Bytes,
    read: ReadState,
    write: WriteState,
    /// Whether any payload came through, to tell "the instance is not reachable" (a Close
    /// before any byte) from a tunnel that ended later.
    received: bool,
    /// The endpoint (`host[:port]`), for messages.
    host: String,
}

impl<S> WsStream<S> {
    /// Wraps a WebSocket whose handshake is done. `host` names the endpoint in errors.
    pub fn new(ws: WebSocketStream<S>, host: &str) -> Self {
        WsStream {
            ws,
            pending: Bytes::new(),
            read: ReadState::Open,
            write: WriteState::Open,
            received: false,
            host: host.to_owned(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Records a read failure and returns it.
    fn fail(&mut self, kind: io::ErrorKind, msg: String) -> Poll<io::Result<()>> {
        self.read = ReadState::Failed(kind, msg.clone());
        Poll::Ready(Err(io::Error::new(kind, msg)))
    }

    /// What a WebSocket error during the tunnel means, as an I/O error.
    fn data_error(&self, e: tungstenite::Error) -> io::Error {
        let host = &self.host;
        match e {
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed => io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!(
                    "the connection to the EICE endpoint {host} was lost mid-stream (it ended \
                     without a WebSocket Close)"
                ),
            ),
            tungstenite::Error::Protocol(ProtocolError::SendAfterClosing) => io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("the EICE endpoint {host} already closed the tunnel"),
            ),
            tungstenite::Error::Io(e) => io::Error::new(
                e.kind(),
                format!("the connection to the EICE endpoint {host} failed mid-stream: {e}"),
            ),
            tungstenite::Error::Protocol(p) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the EICE endpoint {host} broke the WebSocket protocol: {p}"),
            ),
            other => io::Error::other(format!("the EICE tunnel through {host} failed: {other}")),
        }
    }

    /// Handles the endpoint's Close frame.
    fn on_close(
        &mut self,
        frame: Option<CloseFrame>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        // Send our reply (tungstenite queued it) now if the socket takes it; otherwise the
        // next flush or shutdown does.
        let _ = Pin::new(&mut self.ws).poll_flush(cx);
        match frame {
            Some(f) if f.code != CloseCode::Normal => {
                let code = u16::from(f.code);
                let reason = f.reason.as_str();
                let hint = if self.received {
                    " (after data: an endpoint also ends a tunnel when its maximum duration \
                     passes, `max_duration` or 3600 s; forwards and SSH hops over it re-dial)"
                } else {
                    " (before any data: check that the instance's security group allows the \
                     port from the endpoint's security group, and that the instance is running)"
                };
                let msg = format!("the EICE endpoint closed the tunnel: {code} {reason}{hint}");
                self.fail(io::ErrorKind::ConnectionAborted, msg)
            }
            _ => {
                self.read = ReadState::Eof;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match &this.read {
                ReadState::Open => {}
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Failed(kind, msg) => {
                    return Poll::Ready(Err(io::Error::new(*kind, msg.clone())));
                }
            }
            // Each poll also flushes a queued pong or close reply first (tungstenite's read).
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => {
                    this.received |= !data.is_empty();
                    this.pending = data;
                }
                Some(Ok(Message::Text(_))) => {
                    let msg = format!(
                        "the EICE endpoint sent a text frame: protocol error (from {})",
                        this.host
                    );
                    return this.fail(io::ErrorKind::InvalidData, msg);
                }
                Some(Ok(Message::Close(frame))) => return this.on_close(frame, cx),
                // Pings: the pong is queued and goes out on the next poll, just below.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => {
                    let e = this.data_error(e);
                    return this.fail(e.kind(), e.to_string());
                }
                None => {
                    let e = this.data_error(tungstenite::Error::ConnectionClosed);
                    return this.fail(e.kind(), e.to_string());
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write != WriteState::Open {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!(
                    "the EICE tunnel through {} is closed for writing (shut down)",
                    this.host
                ),
            )));
        }
        if buf.is_empty() {
            // No empty frames: the endpoint would see nothing, and the CLI's spin on them is
            // a known bug.
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(|e| this.data_error(e))?;
        let n = buf.len().min(MAX_FRAME);
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(|e| this.data_error(e))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(|e| this.data_error(e))?;
        Poll::Ready(Ok(()))
    }

    /// Half-close: sends Close 1000 and flushes it. Reads go on until the endpoint's Close.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // The endpoint closed first (normally, or with an error code), or the tunnel failed:
        // nothing is left to close, so a send that fails now is not an error. (An error here
        // would also keep russh from reporting the lost session: it shuts the stream down
        // before it calls the handler.)
        let peer_closed = !matches!(this.read, ReadState::Open);
        if this.write == WriteState::Open {
            if let Err(e) = ready!(Pin::new(&mut this.ws).poll_ready(cx)) {
                return Poll::Ready(Err(this.data_error(e)));
            }
            let close = Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }));
            match Pin::new(&mut this.ws).start_send(close) {
                Ok(()) => {}
                // The endpoint closed first: only its reply is left to flush.
                Err(_) if peer_closed => {}
                Err(e) => return Poll::Ready(Err(this.data_error(e))),
            }
            this.write = WriteState::Closing;
        }
        if this.write == WriteState::Closing {
            match ready!(Pin::new(&mut this.ws).poll_flush(cx)) {
                Ok(()) => {}
                Err(_) if peer_closed => {}
                Err(e) => return Poll::Ready(Err(this.data_error(e))),
            }
            this.write = WriteState::Closed;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    type ServerWs = WebSocketStream<TcpStream>;

    /// A loopback WebSocket server for one connection, running `serve` on it; gives the URL.
    async fn server<F, Fut>(serve: F) -> (String, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(ServerWs) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            serve(ws).await;
        });
        (
            format!("ws://{addr}/openTunnel?privateIpAddress=fd00%3A%3A1"),
            task,
        )
    }

    /// Dials `url` with a timeout, so a hung test fails instead of hanging.
    async fn dial_ok(url: &str) -> WsStream<MaybeTlsStream<TcpStream>> {
        tokio::time::timeout(Duration::from_secs(10), dial(url))
            .await
            .unwrap()
            .unwrap()
    }

    async fn within<T>(fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("timed out")
    }

    fn close(code: CloseCode, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        }))
    }

    #[tokio::test]
    async fn writes_go_out_as_binary_frames_of_at_most_65000_bytes() {
        let data: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i * 7 % 251) as u8).collect();
        let expected = data.clone();
        let (url, server) = server(move |mut ws| async move {
            let mut got = Vec::new();
            let mut frames = Vec::new();
            loop {
                match ws.next().await.unwrap().unwrap() {
                    Message::Binary(b) => {
                        frames.push(b.len());
                        got.extend_from_slice(&b);
                    }
                    Message::Close(Some(f)) => {
                        assert_eq!(f.code, CloseCode::Normal);
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(
                frames.iter().all(|&n| (1..=MAX_FRAME).contains(&n)),
                "{frames:?}"
            );
            assert!(frames.contains(&MAX_FRAME));
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "payload differs");
            // Our reply to the client's Close goes out on this flush.
            ws.flush().await.unwrap();
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        within(async {
            tunnel.write_all(&data).await.unwrap();
            tunnel.shutdown().await.unwrap();
            let mut rest = Vec::new();
            tunnel.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        })
        .await;
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn server_bytes_arrive_whole_including_continuation_frames() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut expected = b"hello ".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"first half,second half");
        let (url, server) = server(move |mut ws| async move {
            ws.send(Message::Binary(Bytes::from_static(b"hello ")))
                .await
                .unwrap();
            ws.send(Message::Binary(big.into())).await.unwrap();
            ws.send(Message::Binary(Bytes::new())).await.unwrap();
            let first = Frame::message(&b"first half,"[..], OpCode::Data(Data::Binary), false);
            let second = Frame::message(&b"second half"[..], OpCode::Data(Data::Continue), true);
            ws.send(Message::Frame(first)).await.unwrap();
            ws.send(Message::Frame(second)).await.unwrap();
            ws.send(close(CloseCode::Normal, "")).await.unwrap();
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        let mut got = Vec::new();
        within(tunnel.read_to_end(&mut got)).await.unwrap();
        assert!(
            got == expected,
            "{} bytes, expected {}",
            got.len(),
            expected.len()
        );
        // A clean end stays a clean end.
        assert_eq!(within(tunnel.read(&mut [0; 8])).await.unwrap(), 0);
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn a_close_without_a_code_is_a_clean_end() {
        let (url, server) = server(|mut ws| async move {
            ws.send(Message::Binary(Bytes::from_static(b"bye")))
                .await
                .unwrap();
            ws.send(Message::Close(None)).await.unwrap();
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        let mut got = Vec::new();
        within(tunnel.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"bye");
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_sends_close_1000_and_eof_comes_after_the_servers_close() {
        let replied = Arc::new(AtomicBool::new(false));
        let replied_by_server = replied.clone();
        let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
        let (url, server) = server(move |mut ws| async move {
            shut_rx.await.unwrap();
            // Still allowed after the client's half-close: the server has not closed yet.
            ws.send(Message::Binary(Bytes::from_static(b"late data")))
                .await
                .unwrap();
            match ws.next().await.unwrap().unwrap() {
                Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Normal),
                other => panic!("expected Close 1000, got {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            replied_by_server.store(true, Ordering::SeqCst);
            ws.flush().await.unwrap(); // sends the Close reply
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        within(tunnel.shutdown()).await.unwrap();
        shut_tx.send(()).unwrap();
        let mut got = Vec::new();
        within(tunnel.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"late data");
        assert!(
            replied.load(Ordering::SeqCst),
            "EOF came before the server's Close"
        );
        let err = within(tunnel.write(b"more")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn a_close_with_another_code_is_an_error_with_code_and_reason() {
        let (url, server) = server(|mut ws| async move {
            ws.send(close(CloseCode::Error, "target unreachable"))
                .await
                .unwrap();
            let _ = ws.next().await;
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        let err = within(tunnel.read_to_end(&mut Vec::new()))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("the EICE endpoint closed the tunnel: 1011 target unreachable"),
            "{msg}"
        );
        assert!(msg.contains("security group"), "{msg}");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        // Later reads repeat the failure; they never turn it into an end of stream.
        assert!(within(tunnel.read(&mut [0; 8])).await.is_err());
        // Nothing is left to close: shutting down succeeds (russh reports a lost session
        // only after its shutdown of the stream returns Ok).
        within(tunnel.shutdown()).await.unwrap();
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn a_text_frame_is_an_error() {
        let (url, server) = server(|mut ws| async move {
            ws.send(Message::Text("hello".into())).await.unwrap();
            let _ = ws.next().await;
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        let err = within(tunnel.read_to_end(&mut Vec::new()))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the EICE endpoint sent a text frame: protocol error"),
            "{err}"
        );
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(tunnel);
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_connection_is_an_error_not_eof() {
        let (url, server) = server(|mut ws| async move {
            ws.send(Message::Binary(Bytes::from_static(b"partial")))
                .await
                .unwrap();
            drop(ws); // TCP closes without a WebSocket Close
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        let mut buf = [0u8; 7];
        within(tunnel.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"partial");
        let err = within(tunnel.read(&mut [0; 8])).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        assert!(err.to_string().contains("lost mid-stream"), "{err}");
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn pings_are_answered_while_the_client_only_reads() {
        let (url, server) = server(|mut ws| async move {
            ws.send(Message::Ping(Bytes::from_static(b"are you there")))
                .await
                .unwrap();
            let answer = within(ws.next()).await.unwrap().unwrap();
            assert_eq!(answer, Message::Pong(Bytes::from_static(b"are you there")));
            ws.send(Message::Binary(Bytes::from_static(b"pong seen")))
                .await
                .unwrap();
            ws.send(close(CloseCode::Normal, "")).await.unwrap();
            let _ = ws.next().await;
        })
        .await;
        let mut tunnel = dial_ok(&url).await;
        let mut got = Vec::new();
        within(tunnel.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"pong seen");
        within(server).await.unwrap();
    }

    #[tokio::test]
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    async fn the_handshake_is_plain_and_sends_the_url_untouched() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut seen = None;
            let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
                seen = Some(req.clone());
                Ok(resp)
            })
            .await
            .unwrap();
            drop(ws);
            seen.unwrap()
        });
        let path = "/openTunnel?privateIpAddress=fd00%3Aec2%3A%3A23&X-Amz-Credential=a%2Fb";
        let tunnel = dial_ok(&format!("ws://{addr}{path}")).await;
        let req = within(server).await.unwrap();
        assert_eq!(req.uri().to_string(), path);
        let h = req.headers();
        assert_eq!(h["user-agent"], USER_AGENT);
        assert!(USER_AGENT.starts_with("aws-hop/"));
        assert_eq!(h["host"], addr.to_string());
        assert!(h.get("sec-websocket-protocol").is_none());
        assert!(h.get("sec-websocket-extensions").is_none());
        assert!(tunnel.ws.get_ref().get_ref().nodelay().unwrap());
    }

    /// A server that answers the upgrade request with `answer` and closes.
    async fn http_server(answer: String) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut byte = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut byte).await.unwrap();
                req.push(byte[0]);
            }
            tcp.write_all(answer.as_bytes()).await.unwrap();
            let _ = tcp.shutdown().await;
        });
        format!("ws://{addr}/openTunnel?x=1")
    }

    #[tokio::test]
    async fn a_403_answer_is_a_clear_error() {
        let body = format!(
            r#"{{"ErrorCode":"AccessDenied","Message":"Not authorized{}"}}END-OF-BODY"#,
            " ".repeat(400)
        );
        let answer = format!(
            "HTTP/1.1 403 Forbidden\r\nx-amzn-RequestId: 0a1b2c3d-req\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let url = http_server(answer).await;
        let err = within(dial(&url)).await.err().expect("a 403 must fail");
        let Error::EiceRefused {
            status,
            request_id,
            body: shown,
            ..
        } = &err
        else {
            panic!("wrong error: {err}");
        };
        assert_eq!(*status, 403);
        assert_eq!(request_id.as_deref(), Some("0a1b2c3d-req"));
        assert!(shown.len() <= BODY_SHOWN);
        let msg = err.to_string();
        assert!(
            msg.contains("refused to open the tunnel: HTTP 403"),
            "{msg}"
        );
        assert!(msg.contains("request id 0a1b2c3d-req"), "{msg}");
        assert!(
            msg.contains(r#"{"ErrorCode":"AccessDenied","Message":"Not authorized"#),
            "{msg}"
        );
        assert!(!msg.contains("END-OF-BODY"), "{msg}");
        assert!(msg.contains("check this machine's clock"), "{msg}");
        assert!(msg.contains("ec2-instance-connect:OpenTunnel"), "{msg}");
    }

    #[tokio::test]
    async fn a_signature_outside_its_window_says_to_check_the_clock() {
        for message in [
            "Request has expired: X-Amz-Date 20260101T000000Z + 60 s is before now",
            "Signature not yet current: 20260101T000500Z is still later than now",
        ] {
            let body = format!(r#"{{"ErrorCode":"AccessDeniedException","Message":"{message}"}}"#);
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\nx-amzn-RequestId: req-7\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let url = http_server(answer).await;
            let err = within(dial(&url)).await.err().expect("a 403 must fail");
            let msg = err.to_string();
            assert!(matches!(err, Error::EiceConnect { .. }), "{msg}");
            assert!(msg.contains("outside its validity window"), "{msg}");
            assert!(msg.contains("check this machine's clock"), "{msg}");
            assert!(msg.contains("HTTP 403 (request id req-7)"), "{msg}");
            assert!(msg.contains(message), "{msg}");
        }
    }

    #[tokio::test]
    async fn a_429_for_concurrent_tunnels_names_the_limit() {
        let body = r#"{"ErrorCode":"ThrottlingException","Message":"The maximum number of concurrent connections has been reached."}"#;
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let url = http_server(answer).await;
        let msg = within(dial(&url)).await.err().unwrap().to_string();
        assert!(msg.contains("HTTP 429: {\"ErrorCode\""), "{msg}");
        assert!(msg.contains("at most 20 concurrent connections"), "{msg}");
    }

    #[tokio::test]
    async fn a_400_answer_points_at_the_parameters() {
        let body = r#"{"ErrorCode":"InvalidParameter","Message":"The specified RemotePort is not valid."}"#;
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let url = http_server(answer).await;
        let msg = within(dial(&url)).await.err().unwrap().to_string();
        assert!(
            msg.contains("HTTP 400: {\"ErrorCode\":\"InvalidParameter\""),
            "{msg}"
        );
        assert!(!msg.contains("request id"), "{msg}");
        assert!(msg.contains("(22 or 3389)"), "{msg}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_host() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = within(dial(&format!("ws://{addr}/openTunnel?x=1")))
            .await
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(matches!(err, Error::EiceConnect { .. }), "{msg}");
        assert!(msg.contains(&format!("through {addr}")), "{msg}");
        assert!(msg.contains("check"), "{msg}");
    }

    #[tokio::test]
    async fn only_ws_and_wss_urls_are_dialed() {
        let msg = dial("https://example.invalid/openTunnel")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("wss://"), "{msg}");
    }

    #[test]
    fn body_start_is_one_short_line() {
        assert_eq!(body_start(b"  {\"a\":\n1}\r\n"), "{\"a\": 1}");
        let long = "é".repeat(200); // 400 bytes
        let cut = body_start(long.as_bytes());
        assert!(cut.len() <= BODY_SHOWN && cut.len() >= BODY_SHOWN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
