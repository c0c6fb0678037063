// A libsignal app on a Hush node: one device of one user, built on libsignal's own npm package
// (@signalapp/libsignal-client 0.103) and `ws`. It logs in with keys libsignal made, keeps one
// WebSocket (JSON text frames), starts sessions from fetched bundles (PQXDH), sends and reads
// Signal `Content` protobufs padded as Signal pads, acknowledges what it read, and tops its
// one-time keys up when the node asks. In Hush groups it reads and sends libsignal's Sender Keys
// messages (`groupDecrypt`/`groupEncrypt`), distributes its sender key pairwise as the SDK does,
// and makes a new one when the node asks (a member left). See docs/libsignal.md.
//
//   const dev = await HushLibsignalDevice.open({ server, user, password, statePath });
//   dev.on('message', (m) => console.log(`${m.from}/${m.fromDevice}: ${m.body}`));
//   await dev.sendText('bob', 'hello');
//   await dev.sendGroupText(groupId, 'hello, group');   // group texts: 'message' with m.group
//   await dev.close();
//
// The device's private keys, sessions and the message ids it has read are kept in `statePath`
// (JSON, mode 0600) when one is given, so a later run logs in again as the same device.
import { EventEmitter } from 'node:events';
import { randomUUID, randomInt, createHash } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import * as S from '@signalapp/libsignal-client';
import WebSocket from 'ws';

const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');
const addrKey = (user, device) => `${user}.${device}`;
const errText = (e) => String(e && e.message ? e.message : e);

/** The Sender Keys distribution id of a Hush group, derived as the SDK derives it
 * (`client/src/state.rs` `distribution_id`): the first 16 bytes of
 * SHA-256("hush group distribution id\0" || group id), as a UUID. Every member device's chain
 * for the group is stored under (its address, this id). */
export function distributionId(group) {
  const h = createHash('sha256').update('hush group distribution id\0').update(group, 'utf8').digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

// ---- Signal's Content protobuf (the few fields a text needs), written by hand -------------------

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
const fieldVarint = (num, value) => Buffer.concat([varint(num << 3), varint(value)]);
const fieldBytes = (num, bytes) => Buffer.concat([varint((num << 3) | 2), varint(bytes.length), Buffer.from(bytes)]);

/** Decodes one protobuf message into [{field, wire, value}] (value: BigInt or Buffer). */
export function decodeProto(buf) {
  buf = Buffer.from(buf);
  const out = [];
  let i = 0;
  const readVarint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated protobuf');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const field = key >> 3;
    const wire = key & 7;
    let value;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const n = Number(readVarint());
      if (i + n > buf.length) throw new Error('truncated protobuf');
      value = buf.subarray(i, i + n);
      i += n;
    } else if (wire === 1) { value = buf.subarray(i, i + 8); i += 8; }
    else if (wire === 5) { value = buf.subarray(i, i + 4); i += 4; }
    else throw new Error(`protobuf wire type ${wire}`);
    if (field === 0) throw new Error('protobuf field 0');
    out.push({ field, wire, value });
  }
  return out;
}
const get = (fields, n) => fields.find((f) => f.field === n)?.value;

/** `Content { dataMessage (1) { body (1), timestamp (7) } }`. */
export function textContent(body, timestamp) {
  return fieldBytes(1, Buffer.concat([fieldBytes(1, Buffer.from(body, 'utf8')), fieldVarint(7, timestamp)]));
}

/** The sync copy for the sender's other devices: `Content { syncMessage (2) { sent (1) {
 * timestamp (2), message (3): dataMessage } } }` plus Hush's extension (field 1000) `sent_to` (3). */
export function sentContent(to, body, timestamp) {
  const data = Buffer.concat([fieldBytes(1, Buffer.from(body, 'utf8')), fieldVarint(7, timestamp)]);
  const sent = Buffer.concat([fieldVarint(2, timestamp), fieldBytes(3, data)]);
  return Buffer.concat([fieldBytes(2, fieldBytes(1, sent)), fieldBytes(1000, fieldBytes(3, Buffer.from(to, 'utf8')))]);
}

/** A sender-key distribution as the SDK sends it: `Content { senderKeyDistributionMessage (7):
 * libsignal's SenderKeyDistributionMessage bytes }` plus Hush's extension (field 1000) `group` (1)
 * and `epoch` (2). */
