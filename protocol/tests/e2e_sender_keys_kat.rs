//! Sender Keys against libsignal 0.103 itself, both ways.
//!
//! - libsignal -> Hush: `tests/vectors/sender_keys.json` (made by
//!   `tools/libsignal-vectors/gen-sender-keys.mjs` with `@signalapp/libsignal-client` 0.103.0)
//!   holds a libsignal distribution message and libsignal group messages with libsignal's own
//!   decryption result for each delivery (in order, out of order, duplicates, long skips, an
//!   evicted key, the forward-jump bound). Hush must decode them, re-encode them to the same
//!   bytes, and decrypt or refuse each delivery exactly as libsignal did.
//! - Hush -> libsignal: Hush's distribution message and group messages are handed to
//!   `tools/libsignal-vectors/check-sender-keys.mjs`, which decrypts them with libsignal. This
//!   needs Node and that folder's `node_modules` (`npm ci` there; `scripts/test.sh` does it): the
//!   test fails, rather than skips, without them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
use hush_protocol::e2e::kdf::ChainKey;
use hush_protocol::e2e::sender_keys::{SenderKeyMessage, SENDER_KEY_VERSION_BYTE};
use hush_protocol::e2e::{DecodeError, E2eError, PublicKey, SenderKeyDistributionMessage, SenderKeyRecord};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use uuid::Uuid;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sender_keys.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn message_at(v: &Value, iteration: u64) -> Vec<u8> {
    let m = v["messages"].as_array().unwrap().iter().find(|m| m["iteration"] == iteration).unwrap();
    bytes(&m["message"])
}

fn member(v: &Value, skdm: &str) -> SenderKeyRecord {
    let skdm = SenderKeyDistributionMessage::decode(&bytes(&v[skdm])).unwrap();
    let mut r = SenderKeyRecord::new(skdm.distribution_id);
    r.process_distribution(&skdm).unwrap();
    r
}

#[test]
fn libsignal_distribution_messages_decode_and_reencode_to_the_same_bytes() {
    let v = vectors();
    assert!(v["generator"].as_str().unwrap().contains("0.103.0"));
    let d = &v["distribution"];
    let wire = bytes(&v["distribution_message"]);
    assert_eq!(wire[0], SENDER_KEY_VERSION_BYTE);
    assert_eq!(wire[0], 0x33);
    let m = SenderKeyDistributionMessage::decode(&wire).unwrap();
    assert_eq!(m.distribution_id, Uuid::parse_str(v["distribution_id"].as_str().unwrap()).unwrap());
    assert_eq!(m.distribution_id.to_string(), d["distribution_id"].as_str().unwrap());
    assert_eq!(u64::from(m.chain_id), d["chain_id"].as_u64().unwrap());
    assert_eq!(u64::from(m.iteration), d["iteration"].as_u64().unwrap());
    assert_eq!(m.signing_key, PublicKey::from_exact(&bytes(&d["signing_key"])).unwrap());
    assert_eq!(m.encode().as_slice(), wire.as_slice());
    // The chain key is field 4: 32 bytes right after its tag and length.
    let ck = bytes(&d["chain_key"]);
    assert!(wire.windows(34).any(|w| w[..2] == [0x22, 0x20] && w[2..] == ck[..]));
    // libsignal's field numbers and lengths, as found in its bytes.
    let fields: Vec<(u64, u64)> = v["distribution_message_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_u64().unwrap(), f["wire"].as_u64().unwrap()))
        .collect();
    assert_eq!(fields, [(1, 2), (2, 0), (3, 0), (4, 2), (5, 2)]);

    let later = bytes(&v["distribution_message_later"]);
    let m = SenderKeyDistributionMessage::decode(&later).unwrap();
    assert_eq!(u64::from(m.iteration), v["distribution_message_later_iteration"].as_u64().unwrap());
    assert_eq!(m.iteration, 6);
    assert_eq!(m.encode().as_slice(), later.as_slice());
}

#[test]
fn libsignal_group_messages_decode_reencode_and_verify() {
    let v = vectors();
    let signing_key = PublicKey::from_exact(&bytes(&v["distribution"]["signing_key"])).unwrap();
    let chain_id = v["distribution"]["chain_id"].as_u64().unwrap();
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 13);
    for case in messages {
        let wire = bytes(&case["message"]);
        assert_eq!(wire[0], 0x33);
        let m = SenderKeyMessage::decode(&wire).unwrap();
        assert_eq!(u64::from(m.iteration), case["iteration"].as_u64().unwrap());
        assert_eq!(u64::from(m.chain_id), chain_id);
        assert_eq!(m.ciphertext(), bytes(&case["ciphertext"]).as_slice());
        // Re-encoding the fields gives libsignal's signed bytes; the signature is the last 64
        // bytes and covers everything before it (the version byte included).
        assert_eq!(m.encode_signed_part(), &wire[..wire.len() - 64]);
        assert_eq!(m.signed_bytes(), &wire[..wire.len() - 64]);
        assert!(signing_key.verify_signature(&wire[..wire.len() - 64], &wire[wire.len() - 64..]));
        assert!(!signing_key.verify_signature(&wire[1..wire.len() - 64], &wire[wire.len() - 64..]));
        assert_eq!(case["signature_verifies"], true);
        assert_eq!(case["signature_over_prefix"], true);
        let fields: Vec<u64> =
            case["fields"].as_array().unwrap().iter().map(|f| f["field"].as_u64().unwrap()).collect();
        assert_eq!(fields, [1, 2, 3, 4]);
    }
}

