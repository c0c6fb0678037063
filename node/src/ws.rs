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
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use futures_util::StreamExt;
use hush_actors::accounts::{self, Authed};
use hush_actors::device::{CloseFrame, DeviceActor, Inbound, Outbound, Sink, CLOSE_PROTOCOL, CLOSE_TOO_BIG};
use hush_actors::hub::Hub;
use hush_actors::limits::{AUTH_TIMEOUT, MAX_CONNECTIONS, OUTBOUND_FRAMES};
use hush_actors::metrics::Metrics;
use hush_actors::session::SessionActor;
use hush_protocol::limits::MAX_FRAME_BYTES;
use hush_protocol::wire::{
    ClientFrame, ErrorCode, ServerFrame, CLOSE_UNAUTHORIZED, SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD,
};
use tokio::sync::{mpsc, oneshot};

use crate::auth::bearer;
use crate::error::ApiError;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Unset,
    Postcard,
    Json,
}

type SharedFormat = Rc<Cell<Format>>;

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
) -> Result<HttpResponse, ApiError> {
    if Metrics::get(&hub.metrics.connections) as usize >= MAX_CONNECTIONS {
        return Err(ApiError::Unavailable);
    }
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
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    actix_web::rt::spawn(connection(hub.into_inner(), session, stream, header_auth, format));
    Ok(resp)
}

async fn close(session: Session, code: u16, reason: &str) {
    let _ = session
        .close(Some(CloseReason { code: CloseCode::from(code), description: Some(reason.to_owned()) }))
        .await;
}

async fn connection(
    hub: std::sync::Arc<Hub>,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
    header_auth: Option<Authed>,
    format: Format,
) {
    let fmt: SharedFormat = Rc::new(Cell::new(format));
    let authed = match header_auth {
        Some(a) => a,
        None => {
            let first = tokio::time::timeout(AUTH_TIMEOUT, stream.next()).await;
            let frame = match first {
                Ok(Some(Ok(AggregatedMessage::Text(t)))) => {
                    follow(&fmt, Format::Json);
                    ClientFrame::decode_text(&t)
                }
                Ok(Some(Ok(AggregatedMessage::Binary(b)))) => {
                    follow(&fmt, Format::Postcard);
                    ClientFrame::decode_binary(&b)
                }
                _ => return close(session, CLOSE_UNAUTHORIZED, "authentication required").await,
            };
            let token = match frame {
                Ok(ClientFrame::Auth { token }) => token,
                Ok(_) => return close(session, CLOSE_UNAUTHORIZED, "the first frame must be Auth").await,
                Err(e) => {
                    let err = ServerFrame::Error { id: None, code: e.code(), message: e.to_string() };
                    let _ = write(&mut session, Outbound::Frame(err), &fmt).await;
                    return close(session, CLOSE_UNAUTHORIZED, "the first frame must be Auth").await;
                }
            };
            match accounts::authenticate(&hub, &token).await {
                Ok(a) if a.mfa.block(hush_actors::now_ms()).is_some() => {
                    // A session with MFA pending (or past its enrolment deadline) gets no socket.
                    let err = ServerFrame::Error {
                        id: None,
                        code: ErrorCode::InvalidRequest,
                        message: "mfa_required".into(),
                    };
                    let _ = write(&mut session, Outbound::Frame(err), &fmt).await;
                    return close(session, CLOSE_UNAUTHORIZED, "mfa_required").await;
                }
                Ok(a) if a.password_change_required => {
                    // A session that logged in with a one-time password gets no socket either.
                    let err = ServerFrame::Error {
                        id: None,
                        code: ErrorCode::InvalidRequest,
                        message: "password_change_required".into(),
                    };
                    let _ = write(&mut session, Outbound::Frame(err), &fmt).await;
                    return close(session, CLOSE_UNAUTHORIZED, "password_change_required").await;
                }
                Ok(a) => a,
                Err(e) => {
                    let why = match e {
                        accounts::AccountError::SessionExpired => "session expired",
                        _ => "invalid or revoked token",
                    };
                    let err =
                        ServerFrame::Error { id: None, code: ErrorCode::InvalidRequest, message: why.into() };
                    let _ = write(&mut session, Outbound::Frame(err), &fmt).await;
                    return close(session, CLOSE_UNAUTHORIZED, why).await;
                }
            }
        }
    };

    let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
    let (close_tx, close_rx) = oneshot::channel();
    let in_fmt = fmt.clone();
    let inbound = stream.map(move |item| decode(item, &in_fmt));
    let device = DeviceActor::start_with(
        hub.clone(),
        authed.session.device.clone(),
        authed.session.id.clone(),
        inbound,
        Sink { frames: tx, close: Some(close_tx) },
    );
    SessionActor::start_for(hub, authed.session, authed.admin, device.recipient());
    writer(session, rx, close_rx, fmt).await;
}

fn decode(item: Result<AggregatedMessage, ProtocolError>, fmt: &SharedFormat) -> Inbound {
    let parsed = match item {
        Ok(AggregatedMessage::Text(t)) => {
            follow(fmt, Format::Json);
            ClientFrame::decode_text(&t)
        }
        Ok(AggregatedMessage::Binary(b)) => {
            follow(fmt, Format::Postcard);
            ClientFrame::decode_binary(&b)
        }
        Ok(AggregatedMessage::Ping(p)) => return Inbound::Ping(p.to_vec()),
        Ok(AggregatedMessage::Pong(_)) => return Inbound::Pong,
        Ok(AggregatedMessage::Close(_)) => return Inbound::Closed,
        Err(ProtocolError::Overflow) => {
            return Inbound::Protocol { code: CLOSE_TOO_BIG, reason: "frame too large".into() }
        }
        Err(e) => return Inbound::Protocol { code: CLOSE_PROTOCOL, reason: e.to_string() },
    };
    match parsed {
        Ok(f) => Inbound::Frame(f),
        Err(e) => Inbound::Bad(e),
    }
}

async fn write(session: &mut Session, item: Outbound, fmt: &SharedFormat) -> Result<(), ()> {
    let r = match item {
        Outbound::Frame(f) => match fmt.get() {
            Format::Postcard => match f.encode_binary() {
                Ok(b) => session.binary(b).await,
                Err(e) => {
                    tracing::error!(error = %e, "frame not encodable");
                    return Ok(());
                }
            },
            Format::Json | Format::Unset => match f.encode_text() {
                Ok(t) => session.text(t).await,
                Err(e) => {
                    tracing::error!(error = %e, "frame not encodable");
                    return Ok(());
                }
            },
        },
        Outbound::Ping => session.ping(b"").await,
        Outbound::Pong(p) => session.pong(&p).await,
    };
    r.map_err(|_| ())
}

async fn writer(
    mut session: Session,
    mut rx: mpsc::Receiver<Outbound>,
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
                        close(session, c.code, &c.reason).await;
                    }
                    Err(_) => {
                        let _ = session.close(None).await;
                    }
                }
                return;
            }
            item = rx.recv() => match item {
                Some(item) => {
                    if write(&mut session, item, &fmt).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = session.close(None).await;
                    return;
                }
            }
        }
    }
}
