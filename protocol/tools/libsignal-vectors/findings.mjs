// Experiments behind FINDINGS.md: what libsignal 0.103 requires of a peer. Prints JSON.
// Usage: npm install && node findings.mjs
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignalClient, hex, makeDevice, bundleOf, decodeProto, protoField, describeProto } from './lib.mjs';

const S = SignalClient;
const result = {};
// libsignal logs why each session state refused a message; keep those lines.
let logs = [];
S.initLogger(S.LogLevel.Info, (level, target, file, line, message) => logs.push(message));
const takeLogs = () => { const l = logs.filter((m) => /fail|error|invalid|version|pq|spqr|mac/i.test(m)); logs = []; return l; };
const hkdf = (ikm, salt, info, len) => Buffer.from(crypto.hkdfSync('sha256', ikm, salt ?? Buffer.alloc(0), info, len));
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
// libsignal's classic (non-SPQR) message keys at the head of a chain key.
function messageKeys(chainKey) {
  const okm = hkdf(hmac(chainKey, Buffer.from([1])), null, 'WhisperMessageKeys', 80);
  return { cipher: okm.subarray(0, 32), mac: okm.subarray(32, 64), iv: okm.subarray(64, 80) };
}
const cbc = (k, pt) => { const c = crypto.createCipheriv('aes-256-cbc', k.cipher, k.iv); return Buffer.concat([c.update(pt), c.final()]); };
const tryAsync = async (f) => { try { return { ok: true, value: await f() }; } catch (e) { return { ok: false, error: `${e.constructor.name}: ${e.message}` }; } };
function signalMessageInfo(bytes) {
  bytes = Buffer.from(bytes);
  return { len: bytes.length, first_byte: `0x${bytes[0].toString(16)}`, fields: describeProto(decodeProto(bytes.subarray(1, bytes.length - 8))) };
}
function currentSession(recordBytes) {
  const s = decodeProto(protoField(decodeProto(recordBytes), 1));
  const chain = decodeProto(protoField(s, 6));
  return { s, chain, chainKey: Buffer.from(protoField(decodeProto(protoField(chain, 3)), 2)), ratchetPub: Buffer.from(protoField(chain, 1)),
    previousCounter: Number(protoField(s, 5) ?? 0n) };
}

async function start() {
  const alice = makeDevice('alice', 1);
  const bob = makeDevice('bob', 1);
  await S.processPreKeyBundle(bundleOf(bob, { withOneTime: true, kyberKind: 'one_time' }), bob.address, alice.address, alice.stores.session, alice.stores.identityStore);
  const first = await S.signalEncrypt(Buffer.from('hello bob'), bob.address, alice.address, alice.stores.session, alice.stores.identityStore);
  await S.signalDecryptPreKey(S.PreKeySignalMessage.deserialize(first.serialize()), alice.address, bob.address, bob.stores.session,
    bob.stores.identityStore, bob.stores.preKeyStore, bob.stores.signedPreKeyStore, bob.stores.kyberStore);
  return { alice, bob, first };
}

// (a) Bob answers alice's v4 session with a message built without SPQR: classic message keys,
// empty pq_ratchet, as version 3 and as version 4.
async function replyWithoutSpqr(version) {
  const { alice, bob } = await start();
  const cur = currentSession(bob.stores.sessions.get(alice.address.toString()));
  const keys = messageKeys(cur.chainKey);
  const body = cbc(keys, Buffer.from(`reply v${version} without SPQR`));
  const msg = S.SignalMessage._new(version, keys.mac, S.PublicKey.deserialize(cur.ratchetPub), 0, cur.previousCounter, body,
    bob.identity.publicKey, alice.identity.publicKey, Buffer.alloc(0));
  takeLogs();
  const r = await tryAsync(() => S.signalDecrypt(S.SignalMessage.deserialize(msg.serialize()), bob.address, alice.address, alice.stores.session, alice.stores.identityStore));
  return { message: signalMessageInfo(msg.serialize()), alice_accepts: r.ok, ...(r.ok ? { plaintext: Buffer.from(r.value).toString() } : { error: r.error }), libsignal_log: takeLogs() };
}