#[test]
fn key_derivation_is_libsignals_iv_then_key() {
    let v = vectors();
    let d = &v["derivation"];
    assert_eq!(d["iv_then_key_decrypts"], true);
    assert_eq!(d["key_then_iv_decrypts"], false);
    assert_eq!(d["later_chain_key_is_hmac02_six_times"], true);
    let ck: [u8; 32] = bytes(&d["chain_key_0"]).try_into().unwrap();
    let (seed, next) = ChainKey::new(ck, 0).step().unwrap();
    assert_eq!(seed.as_bytes().as_slice(), bytes(&d["message_seed_0"]).as_slice());
    assert_eq!(next.key_bytes().as_slice(), bytes(&d["chain_key_1"]).as_slice());
    let mut okm = [0u8; 48];
    hkdf::Hkdf::<sha2::Sha256>::new(None, seed.as_bytes()).expand(b"WhisperGroup", &mut okm).unwrap();
    assert_eq!(okm.as_slice(), bytes(&d["hkdf_okm_0"]).as_slice());
    let m0 = &v["messages"][0];
    assert_eq!(m0["iteration"], 0);
    let pt = cbc::Decryptor::<aes::Aes256>::new_from_slices(&okm[16..], &okm[..16])
        .unwrap()
        .decrypt_padded_vec::<Pkcs7>(&bytes(&m0["ciphertext"]))
        .unwrap();
    assert_eq!(pt, bytes(&m0["plaintext"]));
}

