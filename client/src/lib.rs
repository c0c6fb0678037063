//! Hush client SDK.
//!
//! - [`Client`]: the HTTP API (login, devices, keys, administration), over `http://` or
//!   `https://` (the system's roots, plus a private CA through [`Client::builder`]).
//! - [`Session`]: a logged-in device; opens [`Connection`]s.
//! - [`Connection`]: the chat WebSocket (postcard frames); [`Connection::send_message`] sends
//!   caller-made bytes per device (tests and tools that speak the wire protocol directly).
//! - [`messenger::Messenger`]: end-to-end encrypted chat over a connection: sessions from
//!   fetched pre-key bundles, per-device encryption with refresh and resend on
//!   `MismatchedDevices` / `StaleDevices`, decryption with deduplication, key replenishment and
//!   rotation on the node's requests, and groups with Sender Keys.
//! - [`state::DeviceState`]: the device's keys, sessions and sender keys (memory or a 0600 file).
//! - [`content::Content`]: what the SDK puts inside every ciphertext (Signal's `Content`
//!   protobuf, padded to 160-byte blocks as Signal's apps do), and reads back.
//! - [`quarantine`]: envelopes that could not be decrypted, kept instead of dropped.
//! - [`retry`]: retry requests sent for them, and the re-sends they cause.
//! - [`register_device`]: a new device with a fresh identity and uploaded pre-keys.
#![warn(missing_docs)]

pub mod content;
pub mod messenger;
pub mod quarantine;
pub mod retry;
pub mod state;
mod tls;
pub use tls::install_default_provider;

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use hush_protocol::api::{
    AddMembersRequest, AuditPage, BackupCodes, ChangePasswordRequest, ClusterView, CreateGroupRequest,
    CreateUserRequest, DeviceInfo, DeviceList, DeviceRequest, Enforced, ErrorBody, GroupInfo, GroupList,
    KeyCounts, LoginRequest, LoginResponse, MfaChallenge, MfaCodeRequest, MfaPolicy, MfaStatus, MfaVerified,
    MfaVerifyRequest, PreKey, PreKeyResponse, Revoked, Secret, SessionList, SessionPolicy, SignedPreKey,
    TotpEnrollment, TrustedDeviceList, UploadKeysRequest, UserInfo, UserList, UserMfaStatusList,
};
use hush_protocol::e2e::{
    parse_one_time_prekey, verify_kyber_prekey, verify_signed_ec_prekey, PreKeyBundle, PublicKey,
};
use hush_protocol::ids::{DeviceId, GroupId, MessageId, RegistrationId, TenantId, UserId};
use hush_protocol::limits::MAX_FRAME_BYTES;
use hush_protocol::wire::{
    ClientFrame, ContentType, DeviceMessage, GroupSendMessage, Payload, SendMessage, ServerFrame,
    SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD,
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
    /// Shown as `<code>: <message> (HTTP <status>)`, e.g. `step_up_required: ... (HTTP 403)`.
    #[error("{}: {} (HTTP {status})", body.error, body.message)]
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
    /// End-to-end encryption failed (a bad bundle, a broken session, a corrupt state file).
    #[error("end-to-end: {0}")]
    E2e(String),
    /// The TLS handshake with the node failed: its certificate is not trusted, expired, for
    /// another name, or the handshake broke.
    #[error("TLS: {0}")]
    Tls(String),
    /// A CA file given to trust the node cannot be used.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias of the SDK.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

/// A failed request: its TLS failure if it is one, else a transport error.
fn net(e: reqwest::Error) -> ClientError {
    tls::tls_failure(&e).unwrap_or_else(|| transport(e))
}

/// Filters of the audit log (`GET /v1/admin/audit`); `None` leaves a filter out.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<UserId>,
    /// Only this action (e.g. `login`, `session.revoke`, `mfa.reset`).
    pub action: Option<String>,
    /// Only records older than this id (the `next` of the previous page).
    pub before: Option<u64>,
    /// Page size (the node allows 1..=500; default 100).
    pub limit: Option<usize>,
}

