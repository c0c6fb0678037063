//! Retry requests against libsignal's own bytes (`tests/vectors/libsignal/retry.json`, made by
//! `tools/libsignal-vectors/gen-retry.mjs` with `@signalapp/libsignal-client` 0.103.0): Hush's
//! encoder makes exactly libsignal's `DecryptionErrorMessage` and `PlaintextContent` from the
//! same fields, Hush's decoder reads libsignal's bytes back to those fields, and Hush accepts
//! and refuses the probes as libsignal does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_protocol::e2e::content::HushExtension;
use hush_protocol::e2e::retry::{DecryptionErrorMessage, PlaintextContent};
use hush_protocol::e2e::PublicKey;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/libsignal/retry.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn hush_encodes_and_decodes_libsignal_retry_requests_byte_for_byte() {
    let v = vectors();
    assert!(v["generator"].as_str().unwrap().contains("0.103.0"));
    let mut checked = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if case.get("error").is_some() {
            // libsignal makes no retry request for a plaintext content; Hush sends none either.
            assert_eq!(name, "plaintext");
            continue;
        }
        let ratchet_key =
            case["ratchet_key"].as_str().map(|h| PublicKey::from_exact(&hex::decode(h).unwrap()).unwrap());
        let dem = DecryptionErrorMessage {
            ratchet_key,
            timestamp: case["timestamp"].as_u64().unwrap(),
            device_id: u32::try_from(case["device_id"].as_u64().unwrap()).unwrap(),
            unknown: vec![],
        };
        let want_dem = bytes(&case["decryption_error_message"]);
        let want_pc = bytes(&case["plaintext_content"]);
        assert_eq!(dem.encode(), want_dem, "{name}: DecryptionErrorMessage");
        assert_eq!(PlaintextContent::retry_request(&dem, None).encode(), want_pc, "{name}: PlaintextContent");
        assert_eq!(DecryptionErrorMessage::decode(&want_dem).unwrap(), dem, "{name}");
        let pc = PlaintextContent::decode(&want_pc).unwrap();
        assert_eq!(pc.decryption_error().unwrap(), dem, "{name}");
        assert_eq!(pc.encode(), want_pc, "{name}");
        // libsignal's body() is everything after the 0xC0 (the 0x80 included).
        assert_eq!(&want_pc[1..], &bytes(&case["plaintext_content_body"])[..]);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn hush_accepts_and_refuses_what_libsignal_does() {
    let v = vectors();
    let mut n = 0;
    for p in v["probes"].as_array().unwrap() {
        let input = bytes(&p["input"]);
        let what = p["description"].as_str().unwrap();
        let accepted = p["accepted"].as_bool().unwrap();
        match p["kind"].as_str().unwrap() {
            "plaintext_content" => {
                let got = PlaintextContent::decode(&input);
                assert_eq!(got.is_ok(), accepted, "{what}: {got:?}");
                if let Ok(pc) = got {
                    // libsignal re-serializes what it read unchanged; so does Hush, unknown
                    // fields included.
                    assert_eq!(pc.encode(), bytes(&p["reserialized"]), "{what}");
                    let dem = pc.decryption_error().unwrap();
                    assert_eq!(u64::from(dem.device_id), p["dem_device_id"].as_u64().unwrap());
                    assert_eq!(dem.timestamp, p["dem_timestamp"].as_u64().unwrap());
                }
            }
            "decryption_error_message" => {
                let got = DecryptionErrorMessage::decode(&input);
                assert_eq!(got.is_ok(), accepted, "{what}: {got:?}");
                if let Ok(d) = got {
                    // libsignal re-serializes the bytes it read; Hush re-encodes the fields and
                    // always writes the device id (as libsignal's `forOriginal` does), so only
                    // the probe without one differs ("1001" becomes "10011800").
                    if what == "timestamp only" {
                        assert_eq!(d.encode(), [0x10, 0x01, 0x18, 0x00]);
                    } else {
                        assert_eq!(d.encode(), bytes(&p["reserialized"]), "{what}");
                    }
                    assert_eq!(DecryptionErrorMessage::decode(&d.encode()).unwrap(), d);
                    assert_eq!(u64::from(d.device_id), p["device_id"].as_u64().unwrap());
                    assert_eq!(
                        d.ratchet_key.map(|k| hex::encode(k.serialize())),
                        p["ratchet_key"].as_str().map(String::from)
                    );
                }
            }
            other => panic!("unknown probe kind {other}"),
        }
        n += 1;
    }
    assert_eq!(n, 13);
}

#[test]
fn hush_extension_rides_along_where_libsignal_keeps_unknown_fields() {
    // The probe with field 1000 = "hush" is accepted by libsignal; Hush's own extension uses
    // the same field, so a libsignal app reading a Hush retry request sees the usual
    // DecryptionErrorMessage.
    let v = vectors();
    let case = &v["cases"][0];
    let dem = DecryptionErrorMessage::decode(&bytes(&case["decryption_error_message"])).unwrap();
    let hush = HushExtension { message_id: Some([0xab; 16]), ..HushExtension::default() };
    let ours = PlaintextContent::retry_request(&dem, Some(hush.clone())).encode();
    let want = bytes(&case["plaintext_content"]);
    // libsignal's bytes, with the extension field inserted before the 0x80.
    assert_eq!(&ours[..want.len() - 1], &want[..want.len() - 1]);
    assert_eq!(&ours[want.len() - 1..want.len() + 1], &[0xc2, 0x3e]);
    assert_eq!(PlaintextContent::decode(&ours).unwrap().content.hush, Some(hush));
}
