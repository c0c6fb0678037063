// Writes ../../tests/vectors/libsignal/pqxdh.json: PQXDH session starts made by libsignal itself.
// For each case, bob has a full private key set (identity, signed pre-key, one-time EC pre-key,
// Kyber pre-keys with their secret keys); libsignal alice processes bob's bundle and encrypts
// two messages; libsignal bob decrypts them. The file records every private key of bob, alice's
// PreKeySignalMessages, and the root and sender chain keys found in alice's libsignal session
// record right after processPreKeyBundle (libsignal storage.proto field numbers: RecordStructure
// current_session=1; SessionStructure session_version=1, root_key=4, sender_chain=6,
// receiver_chains=7; Chain sender_ratchet_key=1, chain_key=3; ChainKey index=1, key=2).
//
// Usage: npm install && node gen-pqxdh.mjs
import { writeFileSync, readFileSync } from 'node:fs';
import { SignalClient, hex, makeDevice, bundleOf, decodeProto, protoField, describeProto } from './lib.mjs';

const pkgVersion = JSON.parse(readFileSync(new URL('./node_modules/@signalapp/libsignal-client/package.json', import.meta.url))).version;
const out = new URL('../../tests/vectors/libsignal/pqxdh.json', import.meta.url);

function sessionKeys(recordBytes) {
  const session = decodeProto(protoField(decodeProto(recordBytes), 1));
  const chain = decodeProto(protoField(session, 6));
  const chainKey = decodeProto(protoField(chain, 3));
  const receiver = decodeProto(protoField(session, 7));
  const receiverKey = decodeProto(protoField(receiver, 3));
  return {
    record_len: recordBytes.length,
    session_version: Number(protoField(session, 1)),
    root_key: hex(protoField(session, 4)),
    sender_ratchet_key: hex(protoField(chain, 1)),
    sender_chain_key: hex(protoField(chainKey, 2)),
    sender_chain_index: Number(protoField(chainKey, 1) ?? 0n),
    receiver_ratchet_key: hex(protoField(receiver, 1)),
    receiver_chain_key: hex(protoField(receiverKey, 2)),
    receiver_chain_index: Number(protoField(receiverKey, 1) ?? 0n),
    session_fields: describeProto(session),
  };
}

function deviceKeys(dev, kyberKind, withOneTime) {
  const k = dev.kyber[kyberKind];
  return {
    identity_key: { public_key: hex(dev.identity.publicKey.serialize()), private_key: hex(dev.identity.privateKey.serialize()) },
    registration_id: dev.registrationId,
    device_id: dev.deviceId,
    signed_pre_key: { key_id: dev.spk.id(), public_key: hex(dev.spk.publicKey().serialize()), private_key: hex(dev.spk.privateKey().serialize()), signature: hex(dev.spk.signature()) },
    one_time_pre_key: withOneTime ? { key_id: dev.otk.id(), public_key: hex(dev.otk.publicKey().serialize()), private_key: hex(dev.otk.privateKey().serialize()) } : null,
    kyber_pre_key: { kind: kyberKind, key_id: k.id(), public_key: hex(k.publicKey().serialize()), secret_key: hex(k.secretKey().serialize()), signature: hex(k.signature()) },
  };
}

function describePreKeyMessage(bytes) {
  const fields = decodeProto(bytes.subarray(1));
  const inner = Buffer.from(protoField(fields, 4));
  const innerFields = decodeProto(inner.subarray(1, inner.length - 8));
  return { version_byte: bytes[0], fields: describeProto(fields), signal_message: { version_byte: inner[0], len: inner.length, fields: describeProto(innerFields) } };
}

