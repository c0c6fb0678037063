//! The WebSocket edge: upgrade, authentication (header or first `Auth` frame), decoding every
//! frame into the typed `ClientFrame` once, and the bridge into a `DeviceActor`.
//!
//! Each socket has a writer task that owns the `actix_ws::Session`: the actor puts frames in a
//! bounded channel ([`OUTBOUND_FRAMES`]) and the writer encodes them in the connection's format
//! (postcard for `hush.postcard`, JSON for `hush.json`; without a subprotocol, the format of
//! the client's first frame). A close request overtakes the buffer unless it asks to flush it.

use std::cell::Cell;
use std::rc::Rc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Item, Message, MessageStream, ProtocolError, Session};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use hush_actors::accounts::{self, Authed};
use hush_actors::delivery::registry::{DeviceHandle, SessionHandle};
use hush_actors::device::{
    CloseFrame, Closer, Inbound, Outbound, Sink, Wiring, CLOSE_INVALID_PAYLOAD, CLOSE_PROTOCOL, CLOSE_TOO_BIG,
};
use hush_actors::hub::Hub;
use hush_actors::limits::{AUTH_TIMEOUT, OUTBOUND_FRAMES};
use hush_actors::mailbox;
use hush_protocol::limits::MAX_FRAME_BYTES;
use hush_protocol::wire::{
    ClientFrame, ErrorCode, ServerFrame, CLOSE_UNAUTHORIZED, SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD,
};
use tokio::sync::oneshot;

use crate::auth::bearer;
use crate::error::ApiError;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Format {
    Unset,
    Postcard,
    Json,
}

pub(crate) type SharedFormat = Rc<Cell<Format>>;

fn follow(fmt: &SharedFormat, f: Format) {
    if fmt.get() == Format::Unset {
        fmt.set(f);
    }
}

/// `GET /v1/ws`: upgrades and hands the socket to a `DeviceActor` once authenticated.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
    permits: web::Data<crate::edge::SocketPermits>,
) -> Result<HttpResponse, ApiError> {
    // Held from the upgrade until the socket closes: one that never authenticates counts too.
    let permit = permits.0.clone().try_acquire_owned().map_err(|_| ApiError::Unavailable)?;
    // A bad token in the header is refused before the upgrade, with a JSON 401.
    // So is a session that must still pass MFA (401 `mfa_required`) or set a new password
    // (403 `password_change_required`).
    let header_auth = match bearer(&req) {
        Some(t) => {
            let a = accounts::authenticate(&hub, &t).await?;
            crate::auth::mfa_gate(&a)?;
            crate::auth::password_gate(&a)?;
            Some(a)
        }
        None => None,
    };
    let (resp, session, stream) =
        actix_ws::handle_with_protocols(&req, body, &[SUBPROTOCOL_POSTCARD, SUBPROTOCOL_JSON])
            .map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let chosen =
        resp.headers().get(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
    let format = match chosen {
        Some(SUBPROTOCOL_POSTCARD) => Format::Postcard,
        Some(SUBPROTOCOL_JSON) => Format::Json,
        _ => Format::Unset,
    };
    let stream = Reassembler::new(stream.max_frame_size(MAX_FRAME_BYTES));
    let hub = hub.into_inner();
    let fmt: SharedFormat = Rc::new(Cell::new(format));
    // The task of a connection lives as long as the socket: it holds only what the socket's
    // life needs (issue 15's heap profile found 12 KB per idle connection here when the
    // authentication's state and moved-from locals were part of it).
    match header_auth {
        Some(authed) => {
            actix_web::rt::spawn(run_device(hub, session, stream, authed, fmt).map(move |()| drop(permit)));
        }
        None => {
            actix_web::rt::spawn(
                first_frame_connection(hub, session, stream, fmt).map(move |()| drop(permit)),
            );
        }
    }
    Ok(resp)
}

/// The sending half of a WebSocket, whichever engine runs it (actix-ws, or tungstenite on the
/// socket taken over after the upgrade: [`crate::upgrade`]). A frame may wait in the engine's
/// buffer until [`WsSink::flush`].
pub(crate) trait WsSink {
    /// Queues a text frame.
    fn text(&mut self, t: String) -> impl std::future::Future<Output = Result<(), ()>>;
    /// Queues a binary frame.
    fn binary(&mut self, b: Vec<u8>) -> impl std::future::Future<Output = Result<(), ()>>;
    /// Queues a ping.
    fn ping(&mut self) -> impl std::future::Future<Output = Result<(), ()>>;
    /// Queues a pong.
    fn pong(&mut self, p: &[u8]) -> impl std::future::Future<Output = Result<(), ()>>;
    /// Writes what is queued.
    fn flush(&mut self) -> impl std::future::Future<Output = Result<(), ()>>;
    /// Sends a close frame (with its code and reason, if any) and ends the socket.
    fn close(self, why: Option<(u16, &str)>) -> impl std::future::Future<Output = ()>;
}

impl WsSink for Session {
    async fn text(&mut self, t: String) -> Result<(), ()> {
        Session::text(self, t).await.map_err(|_| ())
    }
    async fn binary(&mut self, b: Vec<u8>) -> Result<(), ()> {
        Session::binary(self, b).await.map_err(|_| ())
    }
    async fn ping(&mut self) -> Result<(), ()> {
        Session::ping(self, b"").await.map_err(|_| ())
    }
    async fn pong(&mut self, p: &[u8]) -> Result<(), ()> {
        Session::pong(self, p).await.map_err(|_| ())
    }
    async fn flush(&mut self) -> Result<(), ()> {
        // actix-http's dispatcher writes whenever it is polled.
        Ok(())
    }
    async fn close(self, why: Option<(u16, &str)>) {
        let reason = why.map(|(code, reason)| CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_owned()),
        });
        let _ = Session::close(self, reason).await;
    }
}

