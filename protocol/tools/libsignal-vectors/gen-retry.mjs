// Writes ../../tests/vectors/libsignal/retry.json: retry requests (libsignal's
// DecryptionErrorMessage wrapped as PlaintextContent) made by libsignal itself.
//
// Cases: a DecryptionErrorMessage for a real PreKeySignalMessage (type 3), a real SignalMessage
// (type 2), a SenderKeyMessage (type 7) and a PlaintextContent (type 8), each with its
// timestamp and original sender device id; libsignal's own accessors (ratchetKey, timestamp,
// deviceId), its serialization and PlaintextContent.from(...).serialize()/body(), and the fields
// found in those bytes. Probes record what libsignal's deserializers accept (unknown fields,
// a missing or longer padding, a wrong first byte), as facts Hush's decoder is held to.
//
// Usage: npm install && node gen-retry.mjs
import { writeFileSync, readFileSync } from 'node:fs';
import { SignalClient, hex, makeDevice, bundleOf, decodeProto, describeProto } from './lib.mjs';

const pkgVersion = JSON.parse(readFileSync(new URL('./node_modules/@signalapp/libsignal-client/package.json', import.meta.url))).version;
const out = new URL('../../tests/vectors/libsignal/retry.json', import.meta.url);
const T = SignalClient.CiphertextMessageType;

function describeDem(dem) {
  const bytes = Buffer.from(dem.serialize());
  const rk = dem.ratchetKey();
  const pc = SignalClient.PlaintextContent.from(dem);
  const pcBytes = Buffer.from(pc.serialize());
  const body = Buffer.from(pc.body());
  const again = SignalClient.DecryptionErrorMessage.extractFromSerializedBody(body);
  return {
    ratchet_key: rk ? hex(rk.serialize()) : null,
    timestamp: dem.timestamp(),
    device_id: dem.deviceId(),
    decryption_error_message: hex(bytes),
    decryption_error_message_fields: describeProto(decodeProto(bytes)),
    plaintext_content: hex(pcBytes),
    plaintext_content_body: hex(body),
    body_extracts_to_same: Buffer.from(again.serialize()).equals(bytes),
  };
}

async function realMessages() {
  const bob = makeDevice('bob', 2);
  const alice = makeDevice('alice', 3);
  await SignalClient.processPreKeyBundle(bundleOf(bob, { withOneTime: true, kyberKind: 'one_time' }), bob.address,
    alice.address, alice.stores.session, alice.stores.identityStore);
  const first = await SignalClient.signalEncrypt(Buffer.from('first'), bob.address, alice.address,
    alice.stores.session, alice.stores.identityStore);
  await SignalClient.signalDecryptPreKey(SignalClient.PreKeySignalMessage.deserialize(first.serialize()),
    alice.address, bob.address, bob.stores.session, bob.stores.identityStore, bob.stores.preKeyStore,
    bob.stores.signedPreKeyStore, bob.stores.kyberStore);
  const reply = await SignalClient.signalEncrypt(Buffer.from('reply'), alice.address, bob.address,
    bob.stores.session, bob.stores.identityStore);
  return { first, reply };
}

const cases = [];
const { first, reply } = await realMessages();
const originals = [
  { name: 'prekey', type: T.PreKey, bytes: Buffer.from(first.serialize()), timestamp: 1_700_000_000_123, device: 3 },
  { name: 'whisper', type: T.Whisper, bytes: Buffer.from(reply.serialize()), timestamp: 1_765_000_000_000, device: 2 },
  { name: 'sender_key', type: T.SenderKey, bytes: Buffer.from('3300112233', 'hex'), timestamp: 42, device: 1 },
  { name: 'plaintext', type: T.Plaintext, bytes: Buffer.from('c00801', 'hex'), timestamp: 0, device: 127 },
  { name: 'big_timestamp', type: T.SenderKey, bytes: Buffer.from('33', 'hex'), timestamp: Number.MAX_SAFE_INTEGER, device: 0x7fffffff },
];
for (const o of originals) {
  let dem;
  try {
    dem = SignalClient.DecryptionErrorMessage.forOriginal(o.bytes, o.type, o.timestamp, o.device);
  } catch (e) {
    cases.push({ name: o.name, original_type: o.type, error: String(e) });
    continue;
  }
  cases.push({ name: o.name, original_type: o.type, original_timestamp: o.timestamp, original_sender_device_id: o.device,
    original_len: o.bytes.length, ...describeDem(dem) });
}