#[test]
fn hush_decrypts_libsignal_group_messages_as_libsignal_does() {
    let v = vectors();
    let mut r = member(&v, "distribution_message");
    let deliveries = v["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 15);
    let (mut ok, mut refused) = (0, 0);
    for d in deliveries {
        let i = d["iteration"].as_u64().unwrap();
        let wire = message_at(&v, i);
        let before = r.serialize().unwrap();
        let got = r.decrypt(&wire);
        if d["ok"] == true {
            assert_eq!(got.unwrap(), bytes(&d["plaintext"]), "iteration {i}");
            ok += 1;
        } else {
            let err = d["error"].as_str().unwrap();
            let expected = if err.contains("old counter") {
                E2eError::DuplicateMessage
            } else if err.contains("too far into the future") {
                E2eError::TooFarInFuture
            } else {
                panic!("unexpected libsignal error {err}")
            };
            assert_eq!(got, Err(expected), "iteration {i}: libsignal said {err}");
            assert_eq!(r.serialize().unwrap(), before, "a refusal changed the record");
            refused += 1;
        }
    }
    assert_eq!((ok, refused), (12, 3));
}

#[test]
fn a_later_distribution_message_starts_at_its_iteration() {
    let v = vectors();
    let mut r = member(&v, "distribution_message_later");
    assert_eq!(r.decrypt(&message_at(&v, 5)), Err(E2eError::DuplicateMessage));
    let m = v["messages"].as_array().unwrap().iter().find(|m| m["iteration"] == 1005).unwrap();
    assert_eq!(r.decrypt(&bytes(&m["message"])).unwrap(), bytes(&m["plaintext"]));
    let m = v["messages"].as_array().unwrap().iter().find(|m| m["iteration"] == 600).unwrap();
    assert_eq!(r.decrypt(&bytes(&m["message"])).unwrap(), bytes(&m["plaintext"]));
}

#[test]
fn tampered_libsignal_messages_are_refused_as_libsignal_refuses_them() {
    let v = vectors();
    for t in v["tampered"].as_array().unwrap() {
        assert_eq!(t["accepted"], false);
        let mut r = member(&v, "distribution_message");
        let before = r.serialize().unwrap();
        assert_eq!(r.decrypt(&bytes(&t["message"])), Err(E2eError::DecryptionFailed), "{}", t["what"]);
        assert_eq!(r.serialize().unwrap(), before);
    }
}

#[test]
fn hush_accepts_and_refuses_the_probes_as_libsignal_does() {
    let v = vectors();
    for p in v["probes"].as_array().unwrap() {
        let input = bytes(&p["input"]);
        let what = format!("{} {}", p["kind"], p["description"]);
        let accepted = p["accepted"].as_bool().unwrap();
        match p["kind"].as_str().unwrap() {
            "skdm" => {
                let got = SenderKeyDistributionMessage::decode(&input);
                assert_eq!(got.is_ok(), accepted, "{what}: {got:?}");
                if let Err(e) = got {
                    let err = p["error"].as_str().unwrap();
                    let expected = if err.contains("too old") || err.contains("unrecognized") {
                        DecodeError::BadVersion
                    } else if err.contains("too short") {
                        DecodeError::Truncated
                    } else if err.contains("bad key type") {
                        DecodeError::BadKey
                    } else {
                        DecodeError::Protobuf
                    };
                    assert_eq!(e, expected, "{what}: libsignal said {err}");
                }
            }
            "skm" => {
                let got = SenderKeyMessage::decode(&input);
                assert_eq!(got.is_ok(), accepted, "{what}: {got:?}");
            }
            k => panic!("unknown probe kind {k}"),
        }
    }
}

/// Runs libsignal (`check-sender-keys.mjs`) on Hush-made messages.
fn libsignal_check(input: &Value) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/libsignal-vectors");
    assert!(
        dir.join("node_modules/@signalapp/libsignal-client").is_dir(),
        "libsignal is not installed for this test: run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("check-sender-keys.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` (needed for the libsignal interop test): {e}"));
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "check-sender-keys.mjs failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn libsignal_decrypts_hush_group_messages() {
    let mut rng = StdRng::seed_from_u64(0x5e4d);
    // Like a Hush group's distribution id: 16 hash bytes, not an RFC 4122 UUID.
    let dist = Uuid::from_bytes([
        0xf7, 0x3a, 0x9c, 0x01, 0x55, 0xe2, 0x0b, 0xff, 0x00, 0x13, 0x8d, 0x62, 0xc4, 0x7e, 0x29, 0xa0,
    ]);
    let mut sender = SenderKeyRecord::new(dist);
    let skdm = sender.distribution(&mut rng).unwrap().encode().to_vec();
    let big = vec![0xabu8; 60 * 1024];
    let mut made: Vec<(u32, Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..=1200u32 {
        let pt = match i {
            0 => Vec::new(),
            1..=3 => vec![b'a'; 14 + i as usize], // 15, 16, 17 bytes: around one CBC block
            7 => big.clone(),
            _ => format!("hush group message {i}").into_bytes(),
        };
        made.push((i, sender.encrypt(&pt, &mut rng).unwrap(), pt));
    }
    // Delivery: in order, out of order, a duplicate, a skip of ~1000, a skipped key.
    let order = [0u32, 1, 2, 5, 3, 4, 7, 1, 1200, 600, 1100, 600];
    let expect_ok = [true, true, true, true, true, true, true, false, true, true, true, false];
    let messages: Vec<String> = order.iter().map(|&i| hex::encode(&made[i as usize].1)).collect();
    let out = libsignal_check(&json!({
        "sender": "hush-alice",
        "device_id": 3,
        "distribution_message": hex::encode(&skdm),
        "messages": messages,
    }));
    assert!(out["generator"].as_str().unwrap().contains("0.103.0"));
    let d = &out["distribution"];
    assert_eq!(d["accepted"], true, "{d}");
    assert_eq!(d["reserialized"].as_str().unwrap(), hex::encode(&skdm));
    assert_eq!(d["distribution_id"].as_str().unwrap(), dist.to_string());
    assert_eq!(d["iteration"], 0);
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), order.len());
    for ((&i, &ok), r) in order.iter().zip(expect_ok.iter()).zip(results) {
        if ok {
            assert_eq!(r["ok"], true, "iteration {i}: {r}");
            assert_eq!(bytes(&r["plaintext"]), made[i as usize].2, "iteration {i}");
            assert_eq!(r["signature_verifies"], true);
            assert_eq!(r["iteration"], i);
            assert_eq!(r["distribution_id"].as_str().unwrap(), dist.to_string());
        } else {
            assert_eq!(r["ok"], false, "iteration {i}: {r}");
            assert!(r["error"].as_str().unwrap().contains("old counter"), "{r}");
        }
    }

    // After a rotation, libsignal reads the new chain from its distribution message.
    let rotated = sender.rotate(&mut rng).encode().to_vec();
    let m = sender.encrypt(b"after rotation", &mut rng).unwrap();
    let out = libsignal_check(&json!({
        "sender": "hush-alice",
        "device_id": 3,
        "distribution_message": hex::encode(&rotated),
        "messages": [hex::encode(&m), hex::encode(&made[8].1)],
    }));
    assert_eq!(bytes(&out["results"][0]["plaintext"]), b"after rotation");
    assert_eq!(out["results"][1]["ok"], false, "the old chain was not distributed here");
}
