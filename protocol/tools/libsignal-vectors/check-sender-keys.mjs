// libsignal's side of Hush's Sender Keys interop test (tests/e2e_sender_keys_kat.rs): reads
// Hush-made messages as JSON on stdin and prints, as JSON on stdout, what libsignal makes of them.
//
// Input:  { "sender": "alice", "device_id": 1, "distribution_message": "<hex>",
//           "messages": ["<hex>", ...] }   (group messages, in delivery order)
// Output: { "generator": "...",
//           "distribution": { "accepted", "error"?, "reserialized", "chain_id", "iteration",
//                             "distribution_id", "chain_key" },
//           "results": [ { "ok": true, "plaintext": "<hex>", "signature_verifies": bool,
//                          "iteration", "chain_id", "distribution_id" }
//                        | { "ok": false, "error": "..." }, ... ] }
//
// The distribution message is processed into a fresh in-memory store for the sender's address,
// then every message is decrypted with groupDecrypt in the given order.
//
// Usage: npm ci && node check-sender-keys.mjs < input.json
import { readFileSync } from 'node:fs';
import { SignalClient, hex, decodeProto, protoField } from './lib.mjs';

const pkgVersion = JSON.parse(readFileSync(new URL('./node_modules/@signalapp/libsignal-client/package.json', import.meta.url))).version;

class MemSenderKeyStore extends SignalClient.SenderKeyStore {
  constructor() { super(); this.records = new Map(); }
  key(a, d) { return `${a.toString()}/${d}`; }
  async saveSenderKey(a, d, r) { this.records.set(this.key(a, d), r.serialize()); }
  async getSenderKey(a, d) { const r = this.records.get(this.key(a, d)); return r ? SignalClient.SenderKeyRecord.deserialize(r) : null; }
}

const input = JSON.parse(readFileSync(0, 'utf8'));
const sender = SignalClient.ProtocolAddress.new(input.sender ?? 'alice', input.device_id ?? 1);
const store = new MemSenderKeyStore();
const output = { generator: `@signalapp/libsignal-client ${pkgVersion} (check-sender-keys.mjs)`, results: [] };

let signingKey = null;
try {
  const bytes = Buffer.from(input.distribution_message, 'hex');
  const skdm = SignalClient.SenderKeyDistributionMessage.deserialize(bytes);
  await SignalClient.processSenderKeyDistributionMessage(sender, skdm, store);
  signingKey = SignalClient.PublicKey.deserialize(protoField(decodeProto(bytes.subarray(1)), 5));
  output.distribution = {
    accepted: true,
    reserialized: hex(skdm.serialize()),
    chain_id: skdm.chainId(),
    iteration: skdm.iteration(),
    distribution_id: skdm.distributionId(),
    chain_key: hex(skdm.chainKey()),
  };
} catch (e) {
  output.distribution = { accepted: false, error: String(e.message ?? e) };
}

for (const m of input.messages ?? []) {
  const bytes = Buffer.from(m, 'hex');
  try {
    const skm = SignalClient.SenderKeyMessage.deserialize(bytes);
    const pt = Buffer.from(await SignalClient.groupDecrypt(sender, store, bytes));
    output.results.push({
      ok: true,
      plaintext: hex(pt),
      signature_verifies: signingKey ? skm.verifySignature(signingKey) : null,
      iteration: skm.iteration(),
      chain_id: skm.chainId(),
      distribution_id: skm.distributionId(),
    });
  } catch (e) {
    output.results.push({ ok: false, error: String(e.message ?? e) });
  }
}

process.stdout.write(JSON.stringify(output) + '\n');