// (d) An X3DH-only (version 3) PreKeySignalMessage, as a peer without Kyber would send it.
async function x3dhPreKeyMessage() {
  const alice = makeDevice('alice3', 1);
  const bob = makeDevice('bob3', 1);
  const base = S.PrivateKey.generate();
  const spk = bob.spk.publicKey();
  const dhs = [alice.identity.privateKey.agree(spk), base.agree(bob.identity.publicKey), base.agree(spk), base.agree(bob.otk.publicKey())];
  const okm = hkdf(Buffer.concat([Buffer.alloc(32, 0xff), ...dhs.map((d) => Buffer.from(d))]), null, 'WhisperText', 64);
  const ratchet = S.PrivateKey.generate();
  const step = hkdf(Buffer.from(ratchet.agree(spk)), okm.subarray(0, 32), 'WhisperRatchet', 64);
  const keys = messageKeys(step.subarray(32));
  const inner = S.SignalMessage._new(3, keys.mac, ratchet.getPublicKey(), 0, 0, cbc(keys, Buffer.from('x3dh hello')),
    alice.identity.publicKey, bob.identity.publicKey, Buffer.alloc(0));
  const pkm = S.PreKeySignalMessage._new(3, alice.registrationId, bob.otk.id(), bob.spk.id(), base.getPublicKey(), alice.identity.publicKey, inner);
  const bytes = Buffer.from(pkm.serialize());
  takeLogs();
  const r = await tryAsync(() => S.signalDecryptPreKey(S.PreKeySignalMessage.deserialize(bytes), alice.address, bob.address, bob.stores.session,
    bob.stores.identityStore, bob.stores.preKeyStore, bob.stores.signedPreKeyStore, bob.stores.kyberStore));
  return { len: bytes.length, first_byte: `0x${bytes[0].toString(16)}`, fields: describeProto(decodeProto(bytes.subarray(1))),
    bob_accepts: r.ok, ...(r.ok ? { plaintext: Buffer.from(r.value).toString() } : { error: r.error }), libsignal_log: takeLogs() };
}

// (c) Message kinds, first bytes and lengths over a short conversation.
async function conversation() {
  const { alice, bob, first } = await start();
  const out = [{ from: 'alice', type: first.type(), len: first.serialize().length, first_byte: `0x${first.serialize()[0].toString(16)}`,
    signal_message: signalMessageInfo(protoField(decodeProto(first.serialize().subarray(1)), 4)) }];
  const parties = { alice, bob };
  for (const [from, to] of [['bob', 'alice'], ['alice', 'bob'], ['bob', 'alice'], ['bob', 'alice'], ['alice', 'bob'], ['bob', 'alice'], ['alice', 'bob']]) {
    const f = parties[from], t = parties[to];
    const ct = await S.signalEncrypt(Buffer.from(`from ${from}`), t.address, f.address, f.stores.session, f.stores.identityStore);
    const bytes = Buffer.from(ct.serialize());
    const pt = ct.type() === 3
      ? await S.signalDecryptPreKey(S.PreKeySignalMessage.deserialize(bytes), f.address, t.address, t.stores.session, t.stores.identityStore, t.stores.preKeyStore, t.stores.signedPreKeyStore, t.stores.kyberStore)
      : await S.signalDecrypt(S.SignalMessage.deserialize(bytes), f.address, t.address, t.stores.session, t.stores.identityStore);
    out.push({ from, type: ct.type(), len: bytes.length, first_byte: `0x${bytes[0].toString(16)}`, decrypted: Buffer.from(pt).toString() === `from ${from}`,
      ...(ct.type() === 2 ? { signal_message: signalMessageInfo(bytes) } : {}) });
  }
  return out;
}

const dts = readFileSync(new URL('./node_modules/@signalapp/libsignal-client/dist/index.d.ts', import.meta.url), 'utf8');
result.libsignal_version = JSON.parse(readFileSync(new URL('./node_modules/@signalapp/libsignal-client/package.json', import.meta.url))).version;
result.b_api = {
  processPreKeyBundle_declaration: dts.split('\n').find((l) => l.includes('function processPreKeyBundle')).trim(),
  mentions_of_pq_ratchet_options: dts.split('\n').filter((l) => /usePq|pqRatchet\s*[:?]|PqRatchet|spqr/i.test(l) && !l.includes('pqRatchet()')).map((l) => l.trim()),
  bundle_without_kyber: await tryAsync(() => { const b = makeDevice('x', 1); return S.PreKeyBundle.new(b.registrationId, 1, null, null, b.spk.id(), b.spk.publicKey(), b.spk.signature(), b.identity.publicKey, null, null, null); }),
};
if (result.b_api.bundle_without_kyber.ok) result.b_api.bundle_without_kyber = { ok: true };
result.a_reply_v3_without_spqr = await replyWithoutSpqr(3);
result.a_reply_v4_without_spqr = await replyWithoutSpqr(4);
result.c_conversation = await conversation();
result.d_x3dh_prekey_message_v3 = await x3dhPreKeyMessage();
console.log(JSON.stringify(result, null, 1));