/// A socket without an `Authorization` header: authenticated by its first frame, then run.
pub(crate) async fn first_frame_connection<S, St>(
    hub: std::sync::Arc<Hub>,
    mut sink: S,
    mut stream: St,
    fmt: SharedFormat,
) where
    S: WsSink + 'static,
    St: Stream<Item = Incoming> + Unpin + 'static,
{
    // Boxed: the authentication's state (store reads) is not kept for the socket's life.
    match Box::pin(first_frame_auth(&hub, &mut sink, &mut stream, &fmt)).await {
        Ok(authed) => run_device(hub, sink, stream, authed, fmt).await,
        Err((code, why)) => sink.close(Some((code, &why))).await,
    }
}

/// Writes a typed error frame before a close.
async fn refuse<S: WsSink>(sink: &mut S, fmt: &SharedFormat, code: ErrorCode, message: String) {
    let err = ServerFrame::Error { id: None, code, message, retry_after_s: None };
    if write(sink, Outbound::Frame(Box::new(err)), fmt).await.is_ok() {
        let _ = sink.flush().await;
    }
}

/// Authentication by a first `Auth` frame (within [`AUTH_TIMEOUT`]); the close code and
/// reason when refused (an error frame already written where the client should learn why).
async fn first_frame_auth<S: WsSink, St: Stream<Item = Incoming> + Unpin>(
    hub: &std::sync::Arc<Hub>,
    sink: &mut S,
    stream: &mut St,
    fmt: &SharedFormat,
) -> Result<Authed, (u16, String)> {
    let unauthorized = |why: &str| (CLOSE_UNAUTHORIZED, why.to_owned());
    let frame = match tokio::time::timeout(AUTH_TIMEOUT, stream.next()).await {
        Ok(Some(Incoming::Text(t))) => {
            follow(fmt, Format::Json);
            ClientFrame::decode_text(&t)
        }
        Ok(Some(Incoming::Binary(b))) => {
            follow(fmt, Format::Postcard);
            ClientFrame::decode_binary(&b)
        }
        Ok(Some(Incoming::Violation { code, reason })) => return Err((code, reason.to_owned())),
        _ => return Err(unauthorized("authentication required")),
    };
    let token = match frame {
        Ok(ClientFrame::Auth { token }) => token,
        Ok(_) => return Err(unauthorized("the first frame must be Auth")),
        Err(e) => {
            refuse(sink, fmt, e.code(), e.to_string()).await;
            return Err(unauthorized("the first frame must be Auth"));
        }
    };
    let refused = match accounts::authenticate(hub, &token).await {
        // A session with MFA pending (or past its enrolment deadline) gets no socket, nor does
        // one that logged in with a one-time password.
        Ok(a) if a.mfa.block(hush_actors::now_ms()).is_some() => "mfa_required",
        Ok(a) if a.password_change_required => "password_change_required",
        Ok(a) => return Ok(a),
        Err(accounts::AccountError::SessionExpired) => "session expired",
        Err(_) => "invalid or revoked token",
    };
    refuse(sink, fmt, ErrorCode::InvalidRequest, refused.into()).await;
    Err(unauthorized(refused))
}

