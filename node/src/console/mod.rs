//! The admin console at `/console`: a small single-page app embedded in the binary (nothing is
//! loaded from another host), driving the same `/v1` API as every other client.
//!
//! - **Sign-in** (`POST /console/session`) is an ordinary password login (throttled, audited,
//!   MFA-challenged like `/v1/login`); its token goes into an `HttpOnly; SameSite=Strict`
//!   cookie (`Secure` over TLS), never to the page's script. A non-administrator's session is
//!   ended at once and the sign-in refused. The console's device is remembered in a second
//!   cookie, so signing in again does not register another device.
//! - **The API with the cookie**: [`crate::auth`] accepts the cookie where no bearer token is
//!   given; a state-changing request (any method but GET/HEAD/OPTIONS) must then carry the
//!   session's CSRF token in `X-CSRF-Token`, or it is refused with 403 `csrf_rejected` before
//!   anything runs. The CSRF token is derived from the session token (SHA-256 under a fixed
//!   label), so every node of a cluster accepts it and only the token's holder can compute it.
//! - **Live updates** (`GET /console/events`): server-sent events carrying the tenant's new
//!   audit records (logins, revocations, expiries, policy changes, from any node: the audit
//!   log is shared), read every [`EVENT_TICK`]; the stream ends when the session does.
//! - **Transport**: over plain HTTP the console answers loopback clients only (403
//!   `tls_required` otherwise).
//!
//! Every response under `/console` carries a strict Content-Security-Policy (no inline script or
//! style, nothing from another origin), `X-Frame-Options: DENY`, `nosniff`, `no-referrer` and
//! `no-store`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use hush_actors::accounts;
use hush_actors::audit::RevocationReason;
use hush_actors::control::{Audit, Control};
use hush_actors::hub::Hub;
use hush_actors::login;
use hush_protocol::api::{DeviceRequest, LoginRequest, Secret, SessionMfa};
use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use hush_store::AuditQuery;
use serde::{Deserialize, Serialize};

use crate::auth::AnySession;
use crate::error::ApiError;

/// The session cookie (the token; `HttpOnly`).
pub const SESSION_COOKIE: &str = "hush_console";
/// The console's device (`<device id>.<registration id>`; not a secret).
pub const DEVICE_COOKIE: &str = "hush_console_device";
/// The header a cookie-authenticated state-changing request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// How often the event stream reads the audit log.
pub const EVENT_TICK: Duration = Duration::from_millis(500);
/// A comment line keeps an idle event stream open through proxies.
const KEEPALIVE_TICKS: u32 = 30;
/// Audit records read per tick (more in one tick are announced as one `resync`).
const EVENT_PAGE: usize = 50;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Whether the node serves TLS (the console's cookie is then `Secure`, and non-loopback
/// clients are accepted).
#[derive(Clone, Copy)]
pub struct ConsoleTransport {
    /// TLS is configured.
    pub tls: bool,
}

/// Registers `/console` and its assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let headers = DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"));
    cfg.service(
        web::scope("/console")
            .wrap(headers)
            .route("", web::get().to(index))
            .route("/", web::get().to(index))
            .route("/app.js", web::get().to(app_js))
            .route("/app.css", web::get().to(app_css))
            .route("/session", web::post().to(sign_in))
            .route("/session", web::get().to(whoami))
            .route("/session", web::delete().to(sign_out))
            .route("/events", web::get().to(events))
            .default_service(web::to(crate::fallback::unmatched)),
    );
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get_all(header::COOKIE).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_owned())
        },
    )
}

/// The CSRF token of a session token.
pub fn csrf_token(session_token: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"hush-console-csrf\0");
    ctx.update(session_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.finish().as_ref())
}

/// Refuses a cookie-authenticated state-changing request without the session's CSRF token.
pub fn check_csrf(req: &HttpRequest, session_token: &str) -> Result<(), ApiError> {
    if req.method().is_safe() {
        return Ok(());
    }
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = csrf_token(session_token);
    // Compared without an early exit (the length is public: every token has the same).
    let diff = sent.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if sent.len() == expected.len() && diff == 0 {
        Ok(())
    } else {
        Err(ApiError::CsrfRejected)
    }
}

