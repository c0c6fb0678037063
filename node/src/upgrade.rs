//! The WebSocket engine that owns the socket after the upgrade (`--ws-engine tungstenite`, the
//! default).
//!
//! With actix-ws (the fallback engine, `--ws-engine actix`) a WebSocket stays an HTTP/1 response stream of actix-http's
//! dispatcher for its whole life: 8 KiB read and 8 KiB write buffers (constants of actix-http),
//! the dispatcher's state and two channels per socket, about 60% of an idle connection's heap
//! (issue 15's heap profile, `benches/README.md`). Here actix-http hands the connection over at
//! the upgrade (its `upgrade` service): this module answers the handshake itself, drops
//! actix-http's buffers and runs the socket with tungstenite, whose read buffer is
//! [`READ_BUFFER`] and whose write buffer only holds frames until the writer's flush. What
//! happens after the handshake (authentication, the device and session actors, formats, close
//! codes) is the same code as the default engine's ([`crate::ws`]).
//!
//! Requests answered here (every HTTP/1 request with `Upgrade: websocket`): `GET /v1/ws` with
//! a valid WebSocket handshake is upgraded; anything else gets the JSON error the routes would
//! give (400 for a bad handshake, 404 for another path), and its connection is closed. Both
//! answers are encoded by actix-http's own HTTP/1 codec.

use std::rc::Rc;
use std::sync::Arc;

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::{h1, Request};
use actix_web::{HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use hush_actors::hub::Hub;
use hush_protocol::limits::MAX_FRAME_BYTES;
use hush_protocol::wire::{SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::error::ApiError;
use crate::ws::{Format, Incoming, SharedFormat, WsSink};

/// Which code runs a WebSocket after its upgrade (`--ws-engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WsEngine {
    /// The node takes the socket over at the upgrade and runs it with tungstenite and small
    /// buffers (this module; the default).
    #[default]
    Tungstenite,
    /// actix-ws inside actix-http's HTTP/1 dispatcher (the engine before session 11, kept as a
    /// fallback).
    Actix,
}

/// Bytes of a socket's read buffer: tungstenite allocates it up front and zero-fills it on every
/// read, so all of it is resident from the first frame; a larger frame grows it while it is
/// read. 512 bytes hold a 256-byte chat message's frame whole: against 4 KiB, 1 KiB took 3 KB
/// off every idle connection (17.4 -> 14.2 KB at 10,000) at no cost to the relay's rate, and
/// 512 bytes half a KiB more (`benches/README.md`, sessions 11 and 12).
pub const READ_BUFFER: usize = 512;

/// Frames are buffered up to this many bytes before the writer's flush writes them anyway.
const WRITE_BUFFER: usize = 64 * 1024;

/// What the upgrade service needs.
#[derive(Clone)]
pub struct UpgradeContext {
    /// The node.
    pub hub: Arc<Hub>,
    /// The bound on open WebSocket connections.
    pub permits: crate::edge::SocketPermits,
}

/// The sending half of a socket run by tungstenite.
pub(crate) struct TungSink<T: AsyncRead + AsyncWrite + Unpin + 'static>(
    SplitSink<WebSocketStream<Lingering<T>>, Message>,
);

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> WsSink for TungSink<T> {
    async fn text(&mut self, t: String) -> Result<(), ()> {
        self.0.feed(Message::text(t)).await.map_err(|_| ())
    }
    async fn binary(&mut self, b: Vec<u8>) -> Result<(), ()> {
        self.0.feed(Message::binary(b)).await.map_err(|_| ())
    }
    async fn ping(&mut self) -> Result<(), ()> {
        self.0.feed(Message::Ping(Bytes::new())).await.map_err(|_| ())
    }
    async fn pong(&mut self, p: &[u8]) -> Result<(), ()> {
        self.0.feed(Message::Pong(Bytes::copy_from_slice(p))).await.map_err(|_| ())
    }
    async fn flush(&mut self) -> Result<(), ()> {
        self.0.flush().await.map_err(|_| ())
    }
    async fn close(mut self, why: Option<(u16, &str)>) {
        let frame = why.map(|(code, reason)| CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(reason.to_owned()),
        });
        let _ = self.0.send(Message::Close(frame)).await;
        let _ = self.0.close().await;
    }
}