/// Starts an authenticated socket: its session's actor on a task of its own; returns its
/// device's actor joined with the socket writer, for this connection's task. Not `async`, so
/// that none of the setup's locals is part of the long-lived future.
pub(crate) fn run_device<S, St>(
    hub: std::sync::Arc<Hub>,
    sink: S,
    stream: St,
    authed: Authed,
    fmt: SharedFormat,
) -> impl std::future::Future<Output = ()>
where
    S: WsSink + 'static,
    St: Stream<Item = Incoming> + Unpin + 'static,
{
    let (tx, rx) = mailbox::bounded(OUTBOUND_FRAMES);
    let (closer, close_rx) = Closer::new();
    let in_fmt = fmt.clone();
    let inbound = stream.map(move |item| decode(item, &in_fmt));
    let (device, device_rx) = DeviceHandle::channel();
    let (session_handle, session_rx) = SessionHandle::channel();
    let wiring = Wiring {
        addr: authed.session.device.clone(),
        session_id: authed.session.id.clone(),
        mailbox: (device.clone(), device_rx),
        session: session_handle,
        sink: Sink { frames: tx, close: closer },
    };
    let session_actor = hush_actors::session::serve(
        hub.clone(),
        authed.session,
        authed.admin,
        authed.mfa,
        device,
        session_rx,
    );
    tokio::spawn(session_actor);
    let actor = hush_actors::device::serve(hub, wiring, inbound);
    futures_util::future::join(actor, writer(sink, rx, close_rx, fmt)).map(|_| ())
}

/// A text message that is not UTF-8 (both engines).
pub(crate) const NOT_UTF8: Incoming =
    Incoming::Violation { code: CLOSE_INVALID_PAYLOAD, reason: "text message is not UTF-8" };
/// A continuation without a first fragment, or a new message inside a fragmented one.
pub(crate) const BROKEN_FRAGMENTS: Incoming =
    Incoming::Violation { code: CLOSE_PROTOCOL, reason: "broken fragment sequence" };
/// A message over [`MAX_FRAME_BYTES`] in all.
pub(crate) const TOO_LARGE: Incoming =
    Incoming::Violation { code: CLOSE_TOO_BIG, reason: "message too large" };
/// Any other WebSocket protocol violation.
pub(crate) const PROTOCOL_ERROR: Incoming =
    Incoming::Violation { code: CLOSE_PROTOCOL, reason: "protocol error" };

/// A client message, reassembled from its fragments, or why the socket must close.
pub(crate) enum Incoming {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    Close,
    /// The close code and reason: a message over [`MAX_FRAME_BYTES`] (1009), a text message
    /// that is not UTF-8 (1007), a broken fragment sequence or frame (1002).
    Violation {
        code: u16,
        reason: &'static str,
    },
}

/// Reassembles fragmented messages, at most [`MAX_FRAME_BYTES`] in all: a longer one is a
/// typed [`Incoming::Violation`] with 1009 (actix-ws's own aggregation reports it as an I/O
/// error, indistinguishable from a broken socket). The fragments of a refused message are
/// read and dropped, never kept.
struct Reassembler {
    stream: MessageStream,
    parts: BytesMut,
    /// `Some(is_text)` while a fragmented message is being read.
    open: Option<bool>,
    /// The open message is already refused: its further fragments are dropped.
    dropping: bool,
}

impl Reassembler {
    fn new(stream: MessageStream) -> Self {
        Self { stream, parts: BytesMut::new(), open: None, dropping: false }
    }

    fn finish(&mut self, is_text: bool) -> Incoming {
        let bytes = std::mem::take(&mut self.parts).freeze();
        if !is_text {
            return Incoming::Binary(bytes);
        }
        match String::from_utf8(bytes.to_vec()) {
            Ok(t) => Incoming::Text(t),
            Err(_) => NOT_UTF8,
        }
    }