fn transport_ok(req: &HttpRequest) -> Result<ConsoleTransport, ApiError> {
    let t = req
        .app_data::<web::Data<ConsoleTransport>>()
        .map(|t| *t.get_ref())
        .unwrap_or(ConsoleTransport { tls: false });
    let loopback = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    if t.tls || loopback {
        Ok(t)
    } else {
        Err(ApiError::TlsRequired)
    }
}

fn asset(req: &HttpRequest, content_type: &str, body: &'static str) -> Result<HttpResponse, ApiError> {
    transport_ok(req)?;
    Ok(HttpResponse::Ok().content_type(content_type).body(body))
}

async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    asset(&req, "text/html; charset=utf-8", INDEX)
}

async fn app_js(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    asset(&req, "text/javascript; charset=utf-8", APP_JS)
}

async fn app_css(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    asset(&req, "text/css; charset=utf-8", APP_CSS)
}

/// `POST /console/session`.
#[derive(Deserialize)]
struct SignIn {
    tenant: TenantId,
    user: UserId,
    password: Secret,
}

/// What the console's script learns about its session (never the token).
#[derive(Serialize)]
struct ConsoleSession {
    tenant: TenantId,
    user: UserId,
    session_id: String,
    admin: bool,
    csrf: String,
    mfa: Option<SessionMfa>,
    password_change_required: bool,
}

fn session_cookie(value: &str, tls: bool, max_age: Option<u64>) -> String {
    let secure = if tls { "; Secure" } else { "" };
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}")
}

fn remembered_device(req: &HttpRequest) -> Option<(DeviceId, RegistrationId)> {
    let v = cookie(req, DEVICE_COOKIE)?;
    let (d, r) = v.split_once('.')?;
    Some((DeviceId::new(d.parse().ok()?).ok()?, RegistrationId::new(r.parse().ok()?).ok()?))
}

async fn sign_in(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: web::Json<SignIn>,
) -> Result<HttpResponse, ApiError> {
    let transport = transport_ok(&req)?;
    let SignIn { tenant, user, password } = body.into_inner();
    let (device, registration_id) = match remembered_device(&req) {
        Some((d, r)) => (Some(d), r),
        None => (None, RegistrationId::new(rand_registration_id()).map_err(|_| ApiError::Internal)?),
    };
    let login_req = LoginRequest {
        tenant,
        user,
        password,
        device: DeviceRequest {
            id: device,
            registration_id,
            name: Some("admin console".into()),
            identity_key: None,
            keys: None,
        },
        trusted_device_token: None,
    };
    let client = crate::routes::client_info(&req);
    let resp = match login::admin_login(&hub, login_req.clone(), client.clone()).await {
        // The remembered device was removed since: sign in as a new one.
        Err(accounts::AccountError::NotFound) if device.is_some() => {
            let fresh = RegistrationId::new(rand_registration_id()).map_err(|_| ApiError::Internal)?;
            let device = DeviceRequest { id: None, registration_id: fresh, ..login_req.device };
            login::admin_login(&hub, LoginRequest { device, ..login_req }, client).await?
        }
        r => r?,
    };
    let token = resp.token.expose().to_owned();
    let body = ConsoleSession {
        tenant: resp.tenant,
        user: resp.user,
        session_id: resp.session_id,
        admin: resp.admin,
        csrf: csrf_token(&token),
        mfa: resp.mfa,
        password_change_required: resp.password_change_required,
    };
    let secure = if transport.tls { "; Secure" } else { "" };
    let device_cookie = format!(
        "{DEVICE_COOKIE}={}.{}; Path=/console; HttpOnly; SameSite=Strict{secure}; Max-Age=31536000",
        resp.device.get(),
        resp.registration_id.get()
    );
    Ok(HttpResponse::Ok()
        .append_header((header::SET_COOKIE, session_cookie(&token, transport.tls, None)))
        .append_header((header::SET_COOKIE, device_cookie))
        .json(body))
}