/// The receiving half: client messages as the default engine's reader gives them (tungstenite
/// reassembles fragments and answers pings itself, so a ping only counts as a sign of life).
pub(crate) struct TungInbound<T: AsyncRead + AsyncWrite + Unpin + 'static> {
    inner: SplitStream<WebSocketStream<Lingering<T>>>,
    done: bool,
}

fn incoming(item: Result<Message, WsError>) -> Option<Incoming> {
    Some(match item {
        Ok(Message::Text(t)) => Incoming::Text(t.as_str().to_owned()),
        Ok(Message::Binary(b)) => Incoming::Binary(b),
        Ok(Message::Ping(_) | Message::Pong(_)) => Incoming::Pong,
        Ok(Message::Close(_)) => Incoming::Close,
        Ok(Message::Frame(_)) => return None,
        Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => crate::ws::TOO_LARGE,
        Err(WsError::Utf8(_)) => crate::ws::NOT_UTF8,
        Err(WsError::Protocol(
            ProtocolError::ExpectedFragment(_) | ProtocolError::UnexpectedContinueFrame,
        )) => crate::ws::BROKEN_FRAGMENTS,
        Err(WsError::Protocol(_) | WsError::Capacity(_)) => crate::ws::PROTOCOL_ERROR,
        // The connection ended (closed, reset, I/O error).
        Err(_) => Incoming::Close,
    })
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Stream for TungInbound<T> {
    type Item = Incoming;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Incoming>> {
        use std::task::Poll;
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let item = match std::pin::Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(item)) => item,
            };
            let ends = item.is_err();
            match incoming(item) {
                Some(i) => {
                    self.done = ends;
                    return Poll::Ready(Some(i));
                }
                None => continue,
            }
        }
    }
}

