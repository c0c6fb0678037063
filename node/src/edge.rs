//! Guards of the HTTP edge against clients that start a request and never finish it.
//!
//! actix-web closes idle connections (keep-alive) and slow request heads (the head timer), but
//! a request body that trickles, or never comes, would hold its connection (and a file
//! descriptor) forever. Two bounds close that gap:
//!
//! - every request body must arrive within [`EdgeLimits::body_timeout`] and, after
//!   [`BODY_RATE_GRACE`], at an average of at least [`EdgeLimits::body_min_rate`] bytes per
//!   second; a body that does not is answered `408 request_timeout` and the connection closes;
//! - one client address holds at most [`EdgeLimits::max_incomplete_per_address`] connections
//!   that have not completed their request (from the accept until the request body is in); a
//!   request over the bound is answered `429 too_many_connections` and its connection closes.
//!
//! IPv6 clients are counted per /64 prefix, the block one subscriber usually gets.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use bytes::Bytes;
use futures_util::Stream;

use crate::error::ApiError;

/// A body slower than the minimum rate is tolerated this long after the request head.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// Client addresses tracked at once; a new address past it is refused like one over its bound.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Default of [`EdgeLimits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`EdgeLimits::body_min_rate`], bytes per second (Kestrel's default).
pub const DEFAULT_BODY_MIN_RATE: u64 = 240;
/// Default of [`EdgeLimits::max_incomplete_per_address`].
pub const DEFAULT_MAX_INCOMPLETE_PER_ADDRESS: usize = 256;

/// The bounds of the HTTP edge (configurable, see `docs/operations.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// A request body must be complete this long after its head.
    pub body_timeout: Duration,
    /// After [`BODY_RATE_GRACE`], a body must have arrived at this average rate (bytes per
    /// second) since its head; 0 turns the rate check off.
    pub body_min_rate: u64,
    /// Connections of one client address (IPv6: one /64) that have not completed their
    /// request; 0 turns the bound off (e.g. behind a proxy, where every client has its address).
    pub max_incomplete_per_address: usize,
    /// WebSocket connections open at once, authenticated or not (default
    /// [`hush_actors::limits::MAX_CONNECTIONS`]).
    pub max_connections: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_min_rate: DEFAULT_BODY_MIN_RATE,
            max_incomplete_per_address: DEFAULT_MAX_INCOMPLETE_PER_ADDRESS,
            max_connections: hush_actors::limits::MAX_CONNECTIONS,
        }
    }
}

/// The bound on open WebSocket connections: every upgraded socket holds a permit from its
/// upgrade (before it authenticates) until it closes, so sockets that never authenticate count
/// against the bound too.
#[derive(Clone)]
pub struct SocketPermits(pub std::sync::Arc<tokio::sync::Semaphore>);

impl SocketPermits {
    /// `n` permits.
    pub fn new(n: usize) -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(n.min(tokio::sync::Semaphore::MAX_PERMITS))))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum AddrKey {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl AddrKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The count of incomplete connections per client address, shared by every worker.
#[derive(Debug)]
pub struct AddressGate {
    limit: usize,
    counts: Mutex<HashMap<AddrKey, usize>>,
}

impl AddressGate {
    /// A gate allowing `limit` incomplete connections per address (0: unbounded).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, counts: Mutex::new(HashMap::new()) })
    }

    fn acquire(&self, key: AddrKey) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let tracked = counts.len();
        match counts.get_mut(&key) {
            Some(n) if *n >= self.limit => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if tracked >= MAX_TRACKED_ADDRESSES => false,
            None => {
                counts.insert(key, 1);
                true
            }
        }
    }

    fn release(&self, key: AddrKey) {
        if self.limit == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&key);
            }
        }
    }

    /// The callback of `HttpServer::on_connect` (and of `on_connect_ext` for the tungstenite
    /// engine): counts the new connection against its address, and marks it refused when the
    /// address is over its bound (its first request is answered `429`; one that sends no request
    /// head is closed by the head timer).
    pub fn on_connect(self: &Arc<Self>, io: &dyn Any, data: &mut Extensions) {
        let peer = peer_of(io);
        let ticket = Ticket {
            gate: self.clone(),
            key: peer.map(|a| AddrKey::of(a.ip())),
            held: Cell::new(false),
            refused: Cell::new(false),
        };
        if !ticket.begin() {
            ticket.refused.set(true);
        }
        data.insert(Rc::new(ticket));
    }
}

fn peer_of(io: &dyn Any) -> Option<SocketAddr> {
    use actix_web::rt::net::TcpStream;
    if let Some(tcp) = io.downcast_ref::<TcpStream>() {
        return tcp.peer_addr().ok();
    }
    if let Some(tls) = io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>() {
        return tls.get_ref().0.peer_addr().ok();
    }
    None
}

/// One connection's place in its address's count, kept in the connection's data.
struct Ticket {
    gate: Arc<AddressGate>,
    key: Option<AddrKey>,
    held: Cell<bool>,
    refused: Cell<bool>,
}

