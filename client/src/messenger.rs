//! [`Messenger`]: end-to-end encrypted chat over one device's [`Connection`].
//!
//! It owns the device's [`DeviceState`] and saves it (when it has a file) after every change and
//! before anything leaves the device: a message is encrypted, the state saved, then the frame
//! sent, so a crash never reuses a message key; a message is decrypted, the state saved, then the
//! envelope acknowledged, so a crash never loses a session step (a redelivered envelope is
//! recognised by its id and only acknowledged).
//!
//! - 1:1: [`Messenger::send_text`] starts a session from a fetched bundle with every device
//!   that has none (the recipient's, and this user's other devices for the sync copies),
//!   encrypts per device and sends; `MismatchedDevices` / `StaleDevices` drop the sessions of
//!   the devices named and resend with fresh bundles, at most [`SEND_ATTEMPTS`] times.
//! - Groups: [`Messenger::send_group_text`] makes sure every member device holds this device's
//!   current sender key for the group's epoch (a new chain after a member left), distributing it
//!   pairwise as a [`Content::SenderKeyDistribution`], then encrypts once and sends the group
//!   frame with the epoch; a stale epoch refreshes the group and retries.
//! - [`Messenger::next_event`] decrypts deliveries, deduplicates them by message id,
//!   acknowledges them, and handles the node's key events: `PreKeysLow` (upload a new batch),
//!   `RotateKeys` (new signed pre-key and last-resort key), `RotateSenderKey` (new chain,
//!   redistributed to the remaining members) and `DistributeSenderKey` (our chain to new
//!   devices). A group message that arrives before its sender's key is held (at most
//!   [`MAX_HELD_GROUP_MESSAGES`], unacknowledged) until the key arrives.
//! - Plaintexts are Signal's `Content` protobuf ([`crate::content`]); what the SDK does not
//!   interpret reaches the application as [`Event::Other`].
//! - An envelope that cannot be decrypted is quarantined and answered with a retry request; a
//!   retry request for a message this device sent resets the session with the requesting device
//!   and sends the message again ([`crate::retry`]).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use hush_protocol::api::DeviceInfo;
use hush_protocol::api::GroupInfo;
use hush_protocol::e2e::PeerAddress;
use hush_protocol::ids::{DeviceId, GroupId, MessageId, UserId};
use hush_protocol::wire::{
    ClientFrame, ContentType, DeviceMessage, Envelope, Payload, SendMessage, ServerFrame, SessionEvent,
};

use hush_protocol::e2e::content::{Content as SignalContent, HushExtension};
use hush_protocol::e2e::retry::{DecryptionErrorMessage, PlaintextContent};

use crate::quarantine::Quarantined;
use crate::retry::{SentTo, MAX_RESENDS};

use crate::content::{encode_signal, Content, Decoded, MAX_BODY_BYTES};
use crate::state::{now_ms, peer, DeviceState, PreKeyUpload, StateError, ONE_TIME_BATCH};
use crate::{upload_request, ClientError, Connection, Result, Session, SEND_ATTEMPTS};
use hush_protocol::e2e::E2eError;

/// Users whose device lists are cached (the cache is emptied when full).
pub const MAX_CACHED_DEVICE_LISTS: usize = 1_000;

/// Group messages held while their sender's key has not arrived yet.
pub const MAX_HELD_GROUP_MESSAGES: usize = 256;

