//! Hush client SDK.
//!
//! - [`Client`]: the HTTP API (login, devices, administration).
//! - [`Session`]: a logged-in device; opens [`Connection`]s.
//! - [`Connection`]: the chat WebSocket (postcard frames), with [`Connection::send_message`]
//!   that builds one ciphertext per recipient device and handles `MismatchedDevices` /
//!   `StaleDevices` by refreshing the device lists and resending.
//!
//! The API is shaped for end-to-end encryption: callers give a function from recipient device
//! to ciphertext. Until the E2E layer is wired in (issue 5), the CLI passes the text through
//! unencrypted.
#![warn(missing_docs)]

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use hush_protocol::api::{
    CreateUserRequest, DeviceInfo, DeviceList, DeviceRequest, ErrorBody, LoginRequest, LoginResponse,
    Revoked, Secret, SessionList, UserInfo, UserList,
};
use hush_protocol::ids::{DeviceId, MessageId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::{
    ClientFrame, DeviceMessage, Payload, SendMessage, ServerFrame, SUBPROTOCOL_POSTCARD,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Errors of the SDK.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with an error status.
    #[error("HTTP {status}: {} ({})", body.message, body.error)]
    Http {
        /// The HTTP status.
        status: u16,
        /// The node's error body.
        body: ErrorBody,
    },
    /// Network or decoding failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The WebSocket closed.
    #[error("connection closed{}", .0.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed(Option<String>),
    /// The node refused a message.
    #[error("refused: {0:?}")]
    Refused(Box<ServerFrame>),
}

/// Result alias of the SDK.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

/// HTTP access to one node.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.json::<ErrorBody>().await.unwrap_or(ErrorBody {
        error: "unknown".into(),
        message: status.canonical_reason().unwrap_or("error").into(),
    });
    Err(ClientError::Http { status: status.as_u16(), body })
}

impl Client {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Self {
        let base = base.into().trim_end_matches('/').to_owned();
        Self { base, http: reqwest::Client::new() }
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Logs in; registers a new device unless `device.id` names an existing one.
    pub async fn login(
        &self,
        tenant: &TenantId,
        user: &UserId,
        password: &Secret,
        device: DeviceRequest,
    ) -> Result<Session> {
        let req = LoginRequest {
            tenant: tenant.clone(),
            user: user.clone(),
            password: password.clone(),
            device,
            trusted_device_token: None,
        };
        let resp =
            self.http.post(format!("{}/v1/login", self.base)).json(&req).send().await.map_err(transport)?;
        let login: LoginResponse = check(resp).await?.json().await.map_err(transport)?;
        Ok(Session { client: self.clone(), login })
    }

    /// Resumes a saved session.
    pub fn resume(&self, login: LoginResponse) -> Session {
        Session { client: self.clone(), login }
    }
}

/// A logged-in device.
#[derive(Clone, Debug)]
pub struct Session {
    client: Client,
    login: LoginResponse,
}

impl Session {
    /// What login returned (token included: keep it private).
    pub fn login_info(&self) -> &LoginResponse {
        &self.login
    }
    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.login.device
    }
    /// This user.
    pub fn user(&self) -> &UserId {
        &self.login.user
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(self.login.token.expose())
    }

    /// Ends this session on the node.
    pub async fn logout(&self) -> Result<()> {
        let rb = self.client.http.post(format!("{}/v1/logout", self.client.base));
        check(self.auth(rb).send().await.map_err(transport)?).await?;
        Ok(())
    }

    /// Lists the devices of `user` (or this user's own).
    pub async fn devices(&self, user: Option<&UserId>) -> Result<DeviceList> {
        let url = match user {
            Some(u) => format!("{}/v1/users/{u}/devices", self.client.base),
            None => format!("{}/v1/devices", self.client.base),
        };
        let resp = check(self.auth(self.client.http.get(url)).send().await.map_err(transport)?).await?;
        resp.json().await.map_err(transport)
    }

    /// Creates a user (tenant administrators).
    pub async fn create_user(&self, user: &UserId, password: &Secret, admin: bool) -> Result<UserInfo> {
        let req = CreateUserRequest { user: user.clone(), password: password.clone(), admin };
        let rb = self.client.http.post(format!("{}/v1/admin/users", self.client.base)).json(&req);
        check(self.auth(rb).send().await.map_err(transport)?).await?.json().await.map_err(transport)
    }

    /// Lists users (tenant administrators).
    pub async fn list_users(&self) -> Result<UserList> {
        let rb = self.client.http.get(format!("{}/v1/admin/users", self.client.base));
        check(self.auth(rb).send().await.map_err(transport)?).await?.json().await.map_err(transport)
    }

    async fn delete_revoke(&self, path: &str) -> Result<usize> {
        let rb = self.client.http.delete(format!("{}{path}", self.client.base));
        let r: Revoked =
            check(self.auth(rb).send().await.map_err(transport)?).await?.json().await.map_err(transport)?;
        Ok(r.revoked)
    }

    /// This user's active sessions (every device), the current one marked.
    pub async fn sessions(&self) -> Result<SessionList> {
        let rb = self.client.http.get(format!("{}/v1/sessions", self.client.base));
        check(self.auth(rb).send().await.map_err(transport)?).await?.json().await.map_err(transport)
    }

    /// Revokes one of this user's sessions.
    pub async fn revoke_session(&self, id: &str) -> Result<usize> {
        self.delete_revoke(&format!("/v1/sessions/{id}")).await
    }

    /// Revokes every session of this user but this one.
    pub async fn revoke_other_sessions(&self) -> Result<usize> {
        self.delete_revoke("/v1/sessions/others").await
    }

    /// Revokes every active session of the tenant but this one (tenant administrators).
    pub async fn admin_revoke_all_active(&self) -> Result<usize> {
        self.delete_revoke("/v1/admin/sessions/active").await
    }

