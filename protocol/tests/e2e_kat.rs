//! Known-answer tests: libsignal's own vectors (`shared/vectors/libsignal`, copied into
//! `tests/vectors` so the suite is self-contained) and RFC 7748.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_protocol::e2e::kdf::{ChainKey, MessageKeys};
use hush_protocol::e2e::{
    parse_one_time_prekey, verify_kyber_prekey, verify_signed_ec_prekey, KeyError, KeyId, KyberPublicKey,
    PrivateKey, PublicKey,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn verify(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match PublicKey::deserialize(pk) {
        Ok(k) => k.verify_signature(msg, sig),
        Err(_) => false,
    }
}

#[test]
fn xeddsa_valid_cases_verify_and_keys_match() {
    let v = load("libsignal/xeddsa.json");
    let cases = v["valid_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 40);
    let mut rng = rand::thread_rng();
    for c in cases {
        let (pk, msg, sig) = (hx(&c["public_key"]), hx(&c["message"]), hx(&c["signature"]));
        assert!(verify(&pk, &msg, &sig), "{}", c["id"]);
        let private = PrivateKey::deserialize(&hx(&c["private_key"])).unwrap();
        assert_eq!(private.public_key().serialize().to_vec(), pk, "{}", c["id"]);
        // Our own signatures verify under the same rules.
        let ours = private.sign(&msg, &mut rng);
        assert!(verify(&pk, &msg, &ours), "{}", c["id"]);
    }
}

#[test]
fn xeddsa_invalid_cases_are_refused() {
    let v = load("libsignal/xeddsa.json");
    let cases = v["invalid_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 30);
    for c in cases {
        assert!(!c["valid"].as_bool().unwrap());
        let (pk, msg, sig) = (hx(&c["public_key"]), hx(&c["message"]), hx(&c["signature"]));
        assert!(!verify(&pk, &msg, &sig), "{}: {}", c["id"], c["mutation"]);
    }
}

#[test]
fn xeddsa_edge_cases_match_libsignal() {
    let v = load("libsignal/xeddsa.json");
    let cases = v["edge_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 11);
    for c in cases {
        let (pk, msg, sig) = (hx(&c["public_key"]), hx(&c["message"]), hx(&c["signature"]));
        let expected = c["valid"].as_bool().unwrap();
        assert_eq!(verify(&pk, &msg, &sig), expected, "{}: {}", c["id"], c["note"]);
    }
}

#[test]
fn prekey_devices_verify() {
    let v = load("libsignal/prekeys.json");
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 10);
    for d in devices {
        let ik = hx(&d["identity_key"]["public_key"]);
        let ik_private = PrivateKey::deserialize(&hx(&d["identity_key"]["private_key"])).unwrap();
        assert_eq!(ik_private.public_key().serialize().to_vec(), ik);
        let spk = &d["signed_pre_key"];
        let ok = verify_signed_ec_prekey(
            &ik,
            spk["key_id"].as_i64().unwrap(),
            &hx(&spk["public_key"]),
            &hx(&spk["signature"]),
        )
        .unwrap();
        assert_eq!(ok.public_key.serialize().to_vec(), hx(&spk["public_key"]));
        let spk_private = PrivateKey::deserialize(&hx(&spk["private_key"])).unwrap();
        assert_eq!(spk_private.public_key(), ok.public_key);
        for field in ["kyber_pre_key", "last_resort_kyber"] {
            let k = &d[field];
            let ok = verify_kyber_prekey(
                &ik,
                k["key_id"].as_i64().unwrap(),
                &hx(&k["public_key"]),
                &hx(&k["signature"]),
            )
            .unwrap();
            assert_eq!(ok.public_key.serialize(), hx(&k["public_key"]).as_slice());
        }
        for otk in d["one_time_pre_keys"].as_array().unwrap() {
            let parsed =
                parse_one_time_prekey(otk["key_id"].as_i64().unwrap(), &hx(&otk["public_key"])).unwrap();
            let private = PrivateKey::deserialize(&hx(&otk["private_key"])).unwrap();
            assert_eq!(private.public_key(), parsed.public_key);
        }
    }
}

#[test]
fn prekey_bad_uploads_are_refused_with_the_expected_kind() {
    let v = load("libsignal/prekeys.json");
    let bad = v["bad_uploads"].as_array().unwrap();
    assert_eq!(bad.len(), 10);
    for b in bad {
        let ik = hx(&b["identity_key"]);
        let spk = &b["signed_pre_key"];
        let r_spk = verify_signed_ec_prekey(
            &ik,
            spk["key_id"].as_i64().unwrap(),
            &hx(&spk["public_key"]),
            &hx(&spk["signature"]),
        )
        .err();
        let kyber = |f: &str| {
            let k = &b[f];
            verify_kyber_prekey(
                &ik,
                k["key_id"].as_i64().unwrap(),
                &hx(&k["public_key"]),
                &hx(&k["signature"]),
            )
            .err()
        };
        let results = [
            ("signed_pre_key", r_spk),
            ("kyber_pre_key", kyber("kyber_pre_key")),
            ("last_resort_kyber", kyber("last_resort_kyber")),
        ];
        let expected = match b["expect"].as_str().unwrap() {
            "reject_invalid_signature" => KeyError::InvalidSignature,
            "reject_invalid_key" => KeyError::InvalidKey,
            "reject_invalid_key_id" => KeyError::InvalidKeyId,
            other => panic!("unknown expectation {other}"),
        };
        let field = b["defect_field"].as_str().unwrap();
        for (name, result) in results {
            if field.starts_with(name) {
                assert_eq!(result, Some(expected), "{}: {}", b["id"], b["defect"]);
            } else {
                assert_eq!(result, None, "{}: {} (untouched {name})", b["id"], b["defect"]);
            }
        }
    }
}

#[test]
fn parsing_probes_match_libsignal() {
    let v = load("libsignal/prekeys.json");
    let probes = v["parsing_probes"].as_array().unwrap();
    assert_eq!(probes.len(), 20);
    for p in probes {
        let input = hx(&p["input"]);
        let accepted = p["accepted"].as_bool().unwrap();
        let what = format!("{}: {}", p["kind"], p["description"]);
        match p["kind"].as_str().unwrap() {
            "ec_public_key" => {
                let r = PublicKey::deserialize(&input);
                assert_eq!(r.is_ok(), accepted, "{what}");
                if let Ok(k) = r {
                    assert_eq!(k.serialize().to_vec(), hx(&p["reserialized"]), "{what}");
                }
            }
            "kyber_public_key" => {
                let r = KyberPublicKey::deserialize(&input);
                assert_eq!(r.is_ok(), accepted, "{what}");
                if let Ok(k) = r {
                    assert_eq!(k.serialize(), input.as_slice());
                }
            }
            "ec_private_key" => {
                let r = PrivateKey::deserialize(&input);
                assert_eq!(r.is_ok(), accepted, "{what}");
                if let Ok(k) = r {
                    assert_eq!(k.serialize().to_vec(), hx(&p["reserialized"]), "{what}");
                    assert_eq!(k.public_key().serialize().to_vec(), hx(&p["derived_public_key"]), "{what}");
                }
            }
            other => panic!("unknown probe kind {other}"),
        }
    }
}

#[test]
fn key_id_probes_follow_hush_range_policy() {
    // libsignal accepts any u32; Hush (like the server policy in bad-08) accepts 0..=2^31-1.
    let v = load("libsignal/prekeys.json");
    for p in v["key_id_probes"].as_array().unwrap() {
        let id = p["key_id"].as_i64().unwrap();
        let libsignal_accepts = p["signed_pre_key_record"] == "accepted";
        let ours = KeyId::new(id);
        assert_eq!(ours.is_ok(), (0..=0x7fff_ffff).contains(&id), "{id}");
        if ours.is_ok() {
            assert!(libsignal_accepts, "{id}");
        }
        if !libsignal_accepts {
            assert_eq!(ours, Err(KeyError::InvalidKeyId), "{id}");
        }
    }
}

#[test]
fn libsignal_chain_key_derivation() {
    let v = load("libsignal/chain_key.json");
    let ck = ChainKey::new(hx(&v["chain_key"]).try_into().unwrap(), 0);
    let (seed, next) = ck.step().unwrap();
    assert_eq!(seed.as_bytes().to_vec(), hx(&v["message_seed"]));
    assert_eq!(next.key_bytes().to_vec(), hx(&v["next_chain_key"]));
    assert_eq!(u64::from(next.index()), v["next_index"].as_u64().unwrap());
    let keys = MessageKeys::derive(&seed).unwrap();
    let (cipher, mac, iv) = keys.as_parts();
    assert_eq!(cipher.to_vec(), hx(&v["cipher_key"]));
    assert_eq!(mac.to_vec(), hx(&v["mac_key"]));
    assert_eq!(iv.to_vec(), hx(&v["iv"]));
}

#[test]
fn rfc7748_x25519() {
    let v = load("rfc/x25519.json");
    for c in v["scalar_mult"].as_array().unwrap() {
        let k = PrivateKey::deserialize(&hx(&c["scalar"])).unwrap();
        let u = PublicKey::from_u_bytes(hx(&c["u"]).try_into().unwrap());
        assert_eq!(k.agree(&u).unwrap().to_vec(), hx(&c["output"]));
    }
    let d = &v["diffie_hellman"];
    let a = PrivateKey::deserialize(&hx(&d["alice_private"])).unwrap();
    let b = PrivateKey::deserialize(&hx(&d["bob_private"])).unwrap();
    assert_eq!(a.public_key().u_bytes().to_vec(), hx(&d["alice_public"]));
    assert_eq!(b.public_key().u_bytes().to_vec(), hx(&d["bob_public"]));
    assert_eq!(a.agree(&b.public_key()).unwrap().to_vec(), hx(&d["shared"]));
    assert_eq!(b.agree(&a.public_key()).unwrap().to_vec(), hx(&d["shared"]));
}

#[test]
fn libsignal_session_bundle_parses_and_verifies() {
    // The bundle libsignal built its session from must parse and verify here, and start a Hush
    // (PQXDH) session.
    use hush_protocol::e2e::pqxdh;
    use hush_protocol::e2e::{KeyPair, PreKeyBundle};
    let v = load("libsignal/session.json");
    let b = &v["bob"]["bundle"];
    let ik = hx(&b["identity_key"]);
    let spk = verify_signed_ec_prekey(
        &ik,
        b["signed_pre_key"]["key_id"].as_i64().unwrap(),
        &hx(&b["signed_pre_key"]["public_key"]),
        &hx(&b["signed_pre_key"]["signature"]),
    )
    .unwrap();
    let kyber = verify_kyber_prekey(
        &ik,
        b["kyber_pre_key"]["key_id"].as_i64().unwrap(),
        &hx(&b["kyber_pre_key"]["public_key"]),
        &hx(&b["kyber_pre_key"]["signature"]),
    )
    .unwrap();
    let otk =
        parse_one_time_prekey(b["pre_key"]["key_id"].as_i64().unwrap(), &hx(&b["pre_key"]["public_key"]))
            .unwrap();
    PublicKey::deserialize(&hx(&v["alice"]["identity_key"])).unwrap();
    let fields = &v["alice_to_bob"][0]["prekey_message_fields"];
    assert_eq!(i64::from(otk.key_id.get()), fields["pre_key_id"].as_i64().unwrap());
    assert_eq!(i64::from(spk.key_id.get()), fields["signed_pre_key_id"].as_i64().unwrap());
    let bundle = PreKeyBundle {
        registration_id: u32::try_from(b["registration_id"].as_u64().unwrap()).unwrap(),
        device_id: u32::try_from(b["device_id"].as_u64().unwrap()).unwrap(),
        identity_key: PublicKey::deserialize(&ik).unwrap(),
        signed_pre_key: spk,
        one_time_pre_key: Some(otk),
        kyber_pre_key: Some(kyber),
    };
    let mut rng = rand::thread_rng();
    let ours = KeyPair::generate(&mut rng);
    let state = pqxdh::start_session(&ours, 1163, &bundle, &mut rng).unwrap();
    assert!(state.is_unacknowledged());
    // A flipped bit in the Kyber signature stops the session before any DH.
    let mut bad = bundle.clone();
    if let Some(k) = bad.kyber_pre_key.as_mut() {
        k.signature[0] ^= 1;
    }
    assert!(pqxdh::start_session(&ours, 1163, &bad, &mut rng).is_err());
    // No Kyber pre-key: no session (libsignal 0.103 cannot start one either).
    let mut no_kyber = bundle.clone();
    no_kyber.kyber_pre_key = None;
    assert!(matches!(
        pqxdh::start_session(&ours, 1163, &no_kyber, &mut rng),
        Err(hush_protocol::e2e::E2eError::MissingKyberPreKey)
    ));
}