/// What [`Messenger::next_event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text from another user.
    Text {
        /// The message id.
        id: MessageId,
        /// The sender.
        from: UserId,
        /// The sending device.
        from_device: DeviceId,
        /// The text.
        body: String,
        /// The envelope's content type (`prekey` or `ciphertext`; `unknown` if it was queued
        /// before the node recorded types).
        content_type: ContentType,
        /// The Signal `Content` it came in, every field included (those the SDK does not read
        /// too); `None` for a plaintext of the SDK's previous format.
        signal: Option<Box<SignalContent>>,
    },
    /// A text this user sent from another device (sync copy).
    Sent {
        /// The message id.
        id: MessageId,
        /// The recipient of the original.
        to: UserId,
        /// The device that sent it.
        from_device: DeviceId,
        /// The text.
        body: String,
        /// The envelope's content type.
        content_type: ContentType,
        /// The Signal `Content` it came in (`None`: the previous format).
        signal: Option<Box<SignalContent>>,
    },
    /// A group text.
    GroupText {
        /// The message id.
        id: MessageId,
        /// The group.
        group: GroupId,
        /// The sender.
        from: UserId,
        /// The sending device.
        from_device: DeviceId,
        /// The text.
        body: String,
        /// The ciphertext as delivered (one for every member device).
        ciphertext: Payload,
        /// The envelope's content type (`sender_key`; `unknown` is not expected, as the node
        /// reads group messages stored before types as `sender_key`).
        content_type: ContentType,
        /// The Signal `Content` it came in (`None`: the previous format).
        signal: Option<Box<SignalContent>>,
    },
    /// A decrypted Signal `Content` the SDK does not interpret (a typing indicator, a receipt,
    /// a kind of message from a newer app), handed over as is. `group` is set for one that came
    /// in a group message.
    Other {
        /// The message id.
        id: MessageId,
        /// The sender.
        from: UserId,
        /// The sending device.
        from_device: DeviceId,
        /// The group, for a group message.
        group: Option<GroupId>,
        /// The content, every field included.
        content: Box<SignalContent>,
        /// The envelope's content type.
        content_type: ContentType,
    },
    /// A device could not decrypt a message this device sent and asked for it again (a
    /// `DecryptionErrorMessage`, see [`crate::retry`]). The session with that device was reset
    /// and, when the message was in the recent-sent cache, it was sent again (`resent`).
    RetryRequested {
        /// The user whose device asked.
        from: UserId,
        /// The device that asked.
        from_device: DeviceId,
        /// The message it could not read, when the request names it (Hush's extension; a
        /// libsignal app's request names only a timestamp).
        message: Option<MessageId>,
        /// The failed message's timestamp as the requester knows it (for Hush, when the node
        /// accepted it), ms since the Unix epoch.
        timestamp_ms: u64,
        /// Whether the message was sent again.
        resent: bool,
    },
    /// A member's sender key for a group arrived.
    SenderKeyReceived {
        /// The group.
        group: GroupId,
        /// The member.
        from: UserId,
        /// Its device.
        from_device: DeviceId,
    },
    /// A message that could not be decrypted. It was kept in the quarantine
    /// ([`Messenger::quarantined`]) and then acknowledged; or, when the quarantine is full,
    /// left unacknowledged on the node (`quarantined` false: it comes back at the next
    /// connection). Never dropped.
    Undecryptable {
        /// The message id.
        id: MessageId,
        /// The sender.
        from: UserId,
        /// The sending device.
        from_device: DeviceId,
        /// Why.
        reason: String,
        /// The envelope's content type.
        content_type: ContentType,
        /// Whether it is in the quarantine (and was acknowledged).
        quarantined: bool,
    },
    /// A peer device's identity key changed (it re-registered); its new key was accepted as
    /// the node vouches for it, and sessions with it start anew.
    IdentityChanged {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// The node asked for keys and this device answered.
    KeysMaintained(KeyAction),
    /// An account event (login, device added or removed, session revoked).
    Account(SessionEvent),
    /// Everything queued while offline has been handled.
    UpToDate,
    /// The session ended; the socket closes next.
    LoggedOut {
        /// Why.
        reason: String,
    },
}

/// Key maintenance done on the node's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// New one-time pre-keys uploaded.
    Replenished {
        /// EC one-time keys uploaded.
        ec: usize,
        /// Kyber one-time keys uploaded.
        kyber: usize,
    },
    /// New signed pre-key and Kyber last-resort key uploaded.
    RotatedSignedKeys,
    /// A new sender key for `group` (epoch `epoch`) sent to the remaining members.
    SenderKeyRotated {
        /// The group.
        group: GroupId,
        /// The epoch.
        epoch: u64,
    },
    /// Our sender key for `group` sent to new member devices.
    SenderKeyDistributed {
        /// The group.
        group: GroupId,
        /// Devices it was sent to.
        devices: usize,
    },
}

/// Errors of the messenger.
impl From<StateError> for ClientError {
    fn from(e: StateError) -> Self {
        ClientError::E2e(e.to_string())
    }
}

/// A group message held until its sender's key arrives.
struct Held {
    envelope: Envelope,
    group: GroupId,
}

/// End-to-end encrypted messaging for one device (see the module docs).
pub struct Messenger {
    session: Session,
    conn: Connection,
    state: DeviceState,
    path: Option<PathBuf>,
    held: VecDeque<Held>,
    /// Events ready to be returned (held messages that became readable).
    ready: VecDeque<Event>,
    /// Device lists by user, as last fetched; a user's list is fetched again when the node
    /// says it is wrong (`MismatchedDevices` / `StaleDevices`) or an account event changes it.
    device_lists: HashMap<UserId, Vec<DeviceInfo>>,
    /// Sends repeated after `MismatchedDevices` / `StaleDevices`, or on a retry request.
    resends: u64,
    /// Retry requests sent.
    retry_requests: u64,
}

impl core::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Messenger").field("state", &self.state).finish_non_exhaustive()
    }
}

fn too_long() -> ClientError {
    ClientError::E2e(format!("text longer than {MAX_BODY_BYTES} bytes"))
}

impl Messenger {
    /// Connects `session`'s device with its end-to-end state; `path` is where the state is
    /// saved after each change (`None`: memory only).
    pub async fn connect(session: Session, state: DeviceState, path: Option<PathBuf>) -> Result<Self> {
        let conn = session.connect().await?;
        Ok(Self {
            session,
            conn,
            state,
            path,
            held: VecDeque::new(),
            ready: VecDeque::new(),
            device_lists: HashMap::new(),
            resends: 0,
            retry_requests: 0,
        })
    }