    /// Opens the chat socket, authenticated by header, speaking postcard.
    pub async fn connect(&self) -> Result<Connection> {
        let url = format!("{}/v1/ws", self.client.base.replacen("http", "ws", 1));
        let mut req = url.into_client_request().map_err(transport)?;
        let h = req.headers_mut();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", self.login.token.expose())).map_err(transport)?,
        );
        h.insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL_POSTCARD));
        let (ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 => ClientError::Http {
                status: 401,
                body: ErrorBody { error: "unauthorized".into(), message: "invalid or revoked token".into() },
            },
            e => transport(e),
        })?;
        Ok(Connection { ws, pending: VecDeque::new(), session: self.clone() })
    }
}

/// The chat WebSocket of one device.
pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<ServerFrame>,
    session: Session,
}

/// Attempts of [`Connection::send_message`] when the device set changed under it.
pub const SEND_ATTEMPTS: usize = 3;

impl Connection {
    /// Sends one frame.
    pub async fn send_frame(&mut self, f: &ClientFrame) -> Result<()> {
        let bytes = f.encode_binary().map_err(transport)?;
        self.ws.send(Message::Binary(bytes.into())).await.map_err(transport)
    }

    /// Sends raw bytes as a binary frame (for tests of malformed input).
    pub async fn send_raw(&mut self, m: Message) -> Result<()> {
        self.ws.send(m).await.map_err(transport)
    }

    /// Acknowledges delivered envelopes.
    pub async fn ack(&mut self, seqs: Vec<u64>) -> Result<()> {
        self.send_frame(&ClientFrame::Ack { seqs }).await
    }

    /// The next frame from the node (pings are answered by the library).
    pub async fn next_frame(&mut self) -> Result<ServerFrame> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        loop {
            let m = match self.ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(transport(e)),
                None => return Err(ClientError::Closed(None)),
            };
            match m {
                Message::Binary(b) => return ServerFrame::decode_binary(&b).map_err(transport),
                Message::Text(t) => return ServerFrame::decode_text(&t).map_err(transport),
                Message::Close(c) => {
                    return Err(ClientError::Closed(c.map(|c| format!("{} {}", u16::from(c.code), c.reason))))
                }
                _ => continue,
            }
        }
    }

    /// Waits for the answer to message `id`; other frames are kept for `next_frame`.
    async fn answer(&mut self, id: MessageId) -> Result<ServerFrame> {
        let mut kept = Vec::new();
        let res = loop {
            let f = match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => ServerFrame::decode_binary(&b).map_err(transport)?,
                Some(Ok(Message::Text(t))) => ServerFrame::decode_text(&t).map_err(transport)?,
                Some(Ok(Message::Close(c))) => {
                    break Err(ClientError::Closed(c.map(|c| format!("{} {}", u16::from(c.code), c.reason))))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(transport(e)),
                None => break Err(ClientError::Closed(None)),
            };
            let mine = match &f {
                ServerFrame::Accepted { id: i }
                | ServerFrame::MismatchedDevices { id: i, .. }
                | ServerFrame::StaleDevices { id: i, .. } => *i == id,
                ServerFrame::Error { id: Some(i), .. } => *i == id,
                _ => false,
            };
            if mine {
                break Ok(f);
            }
            kept.push(f);
        };
        self.pending.extend(kept);
        res
    }

    /// Sends a message to `to`: one ciphertext per device of `to` and per other device of the
    /// sender, made by `encrypt(user, device)`. Refreshes device lists and retries when the node
    /// answers `MismatchedDevices` or `StaleDevices`. Returns the message id once accepted.
    pub async fn send_message<F>(&mut self, to: &UserId, mut encrypt: F) -> Result<MessageId>
    where
        F: FnMut(&UserId, &DeviceInfo) -> Vec<u8>,
    {
        let id = uuid::Uuid::new_v4();
        let mut last = None;
        for _ in 0..SEND_ATTEMPTS {
            let theirs = self.session.devices(Some(to)).await?;
            let me = self.session.user().clone();
            let mine = if *to == me { None } else { Some(self.session.devices(None).await?) };
            let own_device = self.session.device();
            let mk = |user: &UserId, d: &DeviceInfo, encrypt: &mut F| DeviceMessage {
                device: d.id,
                registration_id: d.registration_id,
                content: Payload(encrypt(user, d)),
            };
            let devices = theirs
                .devices
                .iter()
                .filter(|d| !(*to == me && d.id == own_device))
                .map(|d| mk(to, d, &mut encrypt))
                .collect();
            let sync = mine
                .map(|m| {
                    m.devices
                        .iter()
                        .filter(|d| d.id != own_device)
                        .map(|d| mk(&me, d, &mut encrypt))
                        .collect()
                })
                .unwrap_or_default();
            self.send_frame(&ClientFrame::Send(SendMessage { id, to: to.clone(), devices, sync })).await?;
            match self.answer(id).await? {
                ServerFrame::Accepted { .. } => return Ok(id),
                f @ (ServerFrame::MismatchedDevices { .. } | ServerFrame::StaleDevices { .. }) => {
                    last = Some(f);
                }
                f => return Err(ClientError::Refused(Box::new(f))),
            }
        }
        Err(ClientError::Refused(Box::new(last.unwrap_or(ServerFrame::QueueEmpty))))
    }

    /// Closes the socket politely.
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await.map_err(transport)
    }
}

/// A random 14-bit registration id (1..=16383), as a new device would pick.
pub fn random_registration_id() -> RegistrationId {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        // The range only holds valid ids, so the first draw always succeeds.
        if let Ok(r) = RegistrationId::new(rng.gen_range(1..=16383)) {
            return r;
        }
    }
}
