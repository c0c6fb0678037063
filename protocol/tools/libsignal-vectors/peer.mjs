// A libsignal 0.103 device driven over stdin/stdout, one JSON object per line each way, for
// Hush's interop tests (protocol/tests/e2e_libsignal_interop.rs, tests/tests/libsignal_interop.rs).
// Bytes are hex. Every request gets exactly one reply line: {"ok": ...} or {"error": "..."}.
//
// Requests:
//   {"op":"bundle","with_one_time":bool,"kyber_kind":"one_time"|"last_resort"}
//      -> this device's pre-key bundle (public halves; a fresh one-time EC key and one-time
//         Kyber key each time one is asked for)
//   {"op":"process_bundle","peer":name,"device":n,"bundle":{...}}   start a session to a peer
//   {"op":"encrypt","peer":name,"device":n,"plaintext":hex}        -> {"type":2|3,"ciphertext":hex}
//   {"op":"decrypt","peer":name,"device":n,"type":2|3,"ciphertext":hex} -> {"plaintext":hex}
//   {"op":"identity"}                                               -> identity key, registration id
import * as readline from 'node:readline';
import { SignalClient, Stores, randId } from './lib.mjs';

const S = SignalClient;
const name = process.argv[2] ?? 'lib';
const deviceId = Number(process.argv[3] ?? 1);
const identity = S.IdentityKeyPair.generate();
const registrationId = 1 + Math.floor(Math.random() * 16380);
const stores = new Stores(identity, registrationId);
const self = S.ProtocolAddress.new(name, deviceId);
const spkPriv = S.PrivateKey.generate();
const spk = S.SignedPreKeyRecord.new(randId(), Date.now(), spkPriv.getPublicKey(), spkPriv,
  identity.privateKey.sign(spkPriv.getPublicKey().serialize()));
stores.signedPreKeys.set(spk.id(), spk);
const lastResortPair = S.KEMKeyPair.generate();
const lastResort = S.KyberPreKeyRecord.new(randId(), Date.now(), lastResortPair,
  identity.privateKey.sign(lastResortPair.getPublicKey().serialize()));
stores.kyberPreKeys.set(lastResort.id(), lastResort);

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (s) => Buffer.from(s, 'hex');
const addr = (req) => S.ProtocolAddress.new(req.peer, req.device);

function bundle(req) {
  let otk = null;
  if (req.with_one_time) {
    const priv = S.PrivateKey.generate();
    otk = S.PreKeyRecord.new(randId(), priv.getPublicKey(), priv);
    stores.preKeys.set(otk.id(), otk);
  }
  let kyber = lastResort;
  if (req.kyber_kind === 'one_time') {
    const kp = S.KEMKeyPair.generate();
    kyber = S.KyberPreKeyRecord.new(randId(), Date.now(), kp, identity.privateKey.sign(kp.getPublicKey().serialize()));
    stores.kyberPreKeys.set(kyber.id(), kyber);
  }
  return {
    registration_id: registrationId,
    device_id: deviceId,
    identity_key: hex(identity.publicKey.serialize()),
    signed_pre_key: { key_id: spk.id(), public_key: hex(spk.publicKey().serialize()), signature: hex(spk.signature()) },
    one_time_pre_key: otk && { key_id: otk.id(), public_key: hex(otk.publicKey().serialize()) },
    kyber_pre_key: { key_id: kyber.id(), public_key: hex(kyber.publicKey().serialize()), signature: hex(kyber.signature()) },
  };
}

async function handle(req) {
  switch (req.op) {
    case 'identity':
      return { identity_key: hex(identity.publicKey.serialize()), registration_id: registrationId };
    case 'bundle':
      return bundle(req);
    case 'process_bundle': {
      const b = req.bundle;
      const pb = S.PreKeyBundle.new(b.registration_id, b.device_id,
        b.one_time_pre_key ? b.one_time_pre_key.key_id : null,
        b.one_time_pre_key ? S.PublicKey.deserialize(unhex(b.one_time_pre_key.public_key)) : null,
        b.signed_pre_key.key_id, S.PublicKey.deserialize(unhex(b.signed_pre_key.public_key)), unhex(b.signed_pre_key.signature),
        S.PublicKey.deserialize(unhex(b.identity_key)),
        b.kyber_pre_key.key_id, S.KEMPublicKey.deserialize(unhex(b.kyber_pre_key.public_key)), unhex(b.kyber_pre_key.signature));
      await S.processPreKeyBundle(pb, addr(req), self, stores.session, stores.identityStore);
      return {};
    }
    case 'encrypt': {
      const ct = await S.signalEncrypt(unhex(req.plaintext), addr(req), self, stores.session, stores.identityStore);
      return { type: ct.type(), ciphertext: hex(ct.serialize()) };
    }
    case 'decrypt': {
      const bytes = unhex(req.ciphertext);
      const pt = req.type === S.CiphertextMessageType.PreKey
        ? await S.signalDecryptPreKey(S.PreKeySignalMessage.deserialize(bytes), addr(req), self, stores.session,
          stores.identityStore, stores.preKeyStore, stores.signedPreKeyStore, stores.kyberStore)
        : await S.signalDecrypt(S.SignalMessage.deserialize(bytes), addr(req), self, stores.session, stores.identityStore);
      return { plaintext: hex(pt) };
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let reply;
  try {
    reply = { ok: await handle(JSON.parse(line)) };
  } catch (e) {
    reply = { error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
