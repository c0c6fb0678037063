//! The small per-device records a connecting device's notices are read from, in a region of
//! the key space of their own, `s/<tenant>/<user>/<device>/`:
//!
//! | key | value |
//! |---|---|
//! | `s/…/ages` | upload times (ms) of the signed pre-key and the Kyber last-resort key, 0 for none: 16 bytes |
//! | `s/…/low` | a `PreKeysLow` is owed (cleared by the next upload) |
//!
//! Why a region of their own: every connect asks for the device's notices. Read from the key
//! records (`k/…/spk`, `k/…/lrk`), that loaded the store page holding the device's Kyber
//! last-resort key (1.6 KB) and its neighbours into the store's page cache: about one 4 KiB page
//! per connected device, 2.3 KB of an idle connection's 13 KB of heap at 10,000 connections
//! (heaptrack, `benches/README.md`, issue 15, session 12). Here one page holds the records of
//! about a hundred devices.
//!
//! Stores written before this region existed have `k/…/low` and no `ages`. A device's first
//! connect then falls back to its key records and copies what it found here, create-if-absent,
//! so a copy never overwrites a newer upload's record; its next upload deletes the old `low`,
//! and until then a fetch still honours it.

use hush_protocol::ids::DeviceAddress;
use hush_store::StoreError;

use super::{Meta, NS};
use crate::hub::Hub;

/// The device's region (wiped with its keys).
pub(super) fn region(a: &DeviceAddress) -> String {
    format!("s/{}/{}/{:010}/", a.tenant, a.user, a.device.get())
}

/// The record of an owed `PreKeysLow`.
pub(super) fn low_key(a: &DeviceAddress) -> String {
    format!("{}low", region(a))
}

fn ages_key(a: &DeviceAddress) -> String {
    format!("{}ages", region(a))
}

/// Upload times of the signed pre-key and the last-resort key, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ages {
    pub spk_ms: Option<u64>,
    pub lrk_ms: Option<u64>,
}

impl Ages {
    pub fn of(m: &Meta) -> Self {
        Ages { spk_ms: m.spk.as_ref().map(|k| k.uploaded_ms), lrk_ms: m.lrk.as_ref().map(|k| k.uploaded_ms) }
    }

    /// Big-endian: the signed pre-key's time, then the last-resort key's.
    fn encode(self) -> Vec<u8> {
        let (spk, lrk) = (self.spk_ms.unwrap_or(0), self.lrk_ms.unwrap_or(0));
        ((u128::from(spk) << 64) | u128::from(lrk)).to_be_bytes().to_vec()
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bytes =
            b.try_into().map_err(|_| StoreError::Corrupt(format!("key ages: {} bytes, not 16", b.len())))?;
        let v = u128::from_be_bytes(bytes);
        let some = |ms: u64| (ms != 0).then_some(ms);
        Ok(Ages { spk_ms: some((v >> 64) as u64), lrk_ms: some(v as u64) })
    }
}

/// What a connecting device's notices need: the ages (`None` for a device whose keys were
/// stored before this region existed, or that never uploaded any) and whether a
/// `PreKeysLow` is owed here.
pub(super) async fn read(hub: &Hub, addr: &DeviceAddress) -> Result<(Option<Ages>, bool), StoreError> {
    let p = region(addr);
    let (mut ages, mut low) = (None, false);
    for e in hub.store.kv_scan(NS, &p, None, 2).await? {
        match &e.key[p.len()..] {
            "ages" => ages = Some(Ages::decode(&e.value)?),
            "low" => low = true,
            _ => {}
        }
    }
    Ok((ages, low))
}

/// Records the ages after an upload (overwrites).
pub(super) async fn set_ages(hub: &Hub, addr: &DeviceAddress, ages: Ages) -> Result<(), StoreError> {
    hub.store.kv_set(NS, &ages_key(addr), ages.encode()).await.map(drop)
}

