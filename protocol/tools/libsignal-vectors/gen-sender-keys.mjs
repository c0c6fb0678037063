// Writes ../../tests/vectors/sender_keys.json: Sender Keys (group) messages made by libsignal
// itself, for Hush's known-answer test (tests/e2e_sender_keys_kat.rs).
//
// A libsignal sender ("alice", device 1) creates a SenderKeyDistributionMessage for a fixed
// distribution id and encrypts a run of group messages (iterations 0..28502). A libsignal
// receiver ("bob") processes the distribution message and decrypts a chosen subset in a chosen
// order (in order, out of order, a duplicate, skips of 1,000 and 2,500, an evicted skipped key,
// one jump beyond MAX_FORWARD_JUMPS and one exactly at it); its result for each delivery (the
// plaintext or the error) is what Hush must reproduce.
//
// Also recorded: the protobuf fields found in the messages, a second distribution message made
// after some messages (iteration > 0), the key-derivation order established from the chain key
// alone (which of IV||key or key||IV decrypts libsignal's ciphertext), what the signature covers,
// and probes of what libsignal's deserializers accept.
//
// Usage: npm ci && node gen-sender-keys.mjs
import { writeFileSync, readFileSync } from 'node:fs';
import { createHmac, hkdfSync, createDecipheriv } from 'node:crypto';
import { SignalClient, hex, decodeProto, describeProto, protoField } from './lib.mjs';

const pkgVersion = JSON.parse(readFileSync(new URL('./node_modules/@signalapp/libsignal-client/package.json', import.meta.url))).version;
const out = new URL('../../tests/vectors/sender_keys.json', import.meta.url);

export class MemSenderKeyStore extends SignalClient.SenderKeyStore {
  constructor() { super(); this.records = new Map(); }
  key(a, d) { return `${a.toString()}/${d}`; }
  async saveSenderKey(a, d, r) { this.records.set(this.key(a, d), r.serialize()); }
  async getSenderKey(a, d) { const r = this.records.get(this.key(a, d)); return r ? SignalClient.SenderKeyRecord.deserialize(r) : null; }
}

const DIST = 'd1d1d1d1-7000-41eb-b32a-33b8a8a487a6';
const alice = SignalClient.ProtocolAddress.new('alice', 1);
const aliceIdentity = SignalClient.IdentityKeyPair.generate();
const aliceStore = new MemSenderKeyStore();
const bobStore = new MemSenderKeyStore();

const skdm = await SignalClient.SenderKeyDistributionMessage.create(alice, DIST, aliceStore);
const skdmBytes = Buffer.from(skdm.serialize());
const skdmFields = decodeProto(skdmBytes.subarray(1));
const signingKey = SignalClient.PublicKey.deserialize(protoField(skdmFields, 5));
await SignalClient.processSenderKeyDistributionMessage(alice, SignalClient.SenderKeyDistributionMessage.deserialize(skdmBytes), bobStore);

// Encrypt iterations 0..LAST; keep the ones delivered below.
const LAST = 28502;
const plaintextOf = (i) => Buffer.from(i % 7 === 3 ? 'x'.repeat(i % 97) : `group message ${i}`);
const keep = new Set([0, 1, 2, 3, 4, 5, 600, 700, 1005, 2000, 3500, 28501, 28502]);
const sent = new Map();
let skdmLater = null;
for (let i = 0; i <= LAST; i++) {
  if (i === 6) {
    // A distribution message made after six messages: iteration 6, the chain key at 6.
    skdmLater = Buffer.from((await SignalClient.SenderKeyDistributionMessage.create(alice, DIST, aliceStore)).serialize());
  }
  const ct = await SignalClient.groupEncrypt(alice, DIST, aliceStore, plaintextOf(i));
  if (keep.has(i)) {
    if (ct.type() !== SignalClient.CiphertextMessageType.SenderKey) throw new Error('not a sender key message');
    sent.set(i, Buffer.from(ct.serialize()));
  }
}

// Delivery order to bob (and to Hush).
const order = [0, 1, 2, 5, 3, 4, 1, 1005, 600, 3500, 700, 2000, 28502, 28501, 28502];
const deliveries = [];
for (const i of order) {
  const bytes = sent.get(i);
  let result;
  try {
    const pt = Buffer.from(await SignalClient.groupDecrypt(alice, bobStore, bytes));
    result = { ok: true, plaintext: hex(pt) };
    if (!pt.equals(plaintextOf(i))) throw new Error(`libsignal decrypted ${i} wrongly`);
  } catch (e) {
    if (e.message?.includes('decrypted')) throw e;
    result = { ok: false, error: String(e.message ?? e) };
  }
  deliveries.push({ iteration: i, ...result });
}

