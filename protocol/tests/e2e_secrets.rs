//! Secrets never show in `Debug` output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hush_protocol::e2e::store::IdentityStore;
use hush_protocol::e2e::{InMemoryStore, KeyPair, SenderKeyRecord};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn forms(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{:?}", &bytes[..4]);
    vec![hex[..16].to_string(), list.trim_end_matches(']').to_string()]
}

#[test]
fn debug_output_holds_no_key_bytes() {
    let mut rng = StdRng::seed_from_u64(9);
    let pair = KeyPair::generate(&mut rng);
    let private = pair.private_key().serialize();
    let store = InMemoryStore::new(pair.clone(), 5);
    let mut record = SenderKeyRecord::new(uuid::Uuid::nil());
    let skdm = record.distribution(&mut rng).unwrap();
    let chain_key = skdm.encode()[25..57].to_vec();
    let text = format!(
        "{pair:?} {:?} {store:?} {record:?} {skdm:?} {:?}",
        pair.private_key(),
        store.identity_key_pair().unwrap()
    );
    for secret in [&private[..], &chain_key[..]] {
        for f in forms(secret) {
            assert!(!text.contains(&f), "{f} found in {text}");
        }
    }
}