async function makeCase(id, withOneTime, kyberKind) {
  const bob = makeDevice(`bob-${id}`, 1 + (id % 3));
  const alice = makeDevice(`alice-${id}`, 1);
  await SignalClient.processPreKeyBundle(bundleOf(bob, { withOneTime, kyberKind }), bob.address, alice.address,
    alice.stores.session, alice.stores.identityStore);
  const afterBundle = Buffer.from(alice.stores.sessions.get(bob.address.toString()));
  const messages = [];
  for (const text of [`pqxdh case ${id}: first message`, `pqxdh case ${id}: second message, a little longer than the first one`]) {
    const plaintext = Buffer.from(text);
    const ct = await SignalClient.signalEncrypt(plaintext, bob.address, alice.address, alice.stores.session, alice.stores.identityStore);
    const bytes = Buffer.from(ct.serialize());
    const decrypted = await SignalClient.signalDecryptPreKey(SignalClient.PreKeySignalMessage.deserialize(bytes),
      alice.address, bob.address, bob.stores.session, bob.stores.identityStore, bob.stores.preKeyStore,
      bob.stores.signedPreKeyStore, bob.stores.kyberStore);
    messages.push({ type: ct.type(), length: bytes.length, ciphertext: hex(bytes), plaintext: hex(plaintext),
      libsignal_bob_decrypted: Buffer.from(decrypted).equals(plaintext), wire: describePreKeyMessage(bytes) });
  }
  return {
    id,
    description: `${withOneTime ? 'with' : 'without'} a one-time EC pre-key, ${kyberKind.replace('_', '-')} Kyber pre-key`,
    with_one_time_ec_key: withOneTime,
    kyber_kind: kyberKind,
    bob: deviceKeys(bob, kyberKind, withOneTime),
    alice: { identity_key: hex(alice.identity.publicKey.serialize()), registration_id: alice.registrationId, device_id: alice.deviceId },
    messages,
    alice_session_after_bundle: sessionKeys(afterBundle),
    bob_kyber_marked_used: bob.stores.kyberUsed,
  };
}

const cases = [];
let id = 0;
for (const withOneTime of [true, false]) {
  for (const kyberKind of ['one_time', 'last_resort']) {
    for (let rep = 0; rep < 2; rep++) cases.push(await makeCase(id++, withOneTime, kyberKind));
  }
}
const kemKeyPairs = [];
for (let i = 0; i < 3; i++) {
  const kp = SignalClient.KEMKeyPair.generate();
  kemKeyPairs.push({ public_key: hex(kp.getPublicKey().serialize()), secret_key: hex(kp.getSecretKey().serialize()) });
}
// SignalMessage MAC known answers: libsignal builds the message (and its MAC) from a given MAC
// key, so a verifier can check its MAC construction independently of any key derivation.
const macVectors = [];
for (const [version, pq] of [[4, Buffer.alloc(0)], [4, Buffer.from('0102030405', 'hex')], [3, Buffer.alloc(0)]]) {
  const macKey = Buffer.from(SignalClient.PrivateKey.generate().serialize());
  const sender = SignalClient.IdentityKeyPair.generate().publicKey;
  const receiver = SignalClient.IdentityKeyPair.generate().publicKey;
  const ciphertext = Buffer.from(SignalClient.PrivateKey.generate().serialize());
  const msg = SignalClient.SignalMessage._new(version, macKey, SignalClient.PrivateKey.generate().getPublicKey(), 7, 3,
    ciphertext, sender, receiver, pq);
  const bytes = Buffer.from(msg.serialize());
  macVectors.push({ version, mac_key: hex(macKey), sender_identity: hex(sender.serialize()), receiver_identity: hex(receiver.serialize()),
    pq_ratchet: hex(pq), serialized: hex(bytes), fields: describeProto(decodeProto(bytes.subarray(1, bytes.length - 8))) });
}
const doc = {
  description: 'PQXDH session starts made by libsignal: bob\'s private keys (Kyber secret key included), alice\'s PreKeySignalMessages, and the root/sender-chain keys of alice\'s session record after processPreKeyBundle',
  generator: `@signalapp/libsignal-client ${pkgVersion} (Node ${process.version}), protocol/tools/libsignal-vectors/gen-pqxdh.mjs`,
  counts: { cases: cases.length, kem_key_pairs: kemKeyPairs.length, mac_vectors: macVectors.length },
  wire_notes: {
    prekey_signal_message: 'version byte, then protobuf: pre_key_id=1, base_key=2, identity_key=3, message=4, registration_id=5, signed_pre_key_id=6, kyber_pre_key_id=7, kyber_ciphertext=8',
    signal_message: 'version byte, protobuf (ratchet_key=1, counter=2, previous_counter=3, ciphertext=4, pq_ratchet=5), 8-byte MAC',
  },
  cases,
  kem_key_pairs: kemKeyPairs,
  mac_vectors: macVectors,
};
writeFileSync(out, JSON.stringify(doc, null, 1) + '\n');
console.log(`wrote ${cases.length} cases`);