/// How long a closed connection's socket is still read (and what arrives dropped) before it is
/// closed: a client still writing when the node closes (an oversized message, a revocation)
/// would otherwise get a TCP reset, which can discard the close frame it has not read yet
/// (actix-http waits the same way: its `client_disconnect_timeout`, 1 s).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The socket of an upgraded connection: when the connection drops it, the socket's write side
/// is shut down (the client reads the close frame, then the end) and what the client still sends
/// is read and dropped for at most [`LINGER`], then the socket closes.
///
/// `head` holds bytes that go out before anything else: the `101` answer of a connection
/// authenticated by its header, which then leaves in one write with the `Ready` frame that
/// always follows it (one `sendto` a connection less, `benches/README.md`, session 14). It is
/// written by the first write, flush or shutdown, or when the connection is dropped.
pub(crate) struct Lingering<T: AsyncRead + AsyncWrite + Unpin + 'static> {
    io: Option<T>,
    head: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Lingering<T> {
    fn new(io: T, head: Vec<u8>) -> Self {
        Lingering { io: Some(io), head }
    }

    /// Writes what is left of `head` (on its own).
    fn poll_head(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let Some(io) = self.io.as_mut() else { return Poll::Ready(Ok(())) };
        while !self.head.is_empty() {
            match std::task::ready!(std::pin::Pin::new(&mut *io).poll_write(cx, &self.head))? {
                0 => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                n => drop(self.head.drain(..n)),
            }
        }
        self.head = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Drop for Lingering<T> {
    fn drop(&mut self) {
        let Some(mut io) = self.io.take() else { return };
        let head = std::mem::take(&mut self.head);
        actix_web::rt::spawn(async move {
            use tokio::io::AsyncReadExt;
            if !head.is_empty() {
                let _ = io.write_all(&head).await;
            }
            let _ = io.shutdown().await;
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(LINGER, async {
                while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> AsyncRead for Lingering<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.io.as_mut() {
            Some(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> AsyncWrite for Lingering<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()));
        };
        // The head and the first frames in one vectored write; what of the head a short write
        // leaves goes first next time.
        if !this.head.is_empty() && !buf.is_empty() {
            let bufs = [std::io::IoSlice::new(&this.head), std::io::IoSlice::new(buf)];
            let n = std::task::ready!(std::pin::Pin::new(&mut *io).poll_write_vectored(cx, &bufs))?;
            let head = this.head.len();
            if n > head {
                this.head = Vec::new();
                return Poll::Ready(Ok(n - head));
            }
            drop(this.head.drain(..n));
        }
        std::task::ready!(this.poll_head(cx))?;
        match this.io.as_mut() {
            Some(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_head(cx))?;
        match self.io.as_mut() {
            Some(io) => std::pin::Pin::new(io).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_head(cx))?;
        match self.io.as_mut() {
            Some(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// The subprotocol chosen for a request: the first one the client lists that the node speaks
/// (as actix-ws chooses).
fn select_protocol(req: &Request) -> Option<&'static str> {
    for listed in req.headers().get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(listed) = listed.to_str() else { continue };
        for p in listed.split(',').map(str::trim) {
            if p == SUBPROTOCOL_POSTCARD {
                return Some(SUBPROTOCOL_POSTCARD);
            }
            if p == SUBPROTOCOL_JSON {
                return Some(SUBPROTOCOL_JSON);
            }
        }
    }
    None
}

/// Writes `err` as the JSON answer the routes give (status, headers, body; through actix-http's
/// codec, in one write) and closes the connection.
async fn answer<T: AsyncRead + AsyncWrite + Unpin>(mut framed: Framed<T, h1::Codec>, err: ApiError) {
    let (head, body) = err.error_response().into_parts();
    let body = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let mut head: actix_http::Response<()> = head.into();
    head.head_mut().set_connection_type(actix_http::ConnectionType::Close);
    let size = actix_http::body::BodySize::Sized(body.len() as u64);
    let _ = framed.feed(h1::Message::Item((head, size))).await;
    let _ = framed.feed(h1::Message::Chunk(Some(body))).await;
    let _ = framed.feed(h1::Message::Chunk(None)).await;
    let _ = framed.flush().await;
    let _ = framed.into_parts().io.shutdown().await;
}

/// What a request that may be upgraded brought: checked, and what the connection holds.
struct Admitted {
    /// Counts the connection against its address until the handshake is answered.
    ticket: Option<crate::edge::Admitted>,
    /// Held from the upgrade until the socket closes: one that never authenticates counts too.
    permit: tokio::sync::OwnedSemaphorePermit,
    /// The session of a token given in the header.
    header_auth: Option<hush_actors::accounts::Authed>,
    protocol: Option<&'static str>,
    /// The `101` answer (`Sec-WebSocket-Accept` and the chosen subprotocol).
    switching: actix_http::Response<()>,
}

/// The checks the route makes before an upgrade, in its order: the address gate of the HTTP
/// edge (`edge::guard` does it for the routes), the path, the handshake, the connection bound,
/// and a token in the header (refused with a JSON 401, as is a session that must still pass MFA,
/// or 403 if it must set a new password).
async fn admit(ctx: &UpgradeContext, req: &Request) -> Result<Admitted, ApiError> {
    let ticket = crate::edge::admit(req)?;
    if req.path() != "/v1/ws" {
        return Err(ApiError::NotFound);
    }
    let mut switching = actix_http::ws::handshake(req.head())
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let permit = ctx.permits.0.clone().try_acquire_owned().map_err(|_| ApiError::Unavailable)?;
    let header_auth = match crate::auth::bearer_of(req.headers()) {
        Some(t) => {
            let a = hush_actors::accounts::authenticate(&ctx.hub, &t).await?;
            crate::auth::mfa_gate(&a)?;
            crate::auth::password_gate(&a)?;
            Some(a)
        }
        None => None,
    };
    let protocol = select_protocol(req);
    if let Some(p) = protocol {
        switching.insert_header((actix_web::http::header::SEC_WEBSOCKET_PROTOCOL, p));
    }
    Ok(Admitted { ticket, permit, header_auth, protocol, switching: switching.finish().drop_body() })
}

/// The upgrade service: one call per HTTP/1 request with `Upgrade: websocket`. Every refusal
/// is answered here (never an `Err`).
pub async fn upgrade<T>(
    ctx: Rc<UpgradeContext>,
    req: Request,
    framed: Framed<T, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let admitted = match admit(&ctx, &req).await {
        Ok(a) => a,
        Err(e) => {
            answer(framed, e).await;
            return Ok(());
        }
    };
    let Admitted { ticket, permit, header_auth, protocol, switching } = admitted;
    let mut framed = framed;
    let answer = h1::Message::Item((switching, actix_http::body::BodySize::None));
    if std::pin::Pin::new(&mut framed).write(answer).is_err() {
        return Ok(());
    }
    // A socket authenticated by its header gets `Ready` at once: its `101` stays in the write
    // buffer and goes with it (see [`Lingering`]). One that still has to send `Auth` needs the
    // `101` now.
    if header_auth.is_none() && framed.flush().await.is_err() {
        return Ok(());
    }
    let parts = framed.into_parts();
    let (io, already_read, head) = (parts.io, parts.read_buf, parts.write_buf.to_vec());
    drop(ticket);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let ws = WebSocketStream::from_partially_read(
        Lingering::new(io, head),
        already_read.to_vec(),
        Role::Server,
        Some(config),
    )
    .await;
    let (sink, stream) = ws.split();
    let (sink, stream) = (TungSink(sink), TungInbound { inner: stream, done: false });
    let format = match protocol {
        Some(SUBPROTOCOL_POSTCARD) => Format::Postcard,
        Some(SUBPROTOCOL_JSON) => Format::Json,
        _ => Format::Unset,
    };
    let fmt: SharedFormat = Rc::new(std::cell::Cell::new(format));
    let hub = ctx.hub.clone();
    // The connection runs as a task of its own, so that actix-http's dispatcher (and what is
    // left of its state) ends now.
    match header_auth {
        Some(authed) => {
            actix_web::rt::spawn(
                crate::ws::run_device(hub, sink, stream, authed, fmt).map(move |()| drop(permit)),
            );
        }
        None => {
            actix_web::rt::spawn(
                crate::ws::first_frame_connection(hub, sink, stream, fmt).map(move |()| drop(permit)),
            );
        }
    }
    Ok(())
}

/// Builds the HTTP server with this engine: the routes of `app` (as `HttpServer` would run
/// them: same keep-alive and request timeouts, `TCP_NODELAY`, the address gate on connect) and
/// [`upgrade`] as actix-http's upgrade service. Returns the server (not yet running) and its
/// address.
pub fn serve<F, I, S, B>(
    app: F,
    listener: std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
    gate: Arc<crate::edge::AddressGate>,
    workers: usize,
    ctx: UpgradeContext,
) -> anyhow::Result<(actix_server::Server, std::net::SocketAddr)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, Request>,
    S: actix_service::ServiceFactory<Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    use actix_http::{HttpService, KeepAlive};
    use actix_rt::net::TcpStream;
    use actix_service::{fn_service, map_config, ServiceFactoryExt};
    use actix_tls::accept::rustls_0_23::TlsStream;
    use std::time::Duration;

    let addr = listener.local_addr()?;
    let builder = actix_server::Server::build().workers(workers).disable_signals().shutdown_timeout(5);
    let builder = match tls {
        None => builder.listen("hush", listener, move || {
            let (gate, ctx) = (gate.clone(), Rc::new(ctx.clone()));
            let routes = app().into_factory().map_err(|e| e.into().error_response());
            HttpService::build()
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .local_addr(addr)
                .on_connect_ext(move |io: &TcpStream, ext| gate.on_connect(io, ext))
                .upgrade(fn_service(move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
                    upgrade(ctx.clone(), req, framed)
                }))
                .finish(map_config(routes, |()| actix_web::dev::AppConfig::default()))
                .tcp()
        })?,
        Some(config) => builder.listen("hush", listener, move || {
            let (gate, ctx) = (gate.clone(), Rc::new(ctx.clone()));
            let routes = app().into_factory().map_err(|e| e.into().error_response());
            HttpService::build()
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .local_addr(addr)
                .on_connect_ext(move |io: &TlsStream<TcpStream>, ext| gate.on_connect(io, ext))
                .upgrade(fn_service(
                    move |(req, framed): (Request, Framed<TlsStream<TcpStream>, h1::Codec>)| {
                        upgrade(ctx.clone(), req, framed)
                    },
                ))
                .finish(map_config(routes, |()| actix_web::dev::AppConfig::default()))
                .rustls_0_23(config.clone())
        })?,
    };
    Ok((builder.run(), addr))
}