impl Ticket {
    /// Counts the connection as incomplete (again, for a further request on a kept-alive
    /// connection); false if its address is over the bound.
    fn begin(&self) -> bool {
        if self.held.get() {
            return true;
        }
        match self.key {
            Some(key) if !self.gate.acquire(key) => false,
            _ => {
                self.held.set(true);
                true
            }
        }
    }

    /// Whether a new request of this connection may go on: false if its address was over the
    /// bound at the accept or is now (see [`Self::begin`]).
    fn admits(&self) -> bool {
        !self.refused.get() && self.begin()
    }

    /// The request is complete: the connection no longer counts.
    fn end(&self) {
        if self.held.replace(false) {
            if let Some(key) = self.key {
                self.gate.release(key);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.end();
    }
}

/// A request the routes do not see (a WebSocket upgrade taken over by [`crate::upgrade`]),
/// counted against its address as [`guard`] counts the others: refused with `429` over the
/// bound; counted as incomplete until the returned value is dropped (once the handshake is
/// answered).
pub(crate) fn admit(req: &actix_http::Request) -> Result<Option<Admitted>, ApiError> {
    let Some(ticket) = req.conn_data::<Rc<Ticket>>().cloned() else {
        return Ok(None);
    };
    if !ticket.admits() {
        return Err(ApiError::TooManyConnections);
    }
    Ok(Some(Admitted(ticket)))
}

/// See [`admit`].
pub(crate) struct Admitted(Rc<Ticket>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// What the body reader and the middleware share about one request.
struct BodyState {
    complete: Cell<bool>,
    timed_out: Cell<bool>,
    ticket: Option<Rc<Ticket>>,
}

impl BodyState {
    fn complete(&self) {
        self.complete.set(true);
        if let Some(t) = &self.ticket {
            t.end();
        }
    }
}

/// A request body that fails with a timeout once it is late or too slow.
struct TimedBody {
    inner: Payload,
    started: Instant,
    received: u64,
    limits: EdgeLimits,
    timer: Pin<Box<tokio::time::Sleep>>,
    state: Rc<BodyState>,
}

impl TimedBody {
    /// When the body, at the bytes received so far, becomes late or too slow.
    fn deadline(&self) -> Instant {
        let total = self.limits.body_timeout;
        if self.limits.body_min_rate == 0 {
            return self.started + total;
        }
        let owed = Duration::from_secs_f64(self.received as f64 / self.limits.body_min_rate as f64);
        self.started + owed.max(BODY_RATE_GRACE).min(total)
    }
}

fn timeout_error() -> PayloadError {
    PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow"))
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.state.timed_out.get() {
            return Poll::Ready(Some(Err(timeout_error())));
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.received += b.len() as u64;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => {
                this.state.complete();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => loop {
                let deadline = this.deadline();
                if Instant::now() >= deadline {
                    this.state.timed_out.set(true);
                    return Poll::Ready(Some(Err(timeout_error())));
                }
                this.timer.as_mut().reset(deadline.into());
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            },
        }
    }
}

fn is_upgrade(req: &ServiceRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn has_body(req: &ServiceRequest) -> bool {
    use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let h = req.headers();
    h.contains_key(TRANSFER_ENCODING)
        || h.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

fn closing(mut resp: HttpResponse) -> HttpResponse {
    resp.head_mut().set_connection_type(ConnectionType::Close);
    resp
}

/// The middleware: counts the request against its address until its body is in, and times
/// the body. A late body is answered `408`, a request over its address's bound `429`; both
/// close the connection, as does any answer given before the body was read to its end.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limits = req.app_data::<EdgeLimits>().copied().unwrap_or_default();
    let ticket = req.conn_data::<Rc<Ticket>>().cloned();
    if let Some(t) = &ticket {
        if !t.admits() {
            let resp = closing(ApiError::TooManyConnections.error_response());
            return Ok(req.into_response(resp));
        }
    }
    let upgrade = is_upgrade(&req);
    let state = Rc::new(BodyState { complete: Cell::new(false), timed_out: Cell::new(false), ticket });
    if !upgrade && has_body(&req) {
        let inner = req.take_payload();
        let body = TimedBody {
            inner,
            started: Instant::now(),
            received: 0,
            limits,
            timer: Box::pin(tokio::time::sleep(limits.body_timeout)),
            state: state.clone(),
        };
        req.set_payload(Payload::Stream { payload: Box::pin(body) });
    } else if !upgrade {
        state.complete();
    }
    let res = next.call(req).await;
    let complete = state.complete.get();
    // Whatever the answer, the connection no longer waits for this request's client.
    state.complete();
    if state.timed_out.get() {
        // However the handler reported the failed read, the client gets the 408.
        let (http_req, _) = res.map_err(|_| ApiError::RequestTimeout)?.into_parts();
        return Ok(ServiceResponse::new(http_req, closing(ApiError::RequestTimeout.error_response())));
    }
    let mut res = res?.map_into_boxed_body();
    if !complete && !upgrade {
        // The rest of the body would have to be read (or drained) before the next request.
        res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    Ok(res)
}