    /// Like [`Messenger::connect`] on a connection already open: a caller that must take the
    /// device's socket before it reads the state (another process may hold the socket and
    /// write the state until it is displaced).
    pub fn with_connection(
        session: Session,
        conn: Connection,
        state: DeviceState,
        path: Option<PathBuf>,
    ) -> Self {
        Self {
            session,
            conn,
            state,
            path,
            held: VecDeque::new(),
            ready: VecDeque::new(),
            device_lists: HashMap::new(),
            resends: 0,
            retry_requests: 0,
        }
    }

    /// The device's end-to-end state.
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// The device's end-to-end state, for callers that test it directly.
    pub fn state_mut(&mut self) -> &mut DeviceState {
        &mut self.state
    }

    /// Queues an event per peer whose identity changed in the last operations.
    fn collect_identity_changes(&mut self) {
        for a in self.state.take_identity_changes() {
            if let (Ok(user), Ok(device)) = (UserId::new(a.name), DeviceId::new(a.device_id)) {
                self.ready.push_back(Event::IdentityChanged { user, device });
            }
        }
    }

    /// Sends repeated because the node found the device set wrong or stale (each one refreshed
    /// the device list and sessions first).
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// The devices of `user` (this user's own included), from the cache or the node.
    async fn device_list(&mut self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        if let Some(v) = self.device_lists.get(user) {
            return Ok(v.clone());
        }
        let v = if user == self.session.user() {
            self.session.devices(None).await?.devices
        } else {
            self.session.devices(Some(user)).await?.devices
        };
        if self.device_lists.len() >= MAX_CACHED_DEVICE_LISTS {
            self.device_lists.clear();
        }
        self.device_lists.insert(user.clone(), v.clone());
        Ok(v)
    }

    /// The logged-in session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Closes the socket and returns the state.
    pub async fn close(self) -> Result<DeviceState> {
        let _ = self.conn.close().await;
        Ok(self.state)
    }

    fn save(&self) -> Result<()> {
        if let Some(p) = &self.path {
            self.state.save_file(p)?;
        }
        Ok(())
    }

    fn me(&self) -> PeerAddress {
        peer(self.session.user(), self.session.device())
    }

    /// Makes sure a session exists with each of `devices` of `user`, fetching bundles for
    /// those without one (or with one built for an older registration id).
    async fn ensure_sessions(&mut self, user: &UserId, devices: &[DeviceInfo]) -> Result<()> {
        let need: Vec<DeviceId> = devices
            .iter()
            .filter(|d| !self.state.has_session(&peer(user, d.id), d.registration_id))
            .map(|d| d.id)
            .collect();
        if need.is_empty() {
            return Ok(());
        }
        // One request for every device when all need a session; else one per device, so no
        // one-time key (nor rate-limit token) is spent on a device we already talk to.
        let bundles = if need.len() == devices.len() {
            self.session.prekey_bundles(user, None).await?
        } else {
            let mut v = Vec::with_capacity(need.len());
            for d in &need {
                v.extend(self.session.prekey_bundles(user, Some(*d)).await?);
            }
            v
        };
        for d in &need {
            let b = bundles
                .iter()
                .find(|b| b.device_id == d.get())
                .ok_or_else(|| ClientError::E2e(format!("{user}/{d} has no pre-keys: it cannot receive")))?;
            self.state.start_session(&peer(user, *d), b)?;
        }
        self.save()
    }

    /// Builds and sends one pairwise message to every device of `to` and every other device of
    /// this user, with `content(is_sync)` as plaintext; refreshes and resends on a wrong device
    /// set. Returns the message id once accepted.
    async fn send_pairwise<F>(&mut self, to: &UserId, content: F) -> Result<MessageId>
    where
        F: FnMut(bool) -> Content,
    {
        self.send_pairwise_as(uuid::Uuid::new_v4(), to, content).await
    }

    /// [`Self::send_pairwise`] under message id `id` (a re-send keeps the original's id).
    async fn send_pairwise_as<F>(&mut self, id: MessageId, to: &UserId, mut content: F) -> Result<MessageId>
    where
        F: FnMut(bool) -> Content,
    {
        self.send_padded_as(id, to, |sync| content(sync).encode().map_err(|_| too_long())).await
    }