const messages = [...sent.entries()].map(([iteration, bytes]) => {
  const m = SignalClient.SenderKeyMessage.deserialize(bytes);
  const fields = decodeProto(bytes.subarray(1, bytes.length - 64));
  return {
    iteration,
    plaintext: hex(plaintextOf(iteration)),
    message: hex(bytes),
    first_byte: bytes[0],
    fields: describeProto(fields),
    libsignal_iteration: m.iteration(),
    libsignal_chain_id: m.chainId(),
    ciphertext: hex(m.ciphertext()),
    signature_verifies: m.verifySignature(signingKey),
    // The signature covers everything before it: XEdDSA over bytes[..len-64] checks out.
    signature_over_prefix: signingKey.verify(bytes.subarray(0, bytes.length - 64), bytes.subarray(bytes.length - 64)),
  };
});

// Key derivation from the chain key alone: seed = HMAC(ck, 0x01), next = HMAC(ck, 0x02),
// HKDF-SHA256(no salt, seed, "WhisperGroup", 48); which split decrypts iteration 0?
const chainKey = Buffer.from(skdm.chainKey());
const seed0 = createHmac('sha256', chainKey).update(Buffer.from([1])).digest();
const okm0 = Buffer.from(hkdfSync('sha256', seed0, Buffer.alloc(0), Buffer.from('WhisperGroup'), 48));
const ct0 = Buffer.from(messages.find((m) => m.iteration === 0).ciphertext, 'hex');
const tryDecrypt = (key, iv) => {
  try {
    const d = createDecipheriv('aes-256-cbc', key, iv);
    return Buffer.concat([d.update(ct0), d.final()]);
  } catch { return null; }
};
const ivThenKey = tryDecrypt(okm0.subarray(16, 48), okm0.subarray(0, 16));
const keyThenIv = tryDecrypt(okm0.subarray(0, 32), okm0.subarray(32, 48));
const ck1 = createHmac('sha256', chainKey).update(Buffer.from([2])).digest();
const laterChainKey = Buffer.from(SignalClient.SenderKeyDistributionMessage.deserialize(skdmLater).chainKey());
let ck = chainKey;
for (let i = 0; i < 6; i++) ck = createHmac('sha256', ck).update(Buffer.from([2])).digest();
const derivation = {
  chain_key_0: hex(chainKey),
  message_seed_0: hex(seed0),
  hkdf_okm_0: hex(okm0),
  chain_key_1: hex(ck1),
  iv_then_key_decrypts: ivThenKey !== null && ivThenKey.equals(plaintextOf(0)),
  key_then_iv_decrypts: keyThenIv !== null && keyThenIv.equals(plaintextOf(0)),
  later_chain_key_is_hmac02_six_times: ck.equals(laterChainKey),
};
if (!derivation.iv_then_key_decrypts || derivation.key_then_iv_decrypts) throw new Error('unexpected key order');

