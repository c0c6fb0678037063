// Shared helpers of the libsignal vector scripts: in-memory stores, device creation, and a
// minimal protobuf decoder (used only to report what libsignal put on the wire).
import * as SignalClient from '@signalapp/libsignal-client';

export { SignalClient };
export const hex = (b) => Buffer.from(b).toString('hex');
export const randId = () => 1 + Math.floor(Math.random() * 0xfffffe);

export class Stores {
  constructor(identity, registrationId) {
    this.identity = identity;
    this.registrationId = registrationId;
    this.sessions = new Map();
    this.identities = new Map();
    this.preKeys = new Map();
    this.signedPreKeys = new Map();
    this.kyberPreKeys = new Map();
    this.kyberUsed = [];
    this.savedSessions = [];
    const self = this;
    this.session = new (class extends SignalClient.SessionStore {
      async saveSession(a, r) { self.sessions.set(a.toString(), r.serialize()); self.savedSessions.push(r.serialize()); }
      async getSession(a) { const s = self.sessions.get(a.toString()); return s ? SignalClient.SessionRecord.deserialize(s) : null; }
      async getExistingSessions(as) { return as.map((a) => SignalClient.SessionRecord.deserialize(self.sessions.get(a.toString()))); }
    })();
    this.identityStore = new (class extends SignalClient.IdentityKeyStore {
      async getIdentityKey() { return self.identity.privateKey; }
      async getLocalRegistrationId() { return self.registrationId; }
      async saveIdentity(a, k) { self.identities.set(a.toString(), k); return SignalClient.IdentityChange.NewOrUnchanged; }
      async isTrustedIdentity() { return true; }
      async getIdentity(a) { return self.identities.get(a.toString()) ?? null; }
    })();
    this.preKeyStore = new (class extends SignalClient.PreKeyStore {
      async savePreKey(id, r) { self.preKeys.set(id, r); }
      async getPreKey(id) { const r = self.preKeys.get(id); if (!r) throw new Error(`no pre-key ${id}`); return r; }
      async removePreKey(id) { self.preKeys.delete(id); }
    })();
    this.signedPreKeyStore = new (class extends SignalClient.SignedPreKeyStore {
      async saveSignedPreKey(id, r) { self.signedPreKeys.set(id, r); }
      async getSignedPreKey(id) { const r = self.signedPreKeys.get(id); if (!r) throw new Error(`no signed pre-key ${id}`); return r; }
    })();
    this.kyberStore = new (class extends SignalClient.KyberPreKeyStore {
      async saveKyberPreKey(id, r) { self.kyberPreKeys.set(id, r); }
      async getKyberPreKey(id) { const r = self.kyberPreKeys.get(id); if (!r) throw new Error(`no kyber pre-key ${id}`); return r; }
      async markKyberPreKeyUsed(id, spkId, baseKey) { self.kyberUsed.push({ id, spkId, baseKey: hex(baseKey.serialize()) }); }
    })();
  }
}

// A device with every private key: identity, signed pre-key, one-time EC pre-key, a one-time
// Kyber pre-key and a last-resort Kyber pre-key.
export function makeDevice(name, deviceId) {
  const identity = SignalClient.IdentityKeyPair.generate();
  const registrationId = 1 + Math.floor(Math.random() * 16380);
  const stores = new Stores(identity, registrationId);
  const spkPriv = SignalClient.PrivateKey.generate();
  const spk = SignalClient.SignedPreKeyRecord.new(randId(), Date.now(), spkPriv.getPublicKey(), spkPriv,
    identity.privateKey.sign(spkPriv.getPublicKey().serialize()));
  stores.signedPreKeys.set(spk.id(), spk);
  const otkPriv = SignalClient.PrivateKey.generate();
  const otk = SignalClient.PreKeyRecord.new(randId(), otkPriv.getPublicKey(), otkPriv);
  stores.preKeys.set(otk.id(), otk);
  const kyber = {};
  for (const kind of ['one_time', 'last_resort']) {
    const kp = SignalClient.KEMKeyPair.generate();
    const rec = SignalClient.KyberPreKeyRecord.new(randId(), Date.now(), kp,
      identity.privateKey.sign(kp.getPublicKey().serialize()));
    stores.kyberPreKeys.set(rec.id(), rec);
    kyber[kind] = rec;
  }
  const address = SignalClient.ProtocolAddress.new(name, deviceId);
  return { name, deviceId, identity, registrationId, stores, spk, otk, kyber, address };
}

export function bundleOf(dev, { withOneTime, kyberKind }) {
  const k = dev.kyber[kyberKind];
  return SignalClient.PreKeyBundle.new(dev.registrationId, dev.deviceId,
    withOneTime ? dev.otk.id() : null, withOneTime ? dev.otk.publicKey() : null,
    dev.spk.id(), dev.spk.publicKey(), dev.spk.signature(), dev.identity.publicKey,
    k.id(), k.publicKey(), k.signature());
}

// Protobuf: returns [{field, wire, value}] (value: BigInt for varints, Buffer for bytes).
export function decodeProto(buf) {
  buf = Buffer.from(buf);
  const out = [];
  let i = 0;
  const varint = () => {
    let v = 0n, shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const field = key >> 3, wire = key & 7;
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 2) { const n = Number(varint()); out.push({ field, wire, value: buf.subarray(i, i + n) }); i += n; }
    else if (wire === 1) { out.push({ field, wire, value: buf.subarray(i, i + 8) }); i += 8; }
    else if (wire === 5) { out.push({ field, wire, value: buf.subarray(i, i + 4) }); i += 4; }
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}

export const protoField = (fields, n) => fields.find((f) => f.field === n)?.value;

// A readable summary of a decoded protobuf: field -> {wire, len or value, first byte}.
export function describeProto(fields) {
  return fields.map((f) => (f.wire === 2
    ? { field: f.field, wire: 2, len: f.value.length, first_byte: f.value.length ? f.value[0] : null }
    : { field: f.field, wire: f.wire, value: f.value.toString() }));
}