export function distributionContent(skdm, group, epoch) {
  return Buffer.concat([fieldBytes(7, skdm),
    fieldBytes(1000, Buffer.concat([fieldBytes(1, Buffer.from(group, 'utf8')), fieldVarint(2, epoch)]))]);
}

/** What a decoded Content holds: a text, a sync copy of a sent text, a sender-key distribution,
 * or something else. */
export function readContent(bytes) {
  const content = decodeProto(bytes);
  const skdm = get(content, 7);
  if (skdm) {
    const ext = get(content, 1000);
    const f = ext ? decodeProto(ext) : [];
    const group = get(f, 1);
    const epoch = get(f, 2);
    return { kind: 'sender_key_distribution', skdm: Buffer.from(skdm), group: group ? group.toString('utf8') : null,
      epoch: epoch === undefined ? null : Number(epoch) };
  }
  const data = get(content, 1);
  if (data) {
    const d = decodeProto(data);
    const body = get(d, 1);
    const ts = get(d, 7);
    return { kind: 'text', body: body ? body.toString('utf8') : '', timestamp: ts === undefined ? null : Number(ts) };
  }
  const sync = get(content, 2);
  const sent = sync && get(decodeProto(sync), 1);
  const message = sent && get(decodeProto(sent), 3);
  if (message) {
    const d = decodeProto(message);
    const ext = get(content, 1000);
    const to = ext && get(decodeProto(ext), 3);
    return { kind: 'sent', body: (get(d, 1) ?? Buffer.alloc(0)).toString('utf8'),
      timestamp: get(d, 7) === undefined ? null : Number(get(d, 7)), to: to ? to.toString('utf8') : null };
  }
  return { kind: 'other', fields: content.map((f) => f.field) };
}

/** Signal's padding: the content, 0x80, zeros, to 160·k − 1 bytes (the smallest k that fits). */
export function pad(content) {
  const total = Math.ceil((content.length + 1 + 1) / 160) * 160 - 1;
  const out = Buffer.alloc(total);
  Buffer.from(content).copy(out);
  out[content.length] = 0x80;
  return out;
}

/** Strips trailing zeros, then the 0x80. */
export function unpad(padded) {
  let end = padded.length;
  while (end > 0 && padded[end - 1] === 0) end--;
  if (end === 0 || padded[end - 1] !== 0x80) throw new Error('bad padding');
  return Buffer.from(padded.subarray(0, end - 1));
}

// ---- The device ---------------------------------------------------------------------------------

const ONE_TIME_KEYS = 20; // one-time EC and Kyber keys per upload (the node takes at most 100)
const SEEN_IDS = 2000; // message ids remembered for deduplication

/** A Hush device driven by libsignal. Events: 'message' (1:1 and group texts; `group` set on a
 * group text), 'undecryptable', 'retry-request', 'node-event', 'sender-key-received',
 * 'sender-key-distributed', 'group-left', 'queue-empty', 'keys-uploaded', 'closed'. */
export class HushLibsignalDevice extends EventEmitter {
  /** Logs in (registering a new device on the first run, else the one in `statePath`), then
   * connects and waits for `Ready`. */
  static async open(opts) {
    const dev = new HushLibsignalDevice(opts);
    await dev.login();
    await dev.connect();
    return dev;
  }

  constructor({ server, user, password, tenant = 'default', statePath = null, deviceName = 'libsignal-app' }) {
    super();
    this.server = server.replace(/\/+$/, '');
    this.user = user;
    this.password = password;
    this.tenant = tenant;
    this.statePath = statePath;
    this.deviceName = deviceName;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.lock = Promise.resolve(); // every use of the session stores goes through it, in order
    this.ws = null;
    this.held = []; // group messages (unacknowledged) waiting for their sender's key
    this.state = this.loadState();
    this.state.senderKeys ??= {}; // `${address}::${distribution id}` -> SenderKeyRecord (base64)
    this.state.groups ??= {}; // group -> { epoch, sentTo: [address] }: our own chain
    this.makeStores();
  }

  // -- state --