    /// [`Self::send_pairwise_as`] with the padded plaintext bytes made by `plain(is_sync)`.
    async fn send_padded_as<F>(&mut self, id: MessageId, to: &UserId, mut plain: F) -> Result<MessageId>
    where
        F: FnMut(bool) -> Result<zeroize::Zeroizing<Vec<u8>>>,
    {
        let me = self.session.user().clone();
        let own = self.session.device();
        let mut last = None;
        for _ in 0..SEND_ATTEMPTS {
            let theirs: Vec<DeviceInfo> =
                self.device_list(to).await?.into_iter().filter(|d| !(*to == me && d.id == own)).collect();
            let mine: Vec<DeviceInfo> = if *to == me {
                Vec::new()
            } else {
                self.device_list(&me).await?.into_iter().filter(|d| d.id != own).collect()
            };
            self.ensure_sessions(to, &theirs).await?;
            self.ensure_sessions(&me, &mine).await?;
            let mut devices = Vec::with_capacity(theirs.len());
            for d in &theirs {
                let plain = plain(*to == me)?;
                let (content_type, ct) = self.state.encrypt_typed(&peer(to, d.id), &plain)?;
                devices.push(DeviceMessage {
                    device: d.id,
                    registration_id: d.registration_id,
                    content: Payload(ct),
                    content_type,
                });
            }
            let mut sync = Vec::with_capacity(mine.len());
            for d in &mine {
                let plain = plain(true)?;
                let (content_type, ct) = self.state.encrypt_typed(&peer(&me, d.id), &plain)?;
                sync.push(DeviceMessage {
                    device: d.id,
                    registration_id: d.registration_id,
                    content: Payload(ct),
                    content_type,
                });
            }
            if devices.is_empty() {
                // Only this device exists: nothing to send (a note to self stays local).
                return Ok(id);
            }
            // Saved before sending: a crash must never lead to a message key used twice.
            self.save()?;
            let frame = ClientFrame::Send(SendMessage { id, to: to.clone(), devices, sync });
            self.conn.send_frame(&frame).await?;
            match self.conn.answer(id).await? {
                ServerFrame::Accepted { .. } => return Ok(id),
                ServerFrame::MismatchedDevices { user, extra, missing, .. } => {
                    self.device_lists.remove(&user);
                    self.resends += 1;
                    for d in extra.iter().chain(&missing) {
                        self.state.forget_peer(&peer(&user, *d));
                    }
                    last = Some(ServerFrame::MismatchedDevices { id, user, extra, missing });
                }
                ServerFrame::StaleDevices { user, stale, .. } => {
                    self.device_lists.remove(&user);
                    self.resends += 1;
                    for d in &stale {
                        self.state.forget_session(&peer(&user, *d));
                    }
                    last = Some(ServerFrame::StaleDevices { id, user, stale });
                }
                f => return Err(ClientError::Refused(Box::new(f))),
            }
            self.save()?;
        }
        Err(ClientError::Refused(Box::new(last.unwrap_or(ServerFrame::QueueEmpty))))
    }

    /// Sends a text to every device of `to` (and sync copies to this user's other devices).
    /// The text is remembered for a while, to be sent again if a device of `to` cannot decrypt
    /// it ([`crate::retry`]).
    pub async fn send_text(&mut self, to: &UserId, body: &str) -> Result<MessageId> {
        if body.len() > MAX_BODY_BYTES {
            return Err(too_long());
        }
        let id = uuid::Uuid::new_v4();
        // Remembered first: the save before sending keeps it.
        self.state.remember_sent(id, SentTo::User(to.clone()), body);
        self.send_text_as(id, to, body).await
    }

    async fn send_text_as(&mut self, id: MessageId, to: &UserId, body: &str) -> Result<MessageId> {
        let to_owned = to.clone();
        self.send_pairwise_as(id, to, |sync| {
            if sync {
                Content::SentText { to: to_owned.clone(), body: body.to_owned() }
            } else {
                Content::Text { body: body.to_owned() }
            }
        })
        .await
    }

    /// Creates a group with `members` (this user is a member and its administrator).
    pub async fn create_group(&mut self, name: &str, members: &[UserId]) -> Result<GroupId> {
        Ok(self.session.create_group(name, members).await?.id)
    }

    /// Adds members (group administrators). Existing members' devices are told by the node to
    /// send them their sender keys; this device sends its own at once if it has one.
    pub async fn add_members(&mut self, group: &GroupId, users: &[UserId]) -> Result<GroupInfo> {
        let info = self.session.add_group_members(group, users).await?;
        if self.state.group_sending(group.as_str()).is_some() {
            self.distribute_sender_key(&info, false).await?;
        }
        Ok(info)
    }

    /// Removes members (group administrators, or a member leaving). The epoch goes up: this
    /// device replaces its sender key at once if it has one, and the others on the node's
    /// `RotateSenderKey`.
    pub async fn remove_members(&mut self, group: &GroupId, users: &[UserId]) -> Result<GroupInfo> {
        let mut info = None;
        for u in users {
            info = Some(self.session.remove_group_member(group, u).await?);
        }
        let info = match info {
            Some(i) => i,
            None => self.session.group(group).await?,
        };
        if users.contains(self.session.user()) {
            self.state.drop_group_chain(group.as_str());
            self.save()?;
        } else if self.state.group_sending(group.as_str()).is_some() {
            self.distribute_sender_key(&info, false).await?;
        }
        Ok(info)
    }