/// HTTP access to one node.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Shared by HTTPS and WSS; `None` only if it could not be built (plain HTTP still works).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Builds a [`Client`] that trusts private CAs besides the system's roots.
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    ca: Vec<rustls_pki_types::CertificateDer<'static>>,
    error: Option<ClientError>,
}

impl ClientBuilder {
    /// Trusts the CA certificates of a PEM file too (e.g. a private CA that issued the node's
    /// certificate).
    pub fn ca_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        match tls::read_ca_file(path.as_ref()) {
            Ok(c) => self.ca.extend(c),
            Err(e) => self.error = self.error.or(Some(e)),
        }
        self
    }

    /// Trusts the CA certificates of PEM text too.
    pub fn ca_pem(mut self, pem: &[u8]) -> Self {
        match tls::parse_ca_pem(pem) {
            Ok(c) => self.ca.extend(c),
            Err(reason) => {
                self.error = self.error.or(Some(ClientError::CaFile { path: "(PEM)".into(), reason }))
            }
        }
        self
    }

    /// The client; fails if a CA given cannot be used.
    pub fn build(self) -> Result<Client> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Client::with_tls(&self.base, Some(tls::client_config(self.ca)?))
    }
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
    /// A client of the node at `base` (e.g. `http://127.0.0.1:8080`, or `https://...` with a
    /// certificate the system's roots trust; see [`Client::builder`] for a private CA).
    pub fn new(base: impl Into<String>) -> Self {
        let base = base.into();
        match tls::client_config(Vec::new()).and_then(|c| Client::with_tls(&base, Some(c))) {
            Ok(c) => c,
            // Not expected (ring supports the default protocol versions, no CA file is read):
            // a client that still speaks plain HTTP.
            Err(_) => {
                Self { base: base.trim_end_matches('/').to_owned(), http: reqwest::Client::new(), tls: None }
            }
        }
    }

    /// A builder, to trust a private CA besides the system's roots.
    pub fn builder(base: impl Into<String>) -> ClientBuilder {
        ClientBuilder { base: base.into(), ca: Vec::new(), error: None }
    }

    fn with_tls(base: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        // Pooled connections are dropped before the node's keep-alive (5 s) closes them, so a
        // request rarely lands on a connection being closed.
        let mut b = reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(4));
        if let Some(t) = &tls {
            b = b.tls_backend_preconfigured(t.as_ref().clone());
        }
        Ok(Self { base, http: b.build().map_err(transport)?, tls })
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The HTTP client, with this client's TLS trust, for routes the SDK has no method for.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Logs in; registers a new device unless `device.id` names an existing one.
    pub async fn login(
        &self,
        tenant: &TenantId,
        user: &UserId,
        password: &Secret,
        device: DeviceRequest,
    ) -> Result<Session> {
        self.login_trusted(tenant, user, password, device, None).await
    }

    /// Logs in like [`Client::login`], with the token a `remember_device` MFA verification
    /// returned for this device (a trusted device skips the challenge).
    pub async fn login_trusted(
        &self,
        tenant: &TenantId,
        user: &UserId,
        password: &Secret,
        device: DeviceRequest,
        trusted_device_token: Option<Secret>,
    ) -> Result<Session> {
        let req = LoginRequest {
            tenant: tenant.clone(),
            user: user.clone(),
            password: password.clone(),
            device,
            trusted_device_token,
        };
        let resp = self.http.post(format!("{}/v1/login", self.base)).json(&req).send().await.map_err(net)?;
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
    /// Whether the login used a one-time password: until [`Session::change_password`]
    /// succeeds the token works only there (and on logout and the MFA routes).
    pub fn password_change_required(&self) -> bool {
        self.login.password_change_required
    }

    /// Whether this session must answer an MFA challenge before anything else works.
    pub fn mfa_pending(&self) -> bool {
        self.login.mfa.as_ref().is_some_and(|m| m.state == hush_protocol::api::MfaState::MfaPending)
    }

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

    /// Sends an authenticated request. A request other than POST (they are idempotent here) is
    /// sent once more if it failed before reaching the node, e.g. on a pooled connection the
    /// node had just closed.
    async fn exec(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let req = self.auth(rb).build().map_err(transport)?;
        let again = if req.method() == reqwest::Method::POST { None } else { req.try_clone() };
        match self.client.http.execute(req).await {
            Ok(r) => check(r).await,
            Err(e) => match again {
                Some(r) if e.is_request() || e.is_connect() => {
                    check(self.client.http.execute(r).await.map_err(net)?).await
                }
                _ => Err(net(e)),
            },
        }
    }

    /// Ends this session on the node.
    pub async fn logout(&self) -> Result<()> {
        let rb = self.client.http.post(format!("{}/v1/logout", self.client.base));
        self.exec(rb).await?;
        Ok(())
    }

    /// Sets a new password (`POST /v1/account/password`). After it, this session is no longer
    /// restricted by a one-time password (`login_info().password_change_required` still tells
    /// what the login said) and the user's other sessions are revoked.
    pub async fn change_password(&self, current: &Secret, new: &Secret) -> Result<()> {
        let req = ChangePasswordRequest { current_password: current.clone(), new_password: new.clone() };
        let rb = self.client.http.post(format!("{}/v1/account/password", self.client.base)).json(&req);
        self.exec(rb).await?;
        Ok(())
    }

    /// Clears a user's failed logins and login lock (tenant administrators).
    pub async fn unlock_user(&self, user: &UserId) -> Result<()> {
        let rb = self.client.http.post(format!("{}/v1/admin/users/{user}/unlock", self.client.base));
        self.exec(rb).await?;
        Ok(())
    }

    /// Lists the devices of `user` (or this user's own).
    pub async fn devices(&self, user: Option<&UserId>) -> Result<DeviceList> {
        let url = match user {
            Some(u) => format!("{}/v1/users/{u}/devices", self.client.base),
            None => format!("{}/v1/devices", self.client.base),
        };
        let resp = self.exec(self.client.http.get(url)).await?;
        resp.json().await.map_err(transport)
    }

    /// Creates a user (tenant administrators).
    pub async fn create_user(&self, user: &UserId, password: &Secret, admin: bool) -> Result<UserInfo> {
        let req = CreateUserRequest { user: user.clone(), password: password.clone(), admin };
        let rb = self.client.http.post(format!("{}/v1/admin/users", self.client.base)).json(&req);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Lists users (tenant administrators).
    pub async fn list_users(&self) -> Result<UserList> {
        let rb = self.client.http.get(format!("{}/v1/admin/users", self.client.base));
        self.exec(rb).await?.json().await.map_err(transport)
    }

    async fn delete_revoke(&self, path: &str) -> Result<usize> {
        let rb = self.client.http.delete(format!("{}{path}", self.client.base));
        let r: Revoked = self.exec(rb).await?.json().await.map_err(transport)?;
        Ok(r.revoked)
    }

    /// This user's active sessions (every device), the current one marked.
    pub async fn sessions(&self) -> Result<SessionList> {
        let rb = self.client.http.get(format!("{}/v1/sessions", self.client.base));
        self.exec(rb).await?.json().await.map_err(transport)
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.client.base)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.exec(self.client.http.get(self.url(path))).await?.json().await.map_err(transport)
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T> {
        let mut rb = self.client.http.post(self.url(path));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.exec(rb).await?.json().await.map_err(transport)
    }

    async fn delete_empty(&self, path: &str) -> Result<()> {
        self.exec(self.client.http.delete(self.url(path))).await?;
        Ok(())
    }

    /// Lists one page of users (tenant administrators): names after `after`, at most `limit`.
    pub async fn list_users_page(&self, after: Option<&UserId>, limit: Option<usize>) -> Result<UserList> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let rb = self.client.http.get(self.url("/v1/admin/users")).query(&q);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Revokes every session of this user, this one included (`DELETE /v1/sessions/all`).
    pub async fn revoke_all_sessions(&self) -> Result<usize> {
        self.delete_revoke("/v1/sessions/all").await
    }

    /// Removes one of this user's linked devices (from the primary device only).
    pub async fn remove_device(&self, device: DeviceId) -> Result<()> {
        self.delete_empty(&format!("/v1/devices/{device}")).await
    }

    /// A user's active sessions (tenant administrators).
    pub async fn admin_user_sessions(&self, user: &UserId) -> Result<SessionList> {
        self.get_json(&format!("/v1/admin/users/{user}/sessions")).await
    }

    /// Revokes every session of a user (tenant administrators; step-up).
    pub async fn admin_revoke_user_sessions(&self, user: &UserId) -> Result<usize> {
        self.delete_revoke(&format!("/v1/admin/users/{user}/sessions")).await
    }

    /// One page of the tenant's active sessions by id (tenant administrators).
    pub async fn admin_active_sessions(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<SessionList> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(a) = after {
            q.push(("after", a.to_owned()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let rb = self.client.http.get(self.url("/v1/admin/sessions/active")).query(&q);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// The live nodes of the cluster with their connections, store and bus state (tenant
    /// administrators).
    pub async fn admin_cluster(&self) -> Result<ClusterView> {
        self.get_json("/v1/admin/cluster").await
    }

    /// Revokes one session of the tenant (tenant administrators; step-up).
    pub async fn admin_revoke_session(&self, id: &str) -> Result<usize> {
        self.delete_revoke(&format!("/v1/admin/sessions/{id}")).await
    }

    /// One page of the tenant's audit log, newest first (tenant administrators).
    pub async fn audit(&self, q: &AuditFilter) -> Result<AuditPage> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(a) = &q.actor {
            query.push(("actor", a.to_string()));
        }
        if let Some(a) = &q.action {
            query.push(("action", a.clone()));
        }
        if let Some(b) = q.before {
            query.push(("before", b.to_string()));
        }
        if let Some(l) = q.limit {
            query.push(("limit", l.to_string()));
        }
        let rb = self.client.http.get(self.url("/v1/admin/audit")).query(&query);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// The tenant's session lifetimes (tenant administrators).
    pub async fn session_policy(&self) -> Result<SessionPolicy> {
        self.get_json("/v1/admin/tenant/sessions").await
    }

    /// Replaces the tenant's session lifetimes (tenant administrators).
    pub async fn set_session_policy(&self, p: &SessionPolicy) -> Result<SessionPolicy> {
        let rb = self.client.http.put(self.url("/v1/admin/tenant/sessions")).json(p);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// This user's MFA status (`GET /v1/mfa/status`).
    pub async fn mfa_status(&self) -> Result<MfaStatus> {
        self.get_json("/v1/mfa/status").await
    }

    /// Starts a TOTP enrolment: the secret and its `otpauth://` URI (shown once).
    pub async fn totp_enroll(&self) -> Result<TotpEnrollment> {
        self.post_json("/v1/mfa/totp/enroll", None::<&()>).await
    }

    /// Confirms the enrolment with a first code; answers the backup codes (shown once).
    pub async fn totp_confirm(&self, code: &Secret) -> Result<BackupCodes> {
        self.post_json("/v1/mfa/totp/confirm", Some(&MfaCodeRequest { code: code.clone() })).await
    }

    /// Turns TOTP off (step-up).
    pub async fn totp_disable(&self) -> Result<()> {
        self.delete_empty("/v1/mfa/totp").await
    }

    /// A new set of backup codes (step-up); the previous set stops working.
    pub async fn regenerate_backup_codes(&self) -> Result<BackupCodes> {
        self.post_json("/v1/mfa/backup/regenerate", None::<&()>).await
    }

    /// Asks for a new challenge for this session (the login's, or a step-up).
    pub async fn mfa_challenge(&self) -> Result<MfaChallenge> {
        self.post_json("/v1/mfa/challenge", None::<&()>).await
    }

    /// Answers this session's challenge with a TOTP code (`backup: false`) or a backup code.
    pub async fn mfa_answer(
        &self,
        challenge_id: &str,
        code: &Secret,
        backup: bool,
        remember_device: bool,
    ) -> Result<MfaVerified> {
        let req =
            MfaVerifyRequest { challenge_id: challenge_id.to_owned(), code: code.clone(), remember_device };
        self.post_json(if backup { "/v1/mfa/backup" } else { "/v1/mfa/verify" }, Some(&req)).await
    }

    /// This user's trusted devices.
    pub async fn trusted_devices(&self) -> Result<TrustedDeviceList> {
        self.get_json("/v1/mfa/trusted-devices").await
    }

    /// Stops trusting one of this user's devices.
    pub async fn revoke_trusted_device(&self, device: DeviceId) -> Result<()> {
        self.delete_empty(&format!("/v1/mfa/trusted-devices/{device}")).await
    }

    /// The tenant's MFA policy (tenant administrators).
    pub async fn mfa_policy(&self) -> Result<MfaPolicy> {
        self.get_json("/v1/admin/tenant/mfa").await
    }

    /// Replaces the tenant's MFA policy (tenant administrators; step-up).
    pub async fn set_mfa_policy(&self, p: &MfaPolicy) -> Result<MfaPolicy> {
        let rb = self.client.http.put(self.url("/v1/admin/tenant/mfa")).json(p);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// One page of every user's MFA state, by name (tenant administrators).
    pub async fn users_mfa_status(
        &self,
        after: Option<&UserId>,
        limit: Option<usize>,
    ) -> Result<UserMfaStatusList> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let rb = self.client.http.get(self.url("/v1/admin/users/mfa-status")).query(&q);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Requires MFA of one user whatever the tenant level (tenant administrators; step-up).
    pub async fn enforce_mfa(&self, user: &UserId) -> Result<Enforced> {
        self.post_json(&format!("/v1/admin/users/{user}/mfa/enforce"), None::<&()>).await
    }

    /// Requires MFA of every user of the tenant (tenant administrators; step-up).
    pub async fn enforce_mfa_all(&self) -> Result<Enforced> {
        self.post_json("/v1/admin/mfa/enforce-all", None::<&()>).await
    }

    /// Resets a user's MFA: factor, backup codes, lock and trusted devices go (step-up).
    pub async fn reset_mfa(&self, user: &UserId) -> Result<()> {
        self.delete_empty(&format!("/v1/admin/users/{user}/mfa")).await
    }

    /// Uploads this device's pre-keys (`PUT /v1/keys`); returns the one-time keys it holds.
    pub async fn upload_keys(&self, keys: &UploadKeysRequest) -> Result<KeyCounts> {
        let rb = self.client.http.put(format!("{}/v1/keys", self.client.base)).json(keys);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// The one-time pre-keys the node holds for this device (`GET /v1/keys`).
    pub async fn key_counts(&self) -> Result<KeyCounts> {
        let rb = self.client.http.get(format!("{}/v1/keys", self.client.base));
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Fetches the pre-keys of one device of `user`, or of all its devices, as the node returns
    /// them (each fetch consumes one-time keys and a rate-limit token per device).
    pub async fn prekeys(&self, user: &UserId, device: Option<DeviceId>) -> Result<PreKeyResponse> {
        let url = match device {
            Some(d) => format!("{}/v1/keys/{user}/{d}", self.client.base),
            None => format!("{}/v1/keys/{user}", self.client.base),
        };
        let resp = self.exec(self.client.http.get(url)).await?;
        resp.json().await.map_err(transport)
    }

    /// Fetches and checks the bundles of one device of `user`, or of all its devices: every
    /// key parsed and every signature verified under the device's identity key.
    pub async fn prekey_bundles(&self, user: &UserId, device: Option<DeviceId>) -> Result<Vec<PreKeyBundle>> {
        self.prekeys(user, device).await?.devices.iter().map(bundle_of).collect()
    }

    /// Creates a group with `members` (the caller is a member and its first administrator).
    pub async fn create_group(&self, name: &str, members: &[UserId]) -> Result<GroupInfo> {
        let req = CreateGroupRequest { name: name.to_owned(), members: members.to_vec() };
        let rb = self.client.http.post(format!("{}/v1/groups", self.client.base)).json(&req);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// This user's groups.
    pub async fn groups(&self) -> Result<GroupList> {
        let rb = self.client.http.get(format!("{}/v1/groups", self.client.base));
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// One group (members and tenant administrators).
    pub async fn group(&self, group: &GroupId) -> Result<GroupInfo> {
        let rb = self.client.http.get(format!("{}/v1/groups/{group}", self.client.base));
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Adds members to a group (group and tenant administrators).
    pub async fn add_group_members(&self, group: &GroupId, users: &[UserId]) -> Result<GroupInfo> {
        let req = AddMembersRequest { users: users.to_vec() };
        let rb = self.client.http.post(format!("{}/v1/groups/{group}/members", self.client.base)).json(&req);
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Removes a member from a group (group and tenant administrators, or the member itself).
    pub async fn remove_group_member(&self, group: &GroupId, user: &UserId) -> Result<GroupInfo> {
        let rb = self.client.http.delete(format!("{}/v1/groups/{group}/members/{user}", self.client.base));
        self.exec(rb).await?.json().await.map_err(transport)
    }

    /// Opens the chat socket, authenticated by header, speaking postcard.
    pub async fn connect(&self) -> Result<Connection> {
        self.connect_encoded(false).await
    }

    /// Opens the chat socket speaking JSON text frames (`hush.json`) when `json`, else postcard.
    pub async fn connect_encoded(&self, json: bool) -> Result<Connection> {
        let url = format!("{}/v1/ws", self.client.base.replacen("http", "ws", 1));
        let connector = if url.starts_with("wss://") {
            let tls =
                self.client.tls.clone().ok_or_else(|| ClientError::Tls("no TLS configuration".into()))?;
            tokio_tungstenite::Connector::Rustls(tls)
        } else {
            tokio_tungstenite::Connector::Plain
        };
        let mut req = url.into_client_request().map_err(transport)?;
        let h = req.headers_mut();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", self.login.token.expose())).map_err(transport)?,
        );
        let subprotocol = if json { SUBPROTOCOL_JSON } else { SUBPROTOCOL_POSTCARD };
        h.insert("sec-websocket-protocol", HeaderValue::from_static(subprotocol));
        let connected =
            tokio_tungstenite::connect_async_tls_with_config(req, Some(ws_config()), false, Some(connector))
                .await;
        let (ws, _) = connected.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 || r.status() == 403 => {
                let status = r.status().as_u16();
                let body = r.body().as_deref().and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok());
                ClientError::Http {
                    status,
                    body: body.unwrap_or(ErrorBody {
                        error: "unauthorized".into(),
                        message: "invalid or revoked token".into(),
                    }),
                }
            }
            e => tls::tls_failure(&e).unwrap_or_else(|| transport(e)),
        })?;
        Ok(Connection { ws, pending: VecDeque::new(), session: self.clone(), json })
    }
}

/// The socket's limits: an 8 KiB read buffer (tungstenite's default, 128 KiB, is allocated per
/// socket and zero-filled before every read: ~5 µs of `memset` a frame, and a `munmap` when the
/// socket closes; a larger frame still grows the buffer while it is read), and no message above
/// what the protocol allows a frame ([`MAX_FRAME_BYTES`]: anything larger is refused by the
/// decoder anyway, so it is not buffered first).
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// The chat WebSocket of one device.
pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<ServerFrame>,
    session: Session,
    /// Frames are JSON text (`hush.json`) instead of postcard.
    json: bool,
}

/// Attempts of [`Connection::send_message`] when the device set changed under it.
pub const SEND_ATTEMPTS: usize = 3;

impl Connection {
    /// Sends one frame.
    pub async fn send_frame(&mut self, f: &ClientFrame) -> Result<()> {
        let m = if self.json {
            Message::Text(f.encode_text().map_err(transport)?.into())
        } else {
            Message::Binary(f.encode_binary().map_err(transport)?.into())
        };
        self.ws.send(m).await.map_err(transport)
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
    pub(crate) async fn answer(&mut self, id: MessageId) -> Result<ServerFrame> {
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
                | ServerFrame::StaleDevices { id: i, .. }
                | ServerFrame::StaleEpoch { id: i, .. } => *i == id,
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
    /// sender, made by `encrypt(user, device)`, each typed `ciphertext`. Refreshes device lists
    /// and retries when the node answers `MismatchedDevices` or `StaleDevices`. Returns the
    /// message id once accepted.
    pub async fn send_message<F>(&mut self, to: &UserId, mut encrypt: F) -> Result<MessageId>
    where
        F: FnMut(&UserId, &DeviceInfo) -> Vec<u8>,
    {
        self.send_typed_message(to, |u, d| (ContentType::Ciphertext, encrypt(u, d))).await
    }

    /// Like [`Connection::send_message`], with the type of each content given by `encrypt`.
    pub async fn send_typed_message<F>(&mut self, to: &UserId, mut encrypt: F) -> Result<MessageId>
    where
        F: FnMut(&UserId, &DeviceInfo) -> (ContentType, Vec<u8>),
    {
        let id = uuid::Uuid::new_v4();
        let mut last = None;
        for _ in 0..SEND_ATTEMPTS {
            let theirs = self.session.devices(Some(to)).await?;
            let me = self.session.user().clone();
            let mine = if *to == me { None } else { Some(self.session.devices(None).await?) };
            let own_device = self.session.device();
            let mk = |user: &UserId, d: &DeviceInfo, encrypt: &mut F| {
                let (content_type, content) = encrypt(user, d);
                DeviceMessage {
                    device: d.id,
                    registration_id: d.registration_id,
                    content: Payload(content),
                    content_type,
                }
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

    /// Sends one group ciphertext for `epoch` and returns the node's answer (`Accepted`,
    /// `StaleEpoch` or `Error`).
    pub async fn send_group(
        &mut self,
        id: MessageId,
        group: &GroupId,
        epoch: u64,
        content: Vec<u8>,
    ) -> Result<ServerFrame> {
        let f = ClientFrame::GroupSend(GroupSendMessage {
            id,
            group: group.clone(),
            epoch,
            content: Payload(content),
            content_type: ContentType::SenderKey,
        });
        self.send_frame(&f).await?;
        self.answer(id).await
    }

    /// Closes the socket politely.
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await.map_err(transport)
    }

    /// Ends this side of the connection (TCP half-close: the node reads the end of the stream,
    /// as when the connection is dropped) but keeps it, to be dropped later: for load tools that
    /// run many devices on one core and must not spend it freeing connections while they measure.
    pub async fn end_stream(&mut self) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        match self.ws.get_mut() {
            MaybeTlsStream::Plain(s) => s.shutdown().await,
            MaybeTlsStream::Rustls(s) => s.shutdown().await,
            _ => Ok(()),
        }
        .map_err(transport)
    }
}

fn bad_bundle(e: impl std::fmt::Display) -> ClientError {
    ClientError::E2e(format!("bad pre-key bundle: {e}"))
}

/// Checks a fetched device's keys and turns them into the library's bundle.
pub fn bundle_of(d: &hush_protocol::api::DevicePreKeys) -> Result<PreKeyBundle> {
    let ik = &d.identity_key.0;
    let identity_key = PublicKey::from_exact(ik).map_err(bad_bundle)?;
    let s = &d.signed_pre_key;
    let signed_pre_key =
        verify_signed_ec_prekey(ik, s.key_id, &s.public_key.0, &s.signature.0).map_err(bad_bundle)?;
    let one_time_pre_key = d
        .pre_key
        .as_ref()
        .map(|k| parse_one_time_prekey(k.key_id, &k.public_key.0))
        .transpose()
        .map_err(bad_bundle)?;
    let kyber_pre_key = d
        .kyber_pre_key
        .as_ref()
        .map(|k| verify_kyber_prekey(ik, k.key_id, &k.public_key.0, &k.signature.0))
        .transpose()
        .map_err(bad_bundle)?;
    Ok(state::bundle(
        d.registration_id,
        d.device_id,
        identity_key,
        signed_pre_key,
        one_time_pre_key,
        kyber_pre_key,
    ))
}

/// The upload body of a set of public pre-keys.
pub fn upload_request(up: &state::PreKeyUpload) -> UploadKeysRequest {
    let signed = |key_id: u32, pk: Vec<u8>, sig: &[u8]| SignedPreKey {
        key_id: i64::from(key_id),
        public_key: Payload(pk),
        signature: Payload(sig.to_vec()),
    };
    UploadKeysRequest {
        signed_pre_key: up
            .signed_pre_key
            .as_ref()
            .map(|k| signed(k.key_id.get(), k.public_key.serialize().to_vec(), &k.signature)),
        pre_keys: up
            .one_time
            .iter()
            .map(|k| PreKey {
                key_id: i64::from(k.key_id.get()),
                public_key: Payload(k.public_key.serialize().to_vec()),
            })
            .collect(),
        kyber_pre_keys: up
            .kyber_one_time
            .iter()
            .map(|k| signed(k.key_id.get(), k.public_key.serialize().to_vec(), &k.signature))
            .collect(),
        kyber_last_resort: up
            .kyber_last_resort
            .as_ref()
            .map(|k| signed(k.key_id.get(), k.public_key.serialize().to_vec(), &k.signature)),
    }
}

/// Registers a new device of `user` with a fresh end-to-end identity: logs in with its
/// identity key, then uploads its signed pre-key, [`state::ONE_TIME_BATCH`] EC and as many
/// Kyber one-time pre-keys, and its Kyber last-resort key. Returns the session and the device
/// state (to be saved by the caller).
pub async fn register_device(
    client: &Client,
    tenant: &TenantId,
    user: &UserId,
    password: &Secret,
    name: Option<String>,
) -> Result<(Session, state::DeviceState)> {
    let mut st = state::DeviceState::generate(random_registration_id())?;
    let session = login_device(client, tenant, user, password, None, name, &mut st).await?;
    let up = st.one_time_upload()?;
    session.upload_keys(&upload_request(&up)).await?;
    Ok((session, st))
}

/// Logs in as device `device` (or a new one) with the identity key of `st`, and adopts the
/// registration id the node keeps for it.
pub async fn login_device(
    client: &Client,
    tenant: &TenantId,
    user: &UserId,
    password: &Secret,
    device: Option<DeviceId>,
    name: Option<String>,
    st: &mut state::DeviceState,
) -> Result<Session> {
    let req = DeviceRequest {
        id: device,
        registration_id: st.registration_id(),
        name,
        identity_key: Some(Payload(st.identity_key().serialize().to_vec())),
        // A new device is registered with its signed keys in the same request, so it is
        // never listed without them.
        keys: if device.is_none() { Some(upload_request(&st.signed_upload()?)) } else { None },
    };
    let session = client.login(tenant, user, password, req).await?;
    st.set_registration_id(session.login_info().registration_id);
    Ok(session)
}

/// A login request for a new device of a client that only relays bytes (load generators, tests
/// of the raw protocol): a fresh identity key with its signed pre-key and Kyber last-resort key,
/// whose private halves are thrown away. The node lists only devices with keys to senders, so
/// even a client that does no end-to-end encryption registers some.
pub fn relay_only_device(name: Option<String>) -> Result<DeviceRequest> {
    let st = state::DeviceState::generate(random_registration_id())?;
    Ok(DeviceRequest {
        id: None,
        registration_id: st.registration_id(),
        name,
        identity_key: Some(Payload(st.identity_key().serialize().to_vec())),
        keys: Some(upload_request(&st.signed_upload()?)),
    })
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