/// Copies what a device's key records say into the region, where nothing is yet: the first
/// connect of a device whose keys were stored before the region existed (or that has none, so
/// its later connects read the region too).
pub(super) async fn copy_in(
    hub: &Hub,
    addr: &DeviceAddress,
    ages: Ages,
    low: bool,
) -> Result<(), StoreError> {
    let mut puts = vec![(ages_key(addr), ages.encode())];
    if low {
        puts.push((low_key(addr), Vec::new()));
    }
    for (key, value) in puts {
        match hub.store.kv_put(NS, &key, 0, value).await {
            Ok(_) | Err(StoreError::VersionConflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    use std::sync::Arc;

    use hush_protocol::ids::{DeviceId, TenantId, UserId};
    use hush_protocol::wire::ServerFrame;

    use super::super::{connect_notices, dev_prefix, StoredKey};

    /// A store written before the region existed: the notices come from the key records, are
    /// copied in, and from then on come from the region alone.
    #[tokio::test]
    async fn a_device_whose_keys_predate_the_region_is_copied_in_at_its_first_connect() {
        let dir = tempfile::tempdir().unwrap();
        let store = hush_store::embedded::EmbeddedStore::open(&dir.path().join("hush.redb")).unwrap();
        let hub = Hub::new(Arc::new(store), Arc::new(hush_cluster::LocalBus::new("test"))).unwrap();
        let addr =
            DeviceAddress::new(TenantId::new("t").unwrap(), UserId::new("bob").unwrap(), DeviceId::PRIMARY);
        let old = crate::now_ms() - 2 * hub.keys.rotation_age.as_millis() as u64;
        let k =
            |uploaded_ms| StoredKey { key_id: 1, public_key: vec![5; 33], signature: vec![], uploaded_ms };
        let legacy = [
            (format!("{}spk", dev_prefix(&addr)), k(old).encode().unwrap()),
            (format!("{}lrk", dev_prefix(&addr)), k(crate::now_ms()).encode().unwrap()),
            (format!("{}low", dev_prefix(&addr)), Vec::new()),
        ];
        hub.store.kv_set_many(NS, legacy.to_vec()).await.unwrap();
        assert_eq!(read(&hub, &addr).await.unwrap(), (None, false));

        let want = vec![
            ServerFrame::RotateKeys { signed_pre_key: true, last_resort: false },
            ServerFrame::PreKeysLow { ec: 0, kyber: 0 },
        ];
        assert_eq!(connect_notices(&hub, &addr).await.unwrap(), want);
        let (ages, low) = read(&hub, &addr).await.unwrap();
        assert_eq!(ages.and_then(|a| a.spk_ms), Some(old));
        assert!(low);

        // The key records' small entries gone: the region alone answers.
        let gone: Vec<String> = legacy.iter().map(|(key, _)| key.clone()).collect();
        assert_eq!(hub.store.kv_delete_many(NS, gone).await.unwrap(), 3);
        assert_eq!(connect_notices(&hub, &addr).await.unwrap(), want);

        // A copy never overwrites a newer record.
        let newer = Ages { spk_ms: Some(crate::now_ms()), lrk_ms: Some(crate::now_ms()) };
        set_ages(&hub, &addr, newer).await.unwrap();
        copy_in(&hub, &addr, Ages { spk_ms: Some(old), lrk_ms: None }, true).await.unwrap();
        assert_eq!(read(&hub, &addr).await.unwrap(), (Some(newer), true));
        assert_eq!(
            connect_notices(&hub, &addr).await.unwrap(),
            vec![ServerFrame::PreKeysLow { ec: 0, kyber: 0 }]
        );
    }

    #[test]
    fn ages_round_trip_and_bad_lengths_are_corrupt() {
        for a in [
            Ages::default(),
            Ages { spk_ms: Some(1), lrk_ms: None },
            Ages { spk_ms: Some(u64::MAX), lrk_ms: Some(1_765_000_000_000) },
        ] {
            assert_eq!(Ages::decode(&a.encode()).unwrap(), a);
        }
        for len in [0, 8, 15, 17] {
            assert!(matches!(Ages::decode(&vec![1; len]), Err(StoreError::Corrupt(_))), "{len}");
        }
    }
}