    /// Makes sure every member device of `group` holds this device's current sender key for
    /// the group's epoch (a new chain when ours predates it, or when `rotate`), sending it
    /// pairwise to each member user with a device that lacks it. Returns the number of devices
    /// that lacked it.
    async fn distribute_sender_key(&mut self, info: &GroupInfo, rotate: bool) -> Result<usize> {
        let me = self.me();
        let group = info.id.as_str();
        let (skdm, fresh) = if rotate {
            (self.state.rotate_group_chain(&me, group, info.epoch)?, true)
        } else {
            self.state.group_distribution(&me, group, info.epoch)?
        };
        self.save()?;
        let my_user = self.session.user().clone();
        let own = self.session.device();
        // This user's other devices first (they are members too), then every other member.
        let mut users: Vec<UserId> = vec![my_user.clone()];
        users.extend(info.members.iter().filter(|u| **u != my_user).cloned());
        let mut sent = 0;
        for user in users {
            // Fresh lists here: the node fans group messages out to every device a member has
            // now, with no device-set check to catch a stale cache (a member's new device would
            // otherwise never get our key).
            self.device_lists.remove(&user);
            let devices = self.device_list(&user).await?;
            let lacking = devices
                .iter()
                .filter(|d| !(user == my_user && d.id == own))
                .filter(|d| fresh || !self.state.holds_our_key(group, &peer(&user, d.id)))
                .count();
            if lacking == 0 {
                continue;
            }
            let (g, epoch, bytes) = (info.id.clone(), info.epoch, skdm.to_vec());
            self.send_pairwise(&user, |_| Content::SenderKeyDistribution {
                group: g.clone(),
                epoch,
                skdm: bytes.clone(),
            })
            .await?;
            // Every device of `user` has it now (and this user's other devices, by the sync
            // copies).
            for d in &devices {
                self.state.mark_distributed(group, &peer(&user, d.id));
            }
            sent += lacking;
        }
        self.save()?;
        Ok(sent)
    }

    /// Sends a text to a group: one Sender Key ciphertext for every member device, after
    /// making sure each holds this device's current sender key. A stale epoch (a member left
    /// meanwhile) refreshes the group, which replaces the key, and retries.
    /// The text is remembered for a while, to be sent again if a member device cannot decrypt
    /// it ([`crate::retry`]).
    pub async fn send_group_text(&mut self, group: &GroupId, body: &str) -> Result<MessageId> {
        if body.len() > MAX_BODY_BYTES {
            return Err(too_long());
        }
        let id = uuid::Uuid::new_v4();
        self.state.remember_sent(id, SentTo::Group(group.clone()), body);
        self.send_group_text_as(id, group, body).await
    }

    async fn send_group_text_as(&mut self, id: MessageId, group: &GroupId, body: &str) -> Result<MessageId> {
        let me = self.me();
        let mut last = None;
        for _ in 0..SEND_ATTEMPTS {
            let info = self.session.group(group).await?;
            self.distribute_sender_key(&info, false).await?;
            let plain = Content::GroupText { body: body.to_owned() }.encode().map_err(|_| too_long())?;
            let ct = self.state.group_encrypt(&me, group.as_str(), &plain)?;
            // Saved before sending: a chain step is never used twice.
            self.save()?;
            match self.conn.send_group(id, group, info.epoch, ct).await? {
                ServerFrame::Accepted { .. } => return Ok(id),
                f @ ServerFrame::StaleEpoch { .. } => last = Some(f),
                f => return Err(ClientError::Refused(Box::new(f))),
            }
        }
        Err(ClientError::Refused(Box::new(last.unwrap_or(ServerFrame::QueueEmpty))))
    }

    /// `RotateSenderKey`: after a removal, replace our chain (unless already done for this
    /// epoch) and give the new one to the remaining members only; on age or use, replace it.
    async fn on_rotate_sender_key(
        &mut self,
        group: &GroupId,
        epoch: u64,
        reason: &str,
    ) -> Result<Option<Event>> {
        let Some(ours) = self.state.group_sending(group.as_str()) else {
            // No chain yet: the first send makes one for the current epoch.
            return Ok(None);
        };
        let removal = reason == "member_removed";
        if removal && ours.epoch >= epoch {
            return Ok(None);
        }
        let Some(mut info) = self.group_if_member(group).await? else {
            return Ok(None);
        };
        info.epoch = info.epoch.max(epoch);
        self.distribute_sender_key(&info, !removal).await?;
        Ok(Some(Event::KeysMaintained(KeyAction::SenderKeyRotated {
            group: group.clone(),
            epoch: info.epoch,
        })))
    }