  loadState() {
    if (this.statePath) {
      try {
        const st = JSON.parse(readFileSync(this.statePath, 'utf8'));
        if (st.user !== this.user || st.server !== this.server) {
          throw new Error(`${this.statePath} belongs to ${st.user} on ${st.server}`);
        }
        return st;
      } catch (e) {
        if (e.code !== 'ENOENT') throw e;
      }
    }
    return {
      server: this.server, user: this.user, deviceId: null,
      identity: b64(S.IdentityKeyPair.generate().serialize()),
      registrationId: randomInt(1, 16384),
      nextKeyId: randomInt(1, 1 << 24),
      signedPreKeys: {}, preKeys: {}, kyberPreKeys: {},
      sessions: {}, identities: {}, seen: [],
    };
  }

  saveState() {
    if (!this.statePath) return;
    const tmp = `${this.statePath}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.state), { mode: 0o600 });
    renameSync(tmp, this.statePath);
  }

  get identity() {
    return S.IdentityKeyPair.deserialize(unb64(this.state.identity));
  }

  get address() {
    return S.ProtocolAddress.new(this.user, this.state.deviceId);
  }

  makeStores() {
    const st = () => this.state;
    const self = this;
    this.sessionStore = new (class extends S.SessionStore {
      async saveSession(a, r) { st().sessions[a.toString()] = b64(r.serialize()); }
      async getSession(a) { const s = st().sessions[a.toString()]; return s ? S.SessionRecord.deserialize(unb64(s)) : null; }
      async getExistingSessions(as) { return as.map((a) => S.SessionRecord.deserialize(unb64(st().sessions[a.toString()]))); }
    })();
    this.identityStore = new (class extends S.IdentityKeyStore {
      async getIdentityKey() { return self.identity.privateKey; }
      async getLocalRegistrationId() { return st().registrationId; }
      async saveIdentity(a, key) {
        const old = st().identities[a.toString()];
        st().identities[a.toString()] = b64(key.serialize());
        return old && old !== b64(key.serialize()) ? S.IdentityChange.ReplacedExisting : S.IdentityChange.NewOrUnchanged;
      }
      // Trust on first use, and accept a changed identity (a device that logged in again with a
      // new identity key): a real app would show the safety-number change to its user here.
      async isTrustedIdentity() { return true; }
      async getIdentity(a) { const k = st().identities[a.toString()]; return k ? S.PublicKey.deserialize(unb64(k)) : null; }
    })();
    // Sender keys by (sender address, distribution id), as libsignal names them; ours included.
    this.senderKeyStore = new (class extends S.SenderKeyStore {
      async saveSenderKey(a, dist, r) { st().senderKeys[`${a.toString()}::${dist}`] = b64(r.serialize()); }
      async getSenderKey(a, dist) { const r = st().senderKeys[`${a.toString()}::${dist}`]; return r ? S.SenderKeyRecord.deserialize(unb64(r)) : null; }
    })();
    this.preKeyStore = new (class extends S.PreKeyStore {
      async savePreKey(id, r) { st().preKeys[id] = b64(r.serialize()); }
      async getPreKey(id) { const r = st().preKeys[id]; if (!r) throw new Error(`no pre-key ${id}`); return S.PreKeyRecord.deserialize(unb64(r)); }
      async removePreKey(id) { delete st().preKeys[id]; }
    })();
    this.signedPreKeyStore = new (class extends S.SignedPreKeyStore {
      async saveSignedPreKey(id, r) { st().signedPreKeys[id] = b64(r.serialize()); }
      async getSignedPreKey(id) { const r = st().signedPreKeys[id]; if (!r) throw new Error(`no signed pre-key ${id}`); return S.SignedPreKeyRecord.deserialize(unb64(r)); }
    })();
    this.kyberStore = new (class extends S.KyberPreKeyStore {
      async saveKyberPreKey(id, r) { st().kyberPreKeys[id] = b64(r.serialize()); }
      async getKyberPreKey(id) { const r = st().kyberPreKeys[id]; if (!r) throw new Error(`no kyber pre-key ${id}`); return S.KyberPreKeyRecord.deserialize(unb64(r)); }
      // A one-time Kyber key is used once; the last-resort key stays.
      async markKyberPreKeyUsed(id) { if (id !== st().lastResortId) delete st().kyberPreKeys[id]; }
    })();
  }

  // -- keys --

  keyId() {
    const id = this.state.nextKeyId;
    this.state.nextKeyId = id >= 0x7fffffff ? 1 : id + 1;
    return id;
  }

  newSignedPreKey() {
    const priv = S.PrivateKey.generate();
    const rec = S.SignedPreKeyRecord.new(this.keyId(), Date.now(), priv.getPublicKey(), priv,
      this.identity.privateKey.sign(priv.getPublicKey().serialize()));
    this.state.signedPreKeys[rec.id()] = b64(rec.serialize());
    return { key_id: rec.id(), public_key: b64(rec.publicKey().serialize()), signature: b64(rec.signature()) };
  }

  newKyberPreKey() {
    const kp = S.KEMKeyPair.generate();
    const rec = S.KyberPreKeyRecord.new(this.keyId(), Date.now(), kp, this.identity.privateKey.sign(kp.getPublicKey().serialize()));
    this.state.kyberPreKeys[rec.id()] = b64(rec.serialize());
    return { key_id: rec.id(), public_key: b64(rec.publicKey().serialize()), signature: b64(rec.signature()) };
  }

  newLastResortKey() {
    const k = this.newKyberPreKey();
    this.state.lastResortId = k.key_id;
    return k;
  }

  newOneTimeKeys(n = ONE_TIME_KEYS) {
    const pre_keys = [];
    const kyber_pre_keys = [];
    for (let i = 0; i < n; i++) {
      const priv = S.PrivateKey.generate();
      const rec = S.PreKeyRecord.new(this.keyId(), priv.getPublicKey(), priv);
      this.state.preKeys[rec.id()] = b64(rec.serialize());
      pre_keys.push({ key_id: rec.id(), public_key: b64(rec.publicKey().serialize()) });
      kyber_pre_keys.push(this.newKyberPreKey());
    }
    return { pre_keys, kyber_pre_keys };
  }

  // -- HTTP --

  async http(method, path, body, token = this.token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.server}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const err = new Error(`${method} ${path}: HTTP ${res.status} ${json?.error ?? ''}: ${json?.message ?? text}`);
      err.status = res.status;
      err.code = json?.error;
      throw err;
    }
    return json;
  }

  /** `POST /v1/login`. A new device registers its identity key and all its keys with the login
   * (the Kyber last-resort key is required); a known device logs in again by its id. */
  async login() {
    const device = {
      registration_id: this.state.registrationId,
      name: this.deviceName,
      identity_key: b64(this.identity.publicKey.serialize()),
    };
    if (this.state.deviceId == null) {
      device.keys = { signed_pre_key: this.newSignedPreKey(), kyber_last_resort: this.newLastResortKey(), ...this.newOneTimeKeys() };
    } else {
      device.id = this.state.deviceId;
    }
    const r = await this.http('POST', '/v1/login', { tenant: this.tenant, user: this.user, password: this.password, device }, null);
    if (r.password_change_required) throw new Error('this password is one-time: set a new one first (hush login)');
    if (r.mfa?.state === 'mfa_pending') throw new Error('this login needs its MFA challenge answered (not done by this example)');
    this.token = r.token;
    this.state.deviceId = r.device;
    this.state.registrationId = r.registration_id;
    this.saveState();
    return r;
  }

  // -- WebSocket --

  /** Opens `GET /v1/ws` (bearer header, subprotocol `hush.json`) and resolves on `Ready`. */
  connect() {
    const url = `${this.server.replace(/^http/, 'ws')}/v1/ws`;
    const ws = new WebSocket(url, 'hush.json', { headers: { authorization: `Bearer ${this.token}` } });
    this.ws = ws;
    return new Promise((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => reject(new Error(`WebSocket refused: HTTP ${res.statusCode}`)));
      ws.on('error', reject);
      ws.on('close', (code, reason) => {
        for (const p of this.pending.values()) p.reject(new Error(`socket closed (${code})`));
        this.pending.clear();
        reject(new Error(`socket closed (${code} ${reason})`));
        if (this.ws === ws) this.emit('closed', { code, reason: reason.toString() });
      });
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        const frame = JSON.parse(data.toString('utf8'));
        if (frame === 'QueueEmpty') {
          this.exclusive(async () => this.emit('queue-empty'));
          return;
        }
        const [name, body] = Object.entries(frame)[0];
        if (name === 'Ready') resolve(body);
        else this.onFrame(name, body);
      });
    });
  }

  /** Closes the socket (the node keeps what arrives meanwhile; `connect()` opens it again). */
  async disconnect() {
    await this.lock;
    const ws = this.ws;
    this.ws = null;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise((resolve) => { ws.once('close', resolve); ws.close(1000); });
  }

  async close() {
    await this.disconnect();
    this.saveState();
  }

  sendFrame(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends a frame carrying `id` and waits for the node's answer to it. */
  request(frame, id) {
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.sendFrame(frame);
    });
  }

  exclusive(fn) {
    const run = this.lock.then(fn);
    this.lock = run.catch(() => {});
    return run;
  }

  onFrame(name, body) {
    switch (name) {
      case 'Deliver':
        this.exclusive(() => this.onDeliver(body)).catch((e) => this.emit('error', e));
        return;
      case 'PreKeysLow':
        this.exclusive(() => this.uploadKeys(this.newOneTimeKeys())).catch((e) => this.emit('error', e));
        return;
      case 'RotateKeys': {
        const keys = {};
        if (body.signed_pre_key) keys.signed_pre_key = this.newSignedPreKey();
        if (body.last_resort) keys.kyber_last_resort = this.newLastResortKey();
        this.exclusive(() => this.uploadKeys(keys)).catch((e) => this.emit('error', e));
        return;
      }
      case 'LoggedOut':
        this.emit('logged-out', body);
        return;
      default: {
        const p = body && this.pending.get(body.id);
        if (p) {
          this.pending.delete(body.id);
          p.resolve({ name, body });
        } else {
          this.emit('frame', { name, body });
        }
      }
    }
  }

  /** `UploadKeys` over the socket; the private halves are saved first. */
  async uploadKeys(keys) {
    this.saveState();
    const id = randomUUID();
    const r = await this.request({ UploadKeys: { id, keys } }, id);
    if (r.name !== 'KeyCounts') throw new Error(`UploadKeys: ${JSON.stringify(r)}`);
    this.emit('keys-uploaded', r.body.counts);
    return r.body.counts;
  }

  // -- sending --

  /** Fetches bundles (`GetPreKeys`, one device or all) and starts a session with each. */
  async fetchSessions(user, device = null) {
    const id = randomUUID();
    const r = await this.request({ GetPreKeys: { id, user, device } }, id);
    if (r.name !== 'PreKeys') throw new Error(`GetPreKeys ${user}: ${r.name} ${JSON.stringify(r.body)}`);
    for (const d of r.body.keys.devices) {
      if (!d.kyber_pre_key) throw new Error(`${user}/${d.device_id} has no Kyber pre-key`);
      const bundle = S.PreKeyBundle.new(d.registration_id, d.device_id,
        d.pre_key ? d.pre_key.key_id : null, d.pre_key ? S.PublicKey.deserialize(unb64(d.pre_key.public_key)) : null,
        d.signed_pre_key.key_id, S.PublicKey.deserialize(unb64(d.signed_pre_key.public_key)), unb64(d.signed_pre_key.signature),
        S.PublicKey.deserialize(unb64(d.identity_key)),
        d.kyber_pre_key.key_id, S.KEMPublicKey.deserialize(unb64(d.kyber_pre_key.public_key)), unb64(d.kyber_pre_key.signature));
      await S.processPreKeyBundle(bundle, S.ProtocolAddress.new(user, d.device_id), this.address, this.sessionStore, this.identityStore);
    }
    this.saveState();
  }

  /** Device ids of `user` this device has a session with (this device left out). */
  sessionDevices(user) {
    return Object.keys(this.state.sessions)
      .filter((k) => k.slice(0, k.lastIndexOf('.')) === user)
      .map((k) => Number(k.slice(k.lastIndexOf('.') + 1)))
      .filter((d) => !(user === this.user && d === this.state.deviceId))
      .sort((a, b) => a - b);
  }

  async encryptFor(user, devices, plaintext) {
    const out = [];
    for (const device of devices) {
      const a = S.ProtocolAddress.new(user, device);
      const ct = await S.signalEncrypt(plaintext, a, this.address, this.sessionStore, this.identityStore);
      const rec = await this.sessionStore.getSession(a);
      out.push({
        device, registration_id: rec.remoteRegistrationId(), content: b64(ct.serialize()),
        content_type: ct.type() === S.CiphertextMessageType.PreKey ? 'prekey' : 'ciphertext',
      });
    }
    return out;
  }

  /** Sends a text to every device of `to` (and a sync copy to this user's other devices);
   * resolves with the message id once the node answered `Accepted`. */
  sendText(to, text) {
    const ts = Date.now();
    return this.sendContent(to, textContent(text, ts), sentContent(to, text, ts));
  }

  /** Sends a `Content` (unpadded protobuf) to `to`; `syncContent` goes to this user's other devices. */
  sendContent(to, content, syncContent = content) {
    return this.exclusive(() => this.sendContentLocked(to, content, syncContent));
  }

  /** [`sendContent`] for a caller that holds the lock. To this user itself: to its other
   * devices only (no sync copies); nothing when it has none. */
  async sendContentLocked(to, content, syncContent = content) {
    {
      const id = randomUUID();
      const self = to === this.user;
      if (self && (await this.devicesOf(to)).every((d) => d.id === this.state.deviceId)) return id;
      const forget = (user, devices) => devices.forEach((d) => delete this.state.sessions[addrKey(user, d)]);
      for (let attempt = 0; attempt < 4; attempt++) {
        if (this.sessionDevices(to).length === 0) await this.fetchSessions(to);
        const devices = await this.encryptFor(to, this.sessionDevices(to), pad(content));
        const sync = self ? [] : await this.encryptFor(this.user, this.sessionDevices(this.user), pad(syncContent));
        this.saveState();
        const r = await this.request({ Send: { id, to, devices, sync } }, id);
        if (r.name === 'Accepted') return id;
        if (r.name === 'MismatchedDevices') {
          // `extra`: devices that are gone; `missing`: devices we have no session with yet.
          forget(r.body.user, r.body.extra);
          for (const d of r.body.missing) await this.fetchSessions(r.body.user, d);
        } else if (r.name === 'StaleDevices') {
          // Re-registered devices: their sessions are void; start new ones.
          forget(r.body.user, r.body.stale);
          for (const d of r.body.stale) await this.fetchSessions(r.body.user, d);
        } else {
          throw new Error(`Send to ${to}: ${r.name} ${JSON.stringify(r.body)}`);
        }
      }
      throw new Error(`Send to ${to}: the device set kept changing`);
    }
  }

  // -- groups --

  /** `GET /v1/users/{user}/devices` (or `/v1/devices` for this user): the current device list. */
  async devicesOf(user) {
    const path = user === this.user ? '/v1/devices' : `/v1/users/${encodeURIComponent(user)}/devices`;
    return (await this.http('GET', path)).devices;
  }

  /** `GET /v1/groups/{id}` (`GroupInfo`), or null when this user is not a member (404). */
  async groupInfo(group) {
    try {
      const info = await this.http('GET', `/v1/groups/${encodeURIComponent(group)}`);
      return info.members.includes(this.user) ? info : null;
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  }

  /** Group administration over HTTP (the caller must have the right; see docs/protocol.md). */
  createGroup(name, members) {
    return this.http('POST', '/v1/groups', { name, members });
  }

  addMembers(group, users) {
    return this.http('POST', `/v1/groups/${encodeURIComponent(group)}/members`, { users });
  }

  removeMember(group, user) {
    return this.http('DELETE', `/v1/groups/${encodeURIComponent(group)}/members/${encodeURIComponent(user)}`);
  }

  /** Forgets our chain for `group` (we left it, or it is replaced at the next send). */
  dropGroupChain(group) {
    delete this.state.groups[group];
    delete this.state.senderKeys[`${this.address.toString()}::${distributionId(group)}`];
    this.saveState();
  }

  /** Makes sure every member device of `info` holds our current sender key for the group's
   * epoch, as the SDK does: a new chain when ours predates the epoch (a member left since) or
   * when `rotate`; then the distribution, in a `Content` with the extension (group, epoch), to
   * every member user with a device that lacks it (this user's other devices first), over the
   * pairwise sessions. Returns the number of devices that lacked it. Call with the lock held. */
  async distributeSenderKeyLocked(info, rotate = false) {
    const group = info.id;
    const dist = distributionId(group);
    const ours = this.state.groups[group];
    const fresh = rotate || !ours || ours.epoch < info.epoch;
    if (fresh) {
      // libsignal's `create` makes a chain only when none is stored: forget the old one first.
      delete this.state.senderKeys[`${this.address.toString()}::${dist}`];
      this.state.groups[group] = { epoch: info.epoch, sentTo: [] };
    }
    const skdm = await S.SenderKeyDistributionMessage.create(this.address, dist, this.senderKeyStore);
    const epoch = this.state.groups[group].epoch;
    this.saveState();
    const content = distributionContent(Buffer.from(skdm.serialize()), group, epoch);
    const users = [this.user, ...info.members.filter((u) => u !== this.user)];
    let sent = 0;
    for (const user of users) {
      // Fresh lists: the node fans group messages out to every device a member has now.
      const devices = (await this.devicesOf(user)).filter((d) => !(user === this.user && d.id === this.state.deviceId));
      const sentTo = this.state.groups[group].sentTo;
      const lacking = devices.filter((d) => fresh || !sentTo.includes(addrKey(user, d.id))).length;
      if (lacking === 0) continue;
      await this.sendContentLocked(user, content);
      for (const d of devices) if (!sentTo.includes(addrKey(user, d.id))) sentTo.push(addrKey(user, d.id));
      sent += lacking;
    }
    this.saveState();
    if (sent > 0) this.emit('sender-key-distributed', { group, epoch, devices: sent, rotated: fresh });
    return sent;
  }

  /** Sends a text to a group: our sender key to every member device that lacks it, then ONE
   * `GroupSend` with libsignal's `groupEncrypt` of the padded `Content { dataMessage }`. A stale
   * epoch (a member left meanwhile) refreshes the group, which replaces our key, and retries.
   * Resolves with the message id once the node answered `Accepted`. */
  sendGroupText(group, text) {
    return this.exclusive(async () => {
      const id = randomUUID();
      let last = null;
      for (let attempt = 0; attempt < 4; attempt++) {
        const info = await this.groupInfo(group);
        if (!info) {
          this.dropGroupChain(group);
          throw new Error(`not a member of group ${group}`);
        }
        await this.distributeSenderKeyLocked(info);
        const ct = await S.groupEncrypt(this.address, distributionId(group), this.senderKeyStore,
          pad(textContent(text, Date.now())));
        this.saveState(); // a chain step is never used twice
        const r = await this.request({ GroupSend: { id, group, epoch: info.epoch, content: b64(ct.serialize()),
          content_type: 'sender_key' } }, id);
        if (r.name === 'Accepted') return id;
        if (r.name !== 'StaleEpoch') throw new Error(`GroupSend to ${group}: ${r.name} ${JSON.stringify(r.body)}`);
        last = r;
      }
      throw new Error(`GroupSend to ${group}: the epoch kept changing (${JSON.stringify(last?.body)})`);
    });
  }

  /** The node's group events, handled as the SDK handles them (`client/src/messenger.rs`). */
  async onGroupEvent(name, body) {
    const group = body.group;
    if (name === 'GroupChanged') {
      if (!body.members.includes(this.user)) {
        this.dropGroupChain(group);
        this.emit('group-left', { group });
      }
      return;
    }
    const ours = this.state.groups[group];
    // No chain yet: the first send makes one for the current epoch.
    if (!ours) return;
    if (name === 'RotateSenderKey') {
      const removal = body.reason === 'member_removed';
      if (removal && ours.epoch >= body.epoch) return; // already replaced for this epoch
      const info = await this.groupInfo(group);
      if (!info) { this.dropGroupChain(group); return; }
      info.epoch = Math.max(info.epoch, body.epoch);
      await this.distributeSenderKeyLocked(info, !removal);
    } else if (name === 'DistributeSenderKey') {
      const info = await this.groupInfo(group);
      if (!info) { this.dropGroupChain(group); return; }
      await this.distributeSenderKeyLocked(info);
    }
  }

  // -- receiving --

  async onDeliver(env, heldOk = true) {
    let afterAck = null;
    const ack = () => this.sendFrame({ Ack: { seqs: [env.seq] } });
    if (env.event) {
      // Handled first, acknowledged after (a crash in between replays the event).
      const [name, body] = Object.entries(env.event)[0];
      if (['GroupChanged', 'RotateSenderKey', 'DistributeSenderKey'].includes(name)) {
        try {
          await this.onGroupEvent(name, body);
        } catch (e) {
          this.emit('error', new Error(`${name} for ${body.group}: ${errText(e)}`));
        }
      }
      this.emit('node-event', { ...env, name, body });
      ack();
      return;
    }
    if (this.state.seen.includes(env.id)) { // delivery is at least once
      ack();
      return;
    }
    const from = S.ProtocolAddress.new(env.from, env.from_device);
    const bytes = unb64(env.content);
    const base = { id: env.id, from: env.from, fromDevice: env.from_device, sync: env.sync,
      timestampMs: env.timestamp_ms, contentType: env.content_type };
    try {
      if (env.group) {
        // A group message: libsignal's SenderKeyMessage, read with the sender's chain for this
        // group's distribution id (the group comes from the envelope, not the plaintext).
        const msg = S.SenderKeyMessage.deserialize(bytes);
        if (msg.distributionId() !== distributionId(env.group.group)) throw new Error('a sender key of another group');
        let plaintext;
        try {
          plaintext = await S.groupDecrypt(from, this.senderKeyStore, bytes);
        } catch (e) {
          // libsignal 0.103's Node binding reports NoSenderKeyState as a generic error (code 0)
          // with this message; InvalidSenderKeySession is the typed form.
          const noKey = e.code === S.ErrorCode.InvalidSenderKeySession || /missing sender key state/.test(errText(e));
          if (noKey && heldOk) {
            // The sender's key has not come yet: hold the message, unacknowledged, until it does.
            this.held.push(env);
            return;
          }
          throw e;
        }
        const content = readContent(unpad(Buffer.from(plaintext)));
        this.emit('message', { ...base, group: env.group.group, epoch: env.group.epoch, ...content });
      } else if (env.content_type === 'plaintext') {
        // A retry request (DecryptionErrorMessage): the peer could not read us; start afresh.
        // The body is a Content followed by one 0x80 (no zeros).
        const body = unpad(Buffer.from(S.PlaintextContent.deserialize(bytes).body()));
        delete this.state.sessions[addrKey(env.from, env.from_device)];
        this.emit('retry-request', { ...base, content: readContent(body) });
      } else {
        let plaintext;
        const asPreKey = () => S.signalDecryptPreKey(S.PreKeySignalMessage.deserialize(bytes), from, this.address,
          this.sessionStore, this.identityStore, this.preKeyStore, this.signedPreKeyStore, this.kyberStore);
        const asSignal = () => S.signalDecrypt(S.SignalMessage.deserialize(bytes), from, this.address,
          this.sessionStore, this.identityStore);
        if (env.content_type === 'prekey') plaintext = await asPreKey();
        else if (env.content_type === 'ciphertext') plaintext = await asSignal();
        else if (env.content_type === 'unknown') plaintext = await asPreKey().catch(() => asSignal());
        else throw new Error(`content type ${env.content_type}`);
        const content = readContent(unpad(Buffer.from(plaintext)));
        if (content.kind === 'sender_key_distribution') {
          if (!content.group || content.epoch === null) throw new Error('a sender-key distribution without its group');
          const skdm = S.SenderKeyDistributionMessage.deserialize(content.skdm);
          if (skdm.distributionId() !== distributionId(content.group)) throw new Error('a sender key made for another group');
          await S.processSenderKeyDistributionMessage(from, skdm, this.senderKeyStore);
          this.emit('sender-key-received', { ...base, group: content.group, epoch: content.epoch });
          afterAck = () => this.releaseHeld(env.from, env.from_device, content.group);
        } else {
          this.emit('message', { ...base, ...content });
        }
      }
    } catch (e) {
      // A real app would also send a retry request (a DecryptionErrorMessage in a
      // PlaintextContent, content type `plaintext`) to the sender.
      this.emit('undecryptable', { ...base, error: String(e && e.message ? e.message : e) });
    }
    this.state.seen.push(env.id);
    if (this.state.seen.length > SEEN_IDS) this.state.seen.splice(0, this.state.seen.length - SEEN_IDS);
    this.saveState(); // sessions and ids saved before the ack
    ack();
    if (afterAck) await afterAck();
  }

  /** Reads the held group messages of `user`/`device` in `group` again, in order, now that its
   * key came. */
  async releaseHeld(user, device, group) {
    const mine = this.held.filter((e) => e.from === user && e.from_device === device && e.group.group === group);
    this.held = this.held.filter((e) => !mine.includes(e));
    for (const env of mine) await this.onDeliver(env, false);
  }
}