// What libsignal's deserializers accept.
const base = cases.find((c) => c.name === 'prekey');
const pc = Buffer.from(base.plaintext_content, 'hex');
const dem = Buffer.from(base.decryption_error_message, 'hex');
// An unknown field: number 1000 (Hush's extension field), length-delimited (key varint
// 1000<<3|2 = c2 3e), holding the protobuf { 1: "g" } (Hush's extension naming group "g").
const unknown = Buffer.from('c23e030a0167', 'hex');
const probes = [];
function probe(kind, description, input, f) {
  try {
    const r = f(input);
    probes.push({ kind, description, input: hex(input), accepted: true, ...r });
  } catch (e) {
    probes.push({ kind, description, input: hex(input), accepted: false, error: String(e.message ?? e) });
  }
}
const pcProbe = (b) => {
  const p = SignalClient.PlaintextContent.deserialize(b);
  const d = SignalClient.DecryptionErrorMessage.extractFromSerializedBody(p.body());
  return { body: hex(p.body()), reserialized: hex(p.serialize()), dem_timestamp: d.timestamp(), dem_device_id: d.deviceId() };
};
probe('plaintext_content', 'as serialized by libsignal', pc, pcProbe);
probe('plaintext_content', 'without the trailing 0x80', pc.subarray(0, pc.length - 1), pcProbe);
probe('plaintext_content', 'with 0x80 then zeros to 159 bytes', Buffer.concat([pc, Buffer.alloc(159 - pc.length)]), pcProbe);
probe('plaintext_content', 'with an unknown Content field (1000) before the 0x80',
  Buffer.concat([pc.subarray(0, pc.length - 1), unknown, Buffer.from([0x80])]), pcProbe);
probe('plaintext_content', 'first byte 0xc1 instead of 0xc0', Buffer.concat([Buffer.from([0xc1]), pc.subarray(1)]), pcProbe);
probe('plaintext_content', 'empty Content', Buffer.from('c080', 'hex'), pcProbe);
const demProbe = (b) => {
  const d = SignalClient.DecryptionErrorMessage.deserialize(b);
  return { timestamp: d.timestamp(), device_id: d.deviceId(), ratchet_key: d.ratchetKey() ? hex(d.ratchetKey().serialize()) : null,
    reserialized: hex(d.serialize()) };
};
probe('decryption_error_message', 'as serialized by libsignal', dem, demProbe);
probe('decryption_error_message', 'with an unknown field (1000) appended', Buffer.concat([dem, unknown]), demProbe);
probe('decryption_error_message', 'empty', Buffer.alloc(0), demProbe);
probe('decryption_error_message', 'timestamp only', Buffer.from('1001', 'hex'), demProbe);
probe('decryption_error_message', 'device id only', Buffer.from('1801', 'hex'), demProbe);
probe('decryption_error_message', 'timestamp and device id', Buffer.from('10011801', 'hex'), demProbe);
probe('decryption_error_message', 'a ratchet key of 32 bytes (no type byte)',
  Buffer.from('0a20' + '11'.repeat(32) + '1001' + '1801', 'hex'), demProbe);

writeFileSync(out, JSON.stringify({
  generator: `@signalapp/libsignal-client ${pkgVersion} (gen-retry.mjs)`,
  ciphertext_message_types: { Whisper: T.Whisper, PreKey: T.PreKey, SenderKey: T.SenderKey, Plaintext: T.Plaintext },
  counts: { cases: cases.length, probes: probes.length },
  cases,
  probes,
}, null, 2) + '\n');
console.log(`wrote ${cases.length} cases, ${probes.length} probes`);