    /// The group, or `None` (and our chain forgotten) if this user is no longer a member: the
    /// node answers 404 then, as for a group that does not exist.
    async fn group_if_member(&mut self, group: &GroupId) -> Result<Option<GroupInfo>> {
        match self.session.group(group).await {
            Ok(i) if i.members.contains(self.session.user()) => Ok(Some(i)),
            Ok(_) | Err(ClientError::Http { status: 404, .. }) => {
                self.state.drop_group_chain(group.as_str());
                self.save()?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `DistributeSenderKey`: give our current chain to the new member devices, if we have one.
    async fn on_distribute_sender_key(&mut self, group: &GroupId) -> Result<Option<Event>> {
        if self.state.group_sending(group.as_str()).is_none() {
            return Ok(None);
        }
        let Some(info) = self.group_if_member(group).await? else {
            return Ok(None);
        };
        let devices = self.distribute_sender_key(&info, false).await?;
        Ok(Some(Event::KeysMaintained(KeyAction::SenderKeyDistributed { group: group.clone(), devices })))
    }

    /// The next event: decrypts and acknowledges deliveries and handles key requests.
    pub async fn next_event(&mut self) -> Result<Event> {
        loop {
            self.collect_identity_changes();
            if let Some(ev) = self.ready.pop_front() {
                return Ok(ev);
            }
            let frame = self.conn.next_frame().await?;
            if let Some(ev) = self.handle(frame).await? {
                return Ok(ev);
            }
        }
    }

    /// Like [`Messenger::next_event`], but gives up as soon as `other` completes while the
    /// messenger waits for the node: `Err(output)` then, and no frame is lost (the wait is the
    /// only point where `other` can win; an event being handled is always finished first).
    /// `other` is polled again at each wait, so pass a future that can be resumed (`&mut`).
    pub async fn next_event_or<F: std::future::Future + Unpin>(
        &mut self,
        other: &mut F,
    ) -> std::result::Result<Result<Event>, F::Output> {
        loop {
            self.collect_identity_changes();
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Ok(ev));
            }
            let frame = tokio::select! {
                biased;
                f = self.conn.next_frame() => f,
                o = &mut *other => return Err(o),
            };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Ok(Err(e)),
            };
            match self.handle(frame).await {
                Ok(Some(ev)) => return Ok(Ok(ev)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    async fn handle(&mut self, frame: ServerFrame) -> Result<Option<Event>> {
        match frame {
            ServerFrame::Deliver(env) => self.on_deliver(env).await,
            ServerFrame::QueueEmpty => Ok(Some(Event::UpToDate)),
            ServerFrame::LoggedOut { reason } => Ok(Some(Event::LoggedOut { reason })),
            ServerFrame::PreKeysLow { ec, kyber } => {
                // Every kind short of a full batch is refilled: the node's threshold is its own
                // setting, and a full upload is what stops its pushes.
                let full = u32::try_from(ONE_TIME_BATCH).unwrap_or(u32::MAX);
                let mut up = PreKeyUpload {
                    signed_pre_key: None,
                    one_time: Vec::new(),
                    kyber_one_time: Vec::new(),
                    kyber_last_resort: None,
                };
                if ec < full {
                    up.one_time = self.state.new_one_time_keys(ONE_TIME_BATCH)?;
                }
                if kyber < full {
                    up.kyber_one_time = self.state.new_kyber_keys(ONE_TIME_BATCH)?;
                }
                if up.one_time.is_empty() && up.kyber_one_time.is_empty() {
                    return Ok(None);
                }
                // Private halves saved before the public ones are published.
                self.save()?;
                self.session.upload_keys(&upload_request(&up)).await?;
                Ok(Some(Event::KeysMaintained(KeyAction::Replenished {
                    ec: up.one_time.len(),
                    kyber: up.kyber_one_time.len(),
                })))
            }
            ServerFrame::RotateKeys { .. } => {
                let up = self.state.rotate_signed_keys()?;
                self.save()?;
                self.session.upload_keys(&upload_request(&up)).await?;
                Ok(Some(Event::KeysMaintained(KeyAction::RotatedSignedKeys)))
            }
            _ => Ok(None),
        }
    }

    async fn on_deliver(&mut self, env: Envelope) -> Result<Option<Event>> {
        if let Some(ev) = env.event.clone() {
            // Handled first, acknowledged after: a crash in between replays the event.
            let out = match &ev {
                SessionEvent::RotateSenderKey { group, epoch, reason } => {
                    self.on_rotate_sender_key(group, *epoch, reason).await?
                }
                SessionEvent::DistributeSenderKey { group, .. } => {
                    self.on_distribute_sender_key(group).await?
                }
                SessionEvent::GroupChanged { group, members, .. } => {
                    if !members.contains(self.session.user()) {
                        self.state.drop_group_chain(group.as_str());
                        self.save()?;
                    }
                    Some(Event::Account(ev.clone()))
                }
                SessionEvent::DeviceAdded { .. } | SessionEvent::DeviceRemoved { .. } => {
                    let me = self.session.user().clone();
                    self.device_lists.remove(&me);
                    Some(Event::Account(ev.clone()))
                }
                _ => Some(Event::Account(ev.clone())),
            };
            self.conn.ack(vec![env.seq]).await?;
            return Ok(out);
        }
        // A message seen before is dropped, unless it is one we could not read (then this is the
        // re-send a retry request asked for).
        if self.state.seen(&env.id) && !self.state.is_quarantined(&env.id, &env.from, env.from_device) {
            self.conn.ack(vec![env.seq]).await?;
            return Ok(None);
        }
        if let Some(stamp) = env.group.clone() {
            return self.on_group_message(env, stamp.group, true).await;
        }
        if env.content_type == ContentType::Plaintext {
            return self.on_plaintext(env).await;
        }
        if !matches!(env.content_type, ContentType::PreKey | ContentType::Ciphertext | ContentType::Unknown) {
            let why = format!("content type `{}` is not handled on a 1:1 envelope", env.content_type);
            return self.undecryptable(&env, why).await;
        }
        let from = peer(&env.from, env.from_device);
        let plain = match self.state.decrypt_typed(&from, env.content_type, &env.content.0) {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(e) => return self.undecryptable_with_retry(&env, e.to_string()).await,
        };
        let decoded = match Content::decode(&plain, false) {
            Ok(c) => c,
            Err(e) => return self.undecryptable(&env, e.to_string()).await,
        };
        let ev = match decoded {
            Decoded::Known(Content::Text { body }, signal) => Some(Event::Text {
                id: env.id,
                from: env.from.clone(),
                from_device: env.from_device,
                body,
                content_type: env.content_type,
                signal,
            }),
            // Only this user's own devices may claim to have sent something.
            Decoded::Known(Content::SentText { to, body }, signal) if env.from == *self.session.user() => {
                Some(Event::Sent {
                    id: env.id,
                    to,
                    from_device: env.from_device,
                    body,
                    content_type: env.content_type,
                    signal,
                })
            }
            Decoded::Other(content) => Some(Event::Other {
                id: env.id,
                from: env.from.clone(),
                from_device: env.from_device,
                group: None,
                content,
                content_type: env.content_type,
            }),
            Decoded::Known(Content::SenderKeyDistribution { group, skdm, .. }, _) => {
                if let Err(e) = self.state.process_distribution(&from, group.as_str(), &skdm) {
                    return self.undecryptable(&env, e.to_string()).await;
                }
                self.release_held(&from, &group).await?;
                Some(Event::SenderKeyReceived { group, from: env.from.clone(), from_device: env.from_device })
            }
            _ => return self.undecryptable(&env, "unexpected content".into()).await,
        };
        self.state.release_quarantined_from(&env.id, &env.from, env.from_device);
        self.state.mark_seen(env.id);
        self.save()?;
        self.conn.ack(vec![env.seq]).await?;
        Ok(ev)
    }

    /// Decrypts a group message. Without the sender's key yet, it is held (unacknowledged) when
    /// `may_hold`, until the key arrives.
    async fn on_group_message(
        &mut self,
        env: Envelope,
        group: GroupId,
        may_hold: bool,
    ) -> Result<Option<Event>> {
        let from = peer(&env.from, env.from_device);
        let plain = match self.state.group_decrypt(&from, group.as_str(), &env.content.0) {
            Ok(p) => p,
            Err(StateError::E2e(E2eError::NoSenderKeyState)) if may_hold => {
                if self.held.len() >= MAX_HELD_GROUP_MESSAGES {
                    if let Some(old) = self.held.pop_front() {
                        if let Some(ev) = self
                            .undecryptable_with_retry(&old.envelope, "sender key never arrived".into())
                            .await?
                        {
                            self.ready.push_back(ev);
                        }
                    }
                }
                self.held.push_back(Held { envelope: env, group });
                return Ok(None);
            }
            Err(e) => return self.undecryptable_with_retry(&env, e.to_string()).await,
        };
        let plain = zeroize::Zeroizing::new(plain);
        let ev = match Content::decode(&plain, true) {
            Ok(Decoded::Known(Content::GroupText { body }, signal)) => Event::GroupText {
                id: env.id,
                group,
                from: env.from.clone(),
                from_device: env.from_device,
                body,
                ciphertext: env.content.clone(),
                content_type: env.content_type,
                signal,
            },
            Ok(Decoded::Other(content)) => Event::Other {
                id: env.id,
                from: env.from.clone(),
                from_device: env.from_device,
                group: Some(group),
                content,
                content_type: env.content_type,
            },
            Ok(_) => return self.undecryptable(&env, "unexpected content".into()).await,
            Err(e) => return self.undecryptable(&env, e.to_string()).await,
        };
        self.state.release_quarantined_from(&env.id, &env.from, env.from_device);
        self.state.mark_seen(env.id);
        self.save()?;
        self.conn.ack(vec![env.seq]).await?;
        Ok(Some(ev))
    }

    /// Retries the held group messages of `from` in `group`, in order, after its key arrived.
    async fn release_held(&mut self, from: &PeerAddress, group: &GroupId) -> Result<()> {
        let (mine, rest): (VecDeque<Held>, VecDeque<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.group == *group && peer(&h.envelope.from, h.envelope.from_device) == *from);
        self.held = rest;
        for h in mine {
            if let Some(ev) = self.on_group_message(h.envelope, h.group, false).await? {
                self.ready.push_back(ev);
            }
        }
        Ok(())
    }

    /// An envelope this device cannot read: kept in the quarantine and saved, then
    /// acknowledged; left on the node (unacknowledged) when the quarantine is full.
    async fn undecryptable(&mut self, env: &Envelope, reason: String) -> Result<Option<Event>> {
        let quarantined = self.state.quarantine(Quarantined::of(env, reason.clone(), now_ms()));
        if quarantined {
            self.state.mark_seen(env.id);
            // Saved before the acknowledgement: a crash in between redelivers it, and the
            // quarantine does not take it twice.
            self.save()?;
            self.conn.ack(vec![env.seq]).await?;
        }
        Ok(Some(Event::Undecryptable {
            id: env.id,
            from: env.from.clone(),
            from_device: env.from_device,
            reason,
            content_type: env.content_type,
            quarantined,
        }))
    }

    /// [`Self::undecryptable`], then, if the envelope was kept, a retry request to its sender.
    async fn undecryptable_with_retry(&mut self, env: &Envelope, reason: String) -> Result<Option<Event>> {
        let ev = self.undecryptable(env, reason).await?;
        if matches!(ev, Some(Event::Undecryptable { quarantined: true, .. })) {
            self.send_retry_request(env).await?;
        }
        Ok(ev)
    }

    /// Asks the sender of `env` for it again (see [`crate::retry`]).
    async fn send_retry_request(&mut self, env: &Envelope) -> Result<()> {
        if matches!(env.content_type, ContentType::Plaintext | ContentType::Event) {
            return Ok(());
        }
        let dem = DecryptionErrorMessage::for_original(
            &env.content.0,
            env.content_type,
            env.timestamp_ms,
            env.from_device.get(),
        );
        let hush = HushExtension { message_id: Some(*env.id.as_bytes()), ..HushExtension::default() };
        let bytes = PlaintextContent::retry_request(&dem, Some(hush)).encode();
        match self.conn.send_typed_message(&env.from, |_, _| (ContentType::Plaintext, bytes.clone())).await {
            Ok(_) => {
                self.retry_requests += 1;
                Ok(())
            }
            // The sender may be gone (removed, or without devices): there is no one to ask.
            Err(ClientError::Refused(_) | ClientError::Http { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Retry requests this messenger sent.
    pub fn retry_requests(&self) -> u64 {
        self.retry_requests
    }

    /// A `plaintext` envelope: a retry request (the only plaintext content there is).
    async fn on_plaintext(&mut self, env: Envelope) -> Result<Option<Event>> {
        let pc = match PlaintextContent::decode(&env.content.0) {
            Ok(p) => p,
            Err(e) => return self.undecryptable(&env, e.to_string()).await,
        };
        let dem = match pc.decryption_error() {
            Ok(d) => d,
            Err(e) => return self.undecryptable(&env, e.to_string()).await,
        };
        let message = pc.content.hush.as_ref().and_then(|h| h.message_id).map(uuid::Uuid::from_bytes);
        // The requester must address every device of ours; only the one that sent the failed
        // message acts (as Signal's apps), and a sync copy of our own request is not for us.
        let mine = !env.sync && dem.device_id == self.session.device().get();
        let mut resent = false;
        if mine {
            self.state.reset_for_retry(&peer(&env.from, env.from_device));
            self.save()?;
            if let Some(id) = message {
                resent = match self.resend(id, &env.from).await {
                    Ok(r) => r,
                    // Without a connection the request is not acknowledged: it comes back.
                    Err(e @ (ClientError::Closed(_) | ClientError::Transport(_))) => return Err(e),
                    Err(_) => false,
                };
            }
        }
        self.state.mark_seen(env.id);
        self.save()?;
        self.conn.ack(vec![env.seq]).await?;
        if !mine {
            return Ok(None);
        }
        Ok(Some(Event::RetryRequested {
            from: env.from,
            from_device: env.from_device,
            message,
            timestamp_ms: dem.timestamp,
            resent,
        }))
    }

    /// Sends message `id` again if it is in the recent-sent cache, went to `requester` (or a
    /// group, or `requester` is this user) and was not re-sent too often; returns whether it was.
    async fn resend(&mut self, id: MessageId, requester: &UserId) -> Result<bool> {
        let Some(r) = self.state.recent_sent(&id).cloned() else {
            return Ok(false);
        };
        if r.resends >= MAX_RESENDS {
            return Ok(false);
        }
        match &r.to {
            SentTo::User(to) => {
                if to != requester && requester != self.session.user() {
                    return Ok(false);
                }
                self.state.note_resent(&id);
                self.send_text_as(id, to, &r.body).await?;
            }
            // The node hands a group message to the members only.
            SentTo::Group(g) => {
                self.state.note_resent(&id);
                self.send_group_text_as(id, g, &r.body).await?;
            }
        }
        self.resends += 1;
        Ok(true)
    }

    /// Sends a Signal `Content` made by the application (fields the SDK does not know
    /// included) to every device of `to`, and the same to this user's other devices. It is not
    /// remembered for re-sending.
    pub async fn send_content(&mut self, to: &UserId, content: &SignalContent) -> Result<MessageId> {
        let plain = encode_signal(content).map_err(|_| too_long())?;
        self.send_padded_as(uuid::Uuid::new_v4(), to, |_| Ok(plain.clone())).await
    }

    /// The envelopes this device could not decrypt, oldest first (see [`crate::quarantine`]).
    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.state.quarantined().cloned().collect()
    }

    /// Removes the quarantined envelopes with message id `id` once the application handled
    /// them (saved at once); returns them.
    pub fn release_quarantined(&mut self, id: &MessageId) -> Result<Vec<Quarantined>> {
        let out = self.state.release_quarantined(id);
        self.save()?;
        Ok(out)
    }
}