    /// Adds a fragment; `Some` when the message is complete or refused.
    fn fragment(&mut self, item: Item) -> Option<Incoming> {
        let (bytes, first, last) = match item {
            Item::FirstText(b) => (b, Some(true), false),
            Item::FirstBinary(b) => (b, Some(false), false),
            Item::Continue(b) => (b, None, false),
            Item::Last(b) => (b, None, true),
        };
        match (first, self.open) {
            (Some(_), Some(_)) | (None, None) => return Some(BROKEN_FRAGMENTS),
            (Some(is_text), None) => {
                self.open = Some(is_text);
                self.dropping = false;
            }
            (None, Some(_)) => {}
        }
        let is_text = self.open.unwrap_or(false);
        if last {
            self.open = None;
        }
        if self.dropping {
            return None;
        }
        if self.parts.len() + bytes.len() > MAX_FRAME_BYTES {
            self.parts = BytesMut::new();
            self.dropping = true;
            return Some(TOO_LARGE);
        }
        self.parts.extend_from_slice(&bytes);
        last.then(|| self.finish(is_text))
    }
}

impl Stream for Reassembler {
    type Item = Incoming;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Incoming>> {
        use std::task::Poll;
        loop {
            let msg = match std::pin::Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Ok(m))) => m,
                Poll::Ready(Some(Err(ProtocolError::Overflow))) => {
                    return Poll::Ready(Some(Incoming::Violation {
                        code: CLOSE_TOO_BIG,
                        reason: "frame too large",
                    }))
                }
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Some(PROTOCOL_ERROR)),
            };
            let item = match msg {
                Message::Text(t) => Incoming::Text(t.to_string()),
                Message::Binary(b) => Incoming::Binary(b),
                Message::Ping(p) => Incoming::Ping(p),
                Message::Pong(_) => Incoming::Pong,
                Message::Close(_) => Incoming::Close,
                Message::Continuation(item) => match self.fragment(item) {
                    Some(i) => i,
                    None => continue,
                },
                Message::Nop => continue,
            };
            return Poll::Ready(Some(item));
        }
    }
}

fn decode(item: Incoming, fmt: &SharedFormat) -> Inbound {
    let parsed = match item {
        Incoming::Text(t) => {
            follow(fmt, Format::Json);
            ClientFrame::decode_text(&t)
        }
        Incoming::Binary(b) => {
            follow(fmt, Format::Postcard);
            ClientFrame::decode_binary(&b)
        }
        Incoming::Ping(p) => return Inbound::Ping(p.to_vec()),
        Incoming::Pong => return Inbound::Pong,
        Incoming::Close => return Inbound::Closed,
        Incoming::Violation { code, reason } => return Inbound::Protocol { code, reason: reason.into() },
    };
    match parsed {
        Ok(f) => Inbound::Frame(f),
        Err(e) => Inbound::Bad(e),
    }
}

async fn write<S: WsSink>(sink: &mut S, item: Outbound, fmt: &SharedFormat) -> Result<(), ()> {
    match item {
        Outbound::Frame(f) => match fmt.get() {
            Format::Postcard => match f.encode_binary() {
                Ok(b) => sink.binary(b).await,
                Err(e) => {
                    tracing::error!(error = %e, "frame not encodable");
                    Ok(())
                }
            },
            Format::Json | Format::Unset => match f.encode_text() {
                Ok(t) => sink.text(t).await,
                Err(e) => {
                    tracing::error!(error = %e, "frame not encodable");
                    Ok(())
                }
            },
        },
        Outbound::Ping => sink.ping().await,
        Outbound::Pong(p) => sink.pong(&p).await,
    }
}

async fn writer<S: WsSink>(
    mut session: S,
    rx: mailbox::Receiver<Outbound>,
    mut close_rx: oneshot::Receiver<CloseFrame>,
    fmt: SharedFormat,
) {
    loop {
        tokio::select! {
            biased;
            c = &mut close_rx => {
                match c {
                    Ok(c) => {
                        if c.flush {
                            while let Ok(item) = rx.try_recv() {
                                if write(&mut session, item, &fmt).await.is_err() {
                                    return;
                                }
                            }
                        }
                        session.close(Some((c.code, &c.reason))).await;
                    }
                    Err(_) => session.close(None).await,
                }
                return;
            }
            item = rx.recv_async() => match item {
                Ok(item) => {
                    // This frame and whatever else is queued go out in one write.
                    let mut next = Some(item);
                    while let Some(item) = next {
                        if write(&mut session, item, &fmt).await.is_err() {
                            return;
                        }
                        next = rx.try_recv().ok();
                    }
                    if session.flush().await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    session.close(None).await;
                    return;
                }
            }
        }
    }
}