fn rand_registration_id() -> u32 {
    let mut b = [0u8; 2];
    // ring's system random; a failure falls back to a fixed id (only a label for this device).
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from(u16::from_le_bytes(b) % 16383) + 1
}

/// `GET /console/session`: the signed-in session (MFA pending or not), with its CSRF token.
async fn whoami(req: HttpRequest, AnySession(me): AnySession) -> Result<HttpResponse, ApiError> {
    transport_ok(&req)?;
    let token = cookie(&req, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
    let body = ConsoleSession {
        tenant: me.tenant().clone(),
        user: me.user().clone(),
        session_id: me.session.id.clone(),
        admin: me.admin,
        csrf: csrf_token(&token),
        mfa: Some(me.mfa.view(hush_actors::now_ms())),
        password_change_required: me.password_change_required,
    };
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE /console/session`: signs out (the session is revoked, the cookie cleared).
async fn sign_out(
    control: web::Data<Control>,
    req: HttpRequest,
    AnySession(me): AnySession,
) -> Result<HttpResponse, ApiError> {
    let transport = transport_ok(&req)?;
    crate::routes::revoke_own(&control, &me, &req, RevocationReason::Logout).await?;
    Ok(HttpResponse::NoContent()
        .append_header((header::SET_COOKIE, session_cookie("", transport.tls, Some(0))))
        .finish())
}

/// `GET /console/events`: the tenant's new audit records as server-sent events (`audit`),
/// until the session ends.
async fn events(
    hub: web::Data<Hub>,
    control: web::Data<Control>,
    req: HttpRequest,
    crate::auth::Admin(me): crate::auth::Admin,
) -> Result<HttpResponse, ApiError> {
    transport_ok(&req)?;
    let token = crate::auth::credentials(&req)?.ok_or(ApiError::Unauthorized)?;
    let tenant = me.tenant().clone();
    let query = AuditQuery { actor: None, action: None, before: None, limit: 1 };
    let first = control.send(Audit { tenant: tenant.clone(), query }).await??;
    let last = first.records.first().map(|r| r.id).unwrap_or(0);
    let feed = Feed { hub: hub.into_inner(), control: control.into_inner(), token, tenant, last, idle: 0 };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next().await?;
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk)), feed))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// The state of one event stream.
struct Feed {
    hub: Arc<Hub>,
    control: Arc<Control>,
    token: String,
    tenant: TenantId,
    last: u64,
    idle: u32,
}

impl Feed {
    /// The next chunk to send; `None` ends the stream (the session ended).
    async fn next(&mut self) -> Option<String> {
        loop {
            tokio::time::sleep(EVENT_TICK).await;
            match accounts::authenticate(&self.hub, &self.token).await {
                Ok(a) if a.admin => {}
                _ => return None,
            }
            let query = AuditQuery { actor: None, action: None, before: None, limit: EVENT_PAGE };
            let page = match self.control.send(Audit { tenant: self.tenant.clone(), query }).await {
                Ok(Ok(p)) => p,
                _ => continue,
            };
            let fresh: Vec<_> = page.records.into_iter().take_while(|r| r.id > self.last).collect();
            if let Some(newest) = fresh.first() {
                self.last = newest.id;
                self.idle = 0;
                let mut out = String::new();
                if fresh.len() == EVENT_PAGE {
                    out.push_str("event: resync\ndata: {}\n\n");
                }
                for r in fresh.iter().rev() {
                    let json = serde_json::to_string(r).unwrap_or_default();
                    out.push_str(&format!("event: audit\ndata: {json}\n\n"));
                }
                return Some(out);
            }
            self.idle += 1;
            if self.idle >= KEEPALIVE_TICKS {
                self.idle = 0;
                return Some(": keep-alive\n\n".into());
            }
        }
    }
}