// What libsignal's deserializers accept.
const probes = [];
function probe(kind, description, input) {
  try {
    const r = kind === 'skdm'
      ? SignalClient.SenderKeyDistributionMessage.deserialize(input)
      : SignalClient.SenderKeyMessage.deserialize(input);
    probes.push({ kind, description, input: hex(input), accepted: true, reserialized: hex(r.serialize()) });
  } catch (e) {
    probes.push({ kind, description, input: hex(input), accepted: false, error: String(e.message ?? e) });
  }
}
const withFirst = (b, f) => Buffer.concat([Buffer.from([f]), b.subarray(1)]);
const skm0 = sent.get(0);
probe('skdm', 'as made by libsignal', skdmBytes);
probe('skdm', 'first byte 0x23 (version 2)', withFirst(skdmBytes, 0x23));
probe('skdm', 'first byte 0x43 (version 4)', withFirst(skdmBytes, 0x43));
probe('skdm', 'first byte 0x3f (low nibble 15)', withFirst(skdmBytes, 0x3f));
probe('skdm', 'first byte 0x30 (low nibble 0)', withFirst(skdmBytes, 0x30));
probe('skdm', 'an unknown field 9 appended', Buffer.concat([skdmBytes, Buffer.from('4801', 'hex')]));
{
  // Rebuild with a 31-byte chain key / without the signing key / a 15-byte distribution id.
  const f = decodeProto(skdmBytes.subarray(1));
  const enc = (fields) => {
    const parts = [Buffer.from([0x33])];
    for (const { field, wire, value } of fields) {
      if (wire === 0) parts.push(varint((field << 3) | 0), varint(Number(value)));
      else parts.push(varint((field << 3) | 2), varint(value.length), Buffer.from(value));
    }
    return Buffer.concat(parts);
  };
  probe('skdm', 're-encoded by the probe encoder (same bytes)', enc(f));
  probe('skdm', 'chain key of 31 bytes', enc(f.map((x) => (x.field === 4 ? { ...x, value: x.value.subarray(1) } : x))));
  probe('skdm', 'no signing key', enc(f.filter((x) => x.field !== 5)));
  probe('skdm', 'no iteration', enc(f.filter((x) => x.field !== 3)));
  probe('skdm', 'distribution id of 15 bytes', enc(f.map((x) => (x.field === 1 ? { ...x, value: x.value.subarray(1) } : x))));
  probe('skdm', 'signing key with type byte 0x06', enc(f.map((x) => (x.field === 5 ? { ...x, value: Buffer.concat([Buffer.from([6]), x.value.subarray(1)]) } : x))));
  probe('skdm', 'fields in reverse order', enc([...f].reverse()));
}
probe('skm', 'as made by libsignal', skm0);
probe('skm', 'first byte 0x23', withFirst(skm0, 0x23));
probe('skm', 'first byte 0x43', withFirst(skm0, 0x43));
probe('skm', 'first byte 0x3f', withFirst(skm0, 0x3f));
probe('skm', 'only 64 bytes', skm0.subarray(0, 64));
probe('skm', 'version byte and signature only (65 bytes)', Buffer.concat([skm0.subarray(0, 1), skm0.subarray(skm0.length - 64)]));
probe('skm', 'signature cut by one byte', skm0.subarray(0, skm0.length - 1));

function varint(n) {
  const b = [];
  while (n > 0x7f) { b.push((n & 0x7f) | 0x80); n >>>= 7; }
  b.push(n);
  return Buffer.from(b);
}

// Whether a changed first byte low nibble (0x33 -> 0x3f, signature untouched) still decrypts:
// it must not, if the signature covers the version byte.
const tampered = [];
for (const [what, bytes] of [
  ['first byte 0x3f, signature unchanged', withFirst(sent.get(1005), 0x3f)],
  ['last signature byte flipped', Buffer.concat([sent.get(1005).subarray(0, -1), Buffer.from([sent.get(1005).at(-1) ^ 1])])],
]) {
  const store = new MemSenderKeyStore();
  await SignalClient.processSenderKeyDistributionMessage(alice, SignalClient.SenderKeyDistributionMessage.deserialize(skdmBytes), store);
  try {
    await SignalClient.groupDecrypt(alice, store, bytes);
    tampered.push({ what, iteration: 1005, message: hex(bytes), accepted: true });
  } catch (e) {
    tampered.push({ what, iteration: 1005, message: hex(bytes), accepted: false, error: String(e.message ?? e) });
  }
}

writeFileSync(out, JSON.stringify({
  generator: `@signalapp/libsignal-client ${pkgVersion} (gen-sender-keys.mjs)`,
  counts: { messages: messages.length, deliveries: deliveries.length, probes: probes.length },
  sender: { name: 'alice', device_id: 1, identity_public_key: hex(aliceIdentity.publicKey.serialize()) },
  distribution_id: DIST,
  distribution_message: hex(skdmBytes),
  distribution_message_fields: describeProto(skdmFields),
  distribution: {
    chain_id: skdm.chainId(),
    iteration: skdm.iteration(),
    chain_key: hex(skdm.chainKey()),
    signing_key: hex(signingKey.serialize()),
    distribution_id: skdm.distributionId(),
  },
  distribution_message_later: hex(skdmLater),
  distribution_message_later_iteration: SignalClient.SenderKeyDistributionMessage.deserialize(skdmLater).iteration(),
  derivation,
  messages,
  deliveries,
  tampered,
  probes,
}, null, 2) + '\n');
console.log(`wrote ${messages.length} messages, ${deliveries.length} deliveries, ${probes.length} probes`);
