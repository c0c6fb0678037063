//! The behaviour every store backend must show. Each backend's tests call [`run_all`]; a
//! backend passes only if every check here holds on it. Built for tests only (the
//! `conformance` feature or `cfg(test)`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use hush_protocol::ids::{DeviceAddress, DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::{ContentType, Envelope, Payload};

use crate::*;

pub fn addr(t: &str, u: &str, d: u32) -> DeviceAddress {
    DeviceAddress::new(TenantId::new(t).unwrap(), UserId::new(u).unwrap(), DeviceId::new(d).unwrap())
}

pub fn envelopes(to: &DeviceAddress, n: usize) -> Vec<NewEnvelope> {
    (0..n)
        .map(|i| NewEnvelope {
            to: to.clone(),
            envelope: Envelope {
                seq: 0,
                id: uuid::Uuid::from_u128(i as u128 + 1),
                from: UserId::new("alice").unwrap(),
                from_device: DeviceId::PRIMARY,
                // Accepted now: within any retention a conformance store is opened with.
                timestamp_ms: now_ms() + i as u64,
                sync: false,
                content: Payload(vec![i as u8; 16]),
                event: None,
                group: None,
                // Both backends keep each envelope's type.
                content_type: if i % 2 == 0 { ContentType::PreKey } else { ContentType::Ciphertext },
            },
        })
        .collect()
}

/// The policy [`retention_and_bound`] needs its store opened with.
pub const RETENTION_POLICY: QueuePolicy =
    QueuePolicy { retention: std::time::Duration::from_secs(60), max_per_device: 3 };

/// Envelopes accepted two minutes ago: past [`RETENTION_POLICY`]'s retention.
fn old_envelopes(to: &DeviceAddress, n: usize) -> Vec<NewEnvelope> {
    let mut v = envelopes(to, n);
    for e in &mut v {
        e.envelope.timestamp_ms -= 120_000;
    }
    v
}

/// Retention and the per-device bound, on an empty store opened with [`RETENTION_POLICY`]
/// (the sweep stops at the first envelope within the retention, so it needs a queue whose
/// oldest envelopes are the expired ones).
pub async fn retention_and_bound(s: &dyn Store) {
    let (d1, d2, d3) = (addr("ret", "ann", 1), addr("ret", "ann", 2), addr("ret", "ben", 1));
    let full = |r: Result<Vec<Envelope>>| match r {
        Err(StoreError::QueueFull(d)) => d,
        other => panic!("expected QueueFull, got {other:?}"),
    };
    s.enqueue(old_envelopes(&d1, 2)).await.unwrap();
    let mut shared = old_envelopes(&d1, 1).remove(0).envelope;
    shared.content = Payload(vec![7; 100]);
    s.enqueue_shared(SharedEnvelope { to: vec![d1.clone(), d2.clone()], envelope: shared }).await.unwrap();
    assert_eq!((s.depth(), s.shared_contents().await.unwrap()), (4, 1));
    // Read-time expiry: nothing past the retention is fetched, swept or not.
    assert!(s.fetch(&d1, 0, 100).await.unwrap().is_empty(), "an expired envelope was fetched");
    assert!(s.fetch(&d2, 0, 100).await.unwrap().is_empty(), "an expired shared envelope was fetched");

    // d1 holds 3 = the bound: one more is refused and nothing is stored.
    assert_eq!(full(s.enqueue(envelopes(&d1, 1)).await), vec![d1.clone()]);
    assert_eq!(s.depth(), 4);
    // All or none across devices: d3 gets nothing from a batch that d1 refuses.
    let mut batch = envelopes(&d3, 1);
    batch.extend(envelopes(&d1, 1));
    assert_eq!(full(s.enqueue(batch).await), vec![d1.clone()]);
    assert!(s.fetch(&d3, 0, 100).await.unwrap().is_empty(), "a refused batch stored part of itself");
    // A batch larger than the bound on its own is refused too.
    assert_eq!(full(s.enqueue(envelopes(&d3, 4)).await), vec![d3.clone()]);
    let mut g = envelopes(&d2, 1).remove(0).envelope;
    g.content = Payload(vec![8; 100]);
    let r = s.enqueue_shared(SharedEnvelope { to: vec![d2.clone(), d1.clone()], envelope: g.clone() }).await;
    assert!(matches!(&r, Err(StoreError::QueueFull(d)) if d == &vec![d1.clone()]), "{r:?}");
    assert_eq!(s.shared_contents().await.unwrap(), 1, "a refused shared envelope stored its content");
    let fresh = s.enqueue(envelopes(&d2, 1)).await.unwrap();
    s.enqueue(envelopes(&d3, 1)).await.unwrap();
    assert_eq!(s.depth(), 6);

    // The sweep deletes the expired ones (bounded batches), releasing the shared content.
    assert_eq!(s.expire(1).await.unwrap(), 1, "a batch is bounded by its limit");
    assert_eq!(s.expire(100).await.unwrap(), 3);
    assert_eq!(s.expire(100).await.unwrap(), 0, "nothing within the retention is swept");
    assert_eq!(s.shared_contents().await.unwrap(), 0, "the last expired reference released the content");
    assert_eq!(s.depth(), 2);
    assert_eq!(s.fetch(&d2, 0, 100).await.unwrap(), fresh, "what is within the retention stays");
    assert_eq!(s.fetch(&d3, 0, 100).await.unwrap().len(), 1);
    // The expired ones left room: d1 takes three again, not a fourth.
    s.enqueue(envelopes(&d1, 3)).await.unwrap();
    assert_eq!(full(s.enqueue(envelopes(&d1, 1)).await), vec![d1.clone()]);
    assert_eq!(s.fetch(&d1, 0, 100).await.unwrap().len(), 3);
}

/// Runs every conformance check against `store`, which must be empty.
pub async fn run_all(store: &dyn Store) {
    accounts(store).await;
    devices(store).await;
    sessions(store).await;
    session_listing(store).await;
    audit_log(store).await;
    queues(store).await;
    concurrent_enqueue(store).await;
    shared_queue(store).await;
    bulk_revocation(store).await;
    kv_basics(store).await;
    kv_batches(store).await;
    audit_batch(store).await;
    kv_prefixes(store).await;
    kv_take_exactly_once(store).await;
}

async fn accounts(s: &dyn Store) {
    let t = TenantId::new("acme").unwrap();
    assert!(s.list_tenants(10).await.unwrap().is_empty());
    s.create_tenant(TenantRecord { name: t.clone(), created_ms: 1 }).await.unwrap();
    assert!(matches!(
        s.create_tenant(TenantRecord { name: t.clone(), created_ms: 2 }).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_tenant(&t).await.unwrap().unwrap().created_ms, 1);
    assert_eq!(s.list_tenants(10).await.unwrap().len(), 1);
    assert!(s.get_tenant(&TenantId::new("nope").unwrap()).await.unwrap().is_none());
    for name in ["carol", "alice", "bob"] {
        s.create_user(UserRecord {
            tenant: t.clone(),
            user: UserId::new(name).unwrap(),
            password_hash: format!("hash-{name}"),
            admin: name == "alice",
            created_ms: 5,
        })
        .await
        .unwrap();
    }
    let dup = UserRecord {
        tenant: t.clone(),
        user: UserId::new("bob").unwrap(),
        password_hash: "other".into(),
        admin: true,
        created_ms: 6,
    };
    assert!(matches!(s.create_user(dup).await, Err(StoreError::Conflict)));
    let bob = s.get_user(&t, &UserId::new("bob").unwrap()).await.unwrap().unwrap();
    assert_eq!(bob.password_hash, "hash-bob");
    assert!(!bob.admin);
    // Same user name in another tenant is another user.
    let other = TenantId::new("other").unwrap();
    assert!(s.get_user(&other, &UserId::new("bob").unwrap()).await.unwrap().is_none());
    s.create_user(UserRecord { tenant: other.clone(), ..bob.clone() }).await.unwrap();
    let names: Vec<String> =
        s.list_users(&t, None, 10).await.unwrap().into_iter().map(|u| u.user.to_string()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let page: Vec<String> = s
        .list_users(&t, Some(&UserId::new("alice").unwrap()), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.user.to_string())
        .collect();
    assert_eq!(page, ["bob"]);
}

async fn devices(s: &dyn Store) {
    let t = TenantId::new("acme").unwrap();
    let u = UserId::new("bob").unwrap();
    let empty = s.get_devices(&t, &u).await.unwrap();
    assert_eq!(empty.version, 0);
    assert!(empty.devices.is_empty());
    let d1 = DeviceRecord {
        id: DeviceId::PRIMARY,
        registration_id: RegistrationId::new(7).unwrap(),
        name: "phone".into(),
        created_ms: 1,
    };
    let set = s.put_devices(&t, &u, 0, vec![d1.clone()]).await.unwrap();
    assert_eq!(set.version, 1);
    // A stale writer loses and changes nothing.
    let d2 = DeviceRecord { id: DeviceId::new(2).unwrap(), ..d1.clone() };
    assert!(matches!(s.put_devices(&t, &u, 0, vec![d2.clone()]).await, Err(StoreError::VersionConflict)));
    assert_eq!(s.get_devices(&t, &u).await.unwrap().devices, vec![d1.clone()]);
    let set = s.put_devices(&t, &u, 1, vec![d2.clone(), d1.clone()]).await.unwrap();
    assert_eq!(set.version, 2);
    let read = s.get_devices(&t, &u).await.unwrap();
    assert_eq!(read.devices, vec![d1, d2], "sorted by id");
}

async fn sessions(s: &dyn Store) {
    let rec = SessionRecord {
        id: "sess-1".into(),
        token_hash: TokenHash([9; 32]),
        device: addr("acme", "bob", 1),
        created_ms: 10,
        user_agent: Some("test".into()),
        ip: None,
        revoked: None,
    };
    s.create_session(rec.clone()).await.unwrap();
    assert!(matches!(s.create_session(rec.clone()).await, Err(StoreError::Conflict)));
    assert_eq!(s.session_by_token(&TokenHash([9; 32])).await.unwrap().unwrap(), rec);
    assert!(s.session_by_token(&TokenHash([8; 32])).await.unwrap().is_none());
    assert_eq!(s.session_by_id("sess-1").await.unwrap().unwrap(), rec);
    let r1 = Revocation { at_ms: 20, reason: "logout".into() };
    let after = s.revoke_session("sess-1", r1.clone()).await.unwrap().unwrap();
    assert_eq!(after.revoked, Some(r1.clone()));
    // Idempotent: the first revocation stays.
    let again =
        s.revoke_session("sess-1", Revocation { at_ms: 30, reason: "other".into() }).await.unwrap().unwrap();
    assert_eq!(again.revoked, Some(r1));
    assert!(s.session_by_token(&TokenHash([9; 32])).await.unwrap().unwrap().revoked.is_some());
    assert!(s
        .revoke_session("missing", Revocation { at_ms: 1, reason: "x".into() })
        .await
        .unwrap()
        .is_none());
}

fn session(id: &str, hash: u8, tenant: &str, user: &str, device: u32, created: u64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        token_hash: TokenHash([hash; 32]),
        device: addr(tenant, user, device),
        created_ms: created,
        user_agent: None,
        ip: Some("127.0.0.1".into()),
        revoked: None,
    }
}

async fn session_listing(s: &dyn Store) {
    let t = TenantId::new("listing").unwrap();
    let u = UserId::new("erin").unwrap();
    s.create_session(session("l-b", 101, "listing", "erin", 1, 30)).await.unwrap();
    s.create_session(session("l-a", 102, "listing", "erin", 2, 20)).await.unwrap();
    s.create_session(session("l-c", 103, "listing", "frank", 1, 10)).await.unwrap();
    s.create_session(session("l-d", 104, "elsewhere", "erin", 1, 5)).await.unwrap();
    let mine: Vec<String> = s.sessions_of_user(&t, &u).await.unwrap().into_iter().map(|x| x.id).collect();
    assert_eq!(mine, ["l-a", "l-b"], "a user's sessions, oldest first, never another tenant's");
    let active: Vec<String> =
        s.active_sessions(&t, None, 10).await.unwrap().into_iter().map(|x| x.id).collect();
    assert_eq!(active, ["l-a", "l-b", "l-c"]);
    let page: Vec<String> =
        s.active_sessions(&t, Some("l-a"), 1).await.unwrap().into_iter().map(|x| x.id).collect();
    assert_eq!(page, ["l-b"]);
    s.revoke_session("l-b", Revocation { at_ms: 40, reason: "revoked_by_user".into() }).await.unwrap();
    let active: Vec<String> =
        s.active_sessions(&t, None, 10).await.unwrap().into_iter().map(|x| x.id).collect();
    assert_eq!(active, ["l-a", "l-c"], "revoked sessions leave the active list");
    let mine = s.sessions_of_user(&t, &u).await.unwrap();
    assert_eq!(mine.len(), 2, "revoked sessions stay listed for the user");
    assert!(mine.iter().find(|x| x.id == "l-b").unwrap().revoked.is_some());
}

async fn audit_log(s: &dyn Store) {
    let t = TenantId::new("audited").unwrap();
    let rec = |actor: &str, action: &str| AuditRecord {
        id: 0,
        tenant: t.clone(),
        at_ms: 1,
        actor: Some(UserId::new(actor).unwrap()),
        actor_session: None,
        action: action.into(),
        target: None,
        ip: None,
        result: "ok".into(),
    };
    let a = s.append_audit(rec("ann", "login")).await.unwrap();
    let b = s.append_audit(rec("bea", "login")).await.unwrap();
    let c = s.append_audit(rec("ann", "session.revoke")).await.unwrap();
    assert!(a < b && b < c, "ids increase");
    s.append_audit(AuditRecord { tenant: TenantId::new("other").unwrap(), ..rec("ann", "login") })
        .await
        .unwrap();
    let all = s.audit(&t, &AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [c, b, a], "newest first, one tenant only");
    let anns = s
        .audit(&t, &AuditQuery { actor: Some(UserId::new("ann").unwrap()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(anns.iter().map(|r| r.id).collect::<Vec<_>>(), [c, a]);
    let logins = s
        .audit(&t, &AuditQuery { action: Some("login".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(logins.len(), 2);
    let page = s.audit(&t, &AuditQuery { before: Some(c), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
}

async fn queues(s: &dyn Store) {
    let bob1 = addr("acme", "bob", 1);
    let bob2 = addr("acme", "bob", 2);
    let other_tenant = addr("other", "bob", 1);
    let depth0 = s.depth();
    let a = s.enqueue(envelopes(&bob1, 5)).await.unwrap();
    let b = s.enqueue(envelopes(&bob2, 2)).await.unwrap();
    assert_eq!(a.len(), 5);
    assert!(a.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    assert!(b[0].seq > a[4].seq);
    assert_eq!(s.depth(), depth0 + 7);
    let got = s.fetch(&bob1, 0, 100).await.unwrap();
    assert_eq!(got, a, "fetch returns exactly what was enqueued, in order");
    assert!(s.fetch(&other_tenant, 0, 100).await.unwrap().is_empty(), "no cross-tenant reads");
    let page = s.fetch(&bob1, a[1].seq, 2).await.unwrap();
    assert_eq!(page, a[2..4].to_vec());
    let n = s.ack(&bob1, vec![a[0].seq, a[2].seq, 999_999_999]).await.unwrap();
    assert_eq!(n, 2);
    // Acking another device's seq deletes nothing.
    assert_eq!(s.ack(&bob2, vec![a[1].seq]).await.unwrap(), 0);
    let left: Vec<u64> = s.fetch(&bob1, 0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, vec![a[1].seq, a[3].seq, a[4].seq]);
    assert_eq!(s.purge(&bob1).await.unwrap(), 3);
    assert!(s.fetch(&bob1, 0, 100).await.unwrap().is_empty());
    assert_eq!(s.fetch(&bob2, 0, 100).await.unwrap().len(), 2);
    assert_eq!(s.depth(), depth0 + 2);
}

/// Group messages: the content is stored once, every device's queue refers to it, it reads back
/// like a 1:1 envelope (in seq order with them), and it goes with its last reference.
async fn shared_queue(s: &dyn Store) {
    let d1 = addr("grp", "dan", 1);
    let d2 = addr("grp", "dan", 2);
    let e1 = addr("grp", "eve", 1);
    let depth0 = s.depth();
    let blobs0 = s.shared_contents().await.unwrap();
    assert!(s
        .enqueue_shared(SharedEnvelope { to: vec![], envelope: envelopes(&d1, 1)[0].envelope.clone() })
        .await
        .unwrap()
        .is_empty());
    let before = s.enqueue(envelopes(&d1, 1)).await.unwrap();
    let mut template = envelopes(&d1, 1).remove(0).envelope;
    template.id = uuid::Uuid::from_u128(0xfeed);
    template.content = Payload(vec![0xab; 3000]);
    template.group = Some(hush_protocol::wire::GroupStamp {
        group: hush_protocol::ids::GroupId::new("00112233445566778899aabbccddeeff").unwrap(),
        epoch: 4,
    });
    template.content_type = ContentType::SenderKey;
    let seqs = s
        .enqueue_shared(SharedEnvelope {
            to: vec![d1.clone(), d2.clone(), e1.clone()],
            envelope: template.clone(),
        })
        .await
        .unwrap();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > before[0].seq, "seqs increase");
    let after = s.enqueue(envelopes(&d1, 1)).await.unwrap();
    assert_eq!(s.depth(), depth0 + 5);
    assert_eq!(s.shared_contents().await.unwrap(), blobs0 + 1, "stored once");
    let got = s.fetch(&d1, 0, 100).await.unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![before[0].seq, seqs[0], after[0].seq]);
    let mut want = template.clone();
    want.seq = seqs[0];
    assert_eq!(got[1], want, "a reference reads back as the full envelope");
    assert_eq!(got[0], before[0]);
    for (a, seq) in [(&d2, seqs[1]), (&e1, seqs[2])] {
        let got = s.fetch(a, 0, 100).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, &got[0].content), (seq, &template.content));
    }
    // The copy for a device of the sender itself is a sync copy.
    let own = addr("grp", "alice", 2);
    let sync =
        s.enqueue_shared(SharedEnvelope { to: vec![own.clone()], envelope: template.clone() }).await.unwrap();
    let got = s.fetch(&own, 0, 100).await.unwrap();
    assert!(got[0].sync && !s.fetch(&d2, 0, 100).await.unwrap()[0].sync);
    assert_eq!(s.ack(&own, sync).await.unwrap(), 1);
    // Another device's reference is not this device's to ack.
    assert_eq!(s.ack(&d2, vec![seqs[2]]).await.unwrap(), 0);
    // Acks mixing both kinds; the content stays while a reference is left.
    assert_eq!(s.ack(&d1, vec![before[0].seq, seqs[0]]).await.unwrap(), 2);
    assert_eq!(s.ack(&d1, vec![seqs[0]]).await.unwrap(), 0, "acked once");
    assert_eq!(s.shared_contents().await.unwrap(), blobs0 + 1);
    assert_eq!(s.ack(&d2, vec![seqs[1]]).await.unwrap(), 1);
    assert_eq!(s.fetch(&e1, 0, 100).await.unwrap()[0].content, template.content, "still readable");
    assert_eq!(s.purge(&e1).await.unwrap(), 1, "purge releases a reference too");
    assert_eq!(s.shared_contents().await.unwrap(), blobs0, "gone with its last reference");
    assert_eq!(s.fetch(&d1, 0, 100).await.unwrap(), after);
    assert_eq!(s.ack(&d1, vec![after[0].seq]).await.unwrap(), 1);
    assert_eq!(s.depth(), depth0);
    // Concurrent acks of the references of many contents: every one released exactly once.
    let to: Vec<DeviceAddress> = (1..=4).map(|d| addr("grp", "fan", d)).collect();
    let mut all = Vec::new();
    for _ in 0..5 {
        let seqs =
            s.enqueue_shared(SharedEnvelope { to: to.clone(), envelope: template.clone() }).await.unwrap();
        all.push(seqs);
    }
    assert_eq!(s.shared_contents().await.unwrap(), blobs0 + 5);
    let acks = to.iter().enumerate().map(|(i, a)| {
        let mine: Vec<u64> = all.iter().map(|seqs| seqs[i]).collect();
        s.ack(a, mine)
    });
    let acked: u64 = futures_join_all(acks).await.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(acked, 20);
    assert_eq!(s.shared_contents().await.unwrap(), blobs0);
    assert_eq!(s.depth(), depth0);
}

async fn concurrent_enqueue(s: &dyn Store) {
    // Many concurrent writers: every envelope lands once, per-device order follows seq.
    let to = addr("acme", "carol", 1);
    let futs = (0..50).map(|_| s.enqueue(envelopes(&to, 4)));
    let results = futures_join_all(futs).await;
    let mut seqs: Vec<u64> = results.into_iter().flat_map(|r| r.unwrap()).map(|e| e.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 200);
    let fetched: Vec<u64> = s.fetch(&to, 0, 1000).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(fetched, seqs);
}

async fn bulk_revocation(s: &dyn Store) {
    let t = TenantId::new("bulk").unwrap();
    let other = TenantId::new("elsewhere").unwrap();
    let mk = |tenant: &TenantId, i: u8| SessionRecord {
        id: format!("bulk{i:03}"),
        token_hash: TokenHash([i; 32]),
        device: DeviceAddress::new(
            tenant.clone(),
            UserId::new(format!("u{}", i % 3)).unwrap(),
            DeviceId::PRIMARY,
        ),
        created_ms: 1_000 + i as u64,
        user_agent: None,
        ip: None,
        revoked: None,
    };
    for i in 200..230u8 {
        s.create_session(mk(&t, i)).await.unwrap();
    }
    s.create_session(mk(&other, 230)).await.unwrap();
    // One already revoked by someone else keeps its first revocation.
    let first = Revocation { at_ms: 5, reason: "logout".into() };
    s.revoke_session("bulk200", first.clone()).await.unwrap();
    let r = Revocation { at_ms: 9, reason: "revoked_by_admin".into() };
    let mut ids: Vec<String> = (200..231u8).map(|i| format!("bulk{i:03}")).collect();
    ids.push("bulk201".into()); // duplicate
    ids.push("nosuch".into());
    let mut got: Vec<String> = s
        .revoke_sessions(&t, ids.clone(), r.clone())
        .await
        .unwrap()
        .into_iter()
        .map(|x| {
            assert_eq!(x.revoked.as_ref(), Some(&r));
            x.id
        })
        .collect();
    got.sort();
    // 29 of this tenant (not the one revoked before, not the other tenant's, not unknown).
    assert_eq!(got, (201..230u8).map(|i| format!("bulk{i:03}")).collect::<Vec<_>>());
    // Every read path sees the revocation; the other tenant's session is untouched.
    assert_eq!(s.session_by_id("bulk205").await.unwrap().unwrap().revoked, Some(r.clone()));
    assert_eq!(s.session_by_token(&TokenHash([206; 32])).await.unwrap().unwrap().revoked, Some(r.clone()));
    assert_eq!(s.session_by_id("bulk200").await.unwrap().unwrap().revoked, Some(first));
    assert!(s.session_by_id("bulk230").await.unwrap().unwrap().revoked.is_none());
    assert!(s.active_sessions(&t, None, 100).await.unwrap().is_empty());
    let of_user = s.sessions_of_user(&t, &UserId::new("u1").unwrap()).await.unwrap();
    assert!(!of_user.is_empty() && of_user.iter().all(|x| x.revoked.is_some()));
    // A single revocation afterwards returns the bulk one; a second bulk call revokes nothing.
    let again = Revocation { at_ms: 11, reason: "logout".into() };
    assert_eq!(s.revoke_session("bulk207", again.clone()).await.unwrap().unwrap().revoked, Some(r));
    assert!(s.revoke_sessions(&t, ids, again).await.unwrap().is_empty());
}

async fn kv_basics(s: &dyn Store) {
    assert!(s.kv_get("t", "a").await.unwrap().is_none());
    // Create-only, then compare-and-set on the version.
    assert_eq!(s.kv_put("t", "a", 0, b"one".to_vec()).await.unwrap(), 1);
    assert!(matches!(s.kv_put("t", "a", 0, b"x".to_vec()).await, Err(StoreError::VersionConflict)));
    assert!(matches!(s.kv_put("t", "a", 5, b"x".to_vec()).await, Err(StoreError::VersionConflict)));
    assert!(matches!(s.kv_put("t", "missing", 1, b"x".to_vec()).await, Err(StoreError::VersionConflict)));
    assert_eq!(s.kv_put("t", "a", 1, b"two".to_vec()).await.unwrap(), 2);
    let e = s.kv_get("t", "a").await.unwrap().unwrap();
    assert_eq!((e.key.as_str(), e.version, e.value.as_slice()), ("a", 2, &b"two"[..]));
    // Namespaces are separate.
    assert!(s.kv_get("u", "a").await.unwrap().is_none());
    // Unconditional set continues the version.
    assert_eq!(s.kv_set("t", "a", b"three".to_vec()).await.unwrap(), 3);
    assert_eq!(s.kv_set("t", "b", b"new".to_vec()).await.unwrap(), 1);
    // Delete: a wrong expected version deletes nothing.
    assert!(!s.kv_delete("t", "a", Some(2)).await.unwrap());
    assert!(s.kv_delete("t", "a", Some(3)).await.unwrap());
    assert!(!s.kv_delete("t", "a", None).await.unwrap());
    assert!(s.kv_delete("t", "b", None).await.unwrap());
    assert!(s.kv_get("t", "a").await.unwrap().is_none());
    // Bad keys are refused and write nothing.
    for bad in ["", "has space", "tab\t", "é"] {
        assert!(matches!(s.kv_set("t", bad, vec![1]).await, Err(StoreError::InvalidKey(_))), "{bad:?}");
    }
    assert!(matches!(
        s.kv_set("t", &"k".repeat(MAX_KV_KEY + 1), vec![1]).await,
        Err(StoreError::InvalidKey(_))
    ));
    assert_eq!(s.kv_count("t", "").await.unwrap(), 0);
}

async fn kv_batches(s: &dyn Store) {
    s.kv_set("batch", "b", b"old".to_vec()).await.unwrap();
    let entries: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("k{i:03}"), vec![i as u8])).collect();
    let mut with_b = entries.clone();
    with_b.push(("b".into(), b"new".to_vec()));
    s.kv_set_many("batch", with_b).await.unwrap();
    assert_eq!(s.kv_count("batch", "k").await.unwrap(), 300);
    let e = s.kv_get("batch", "k007").await.unwrap().unwrap();
    assert_eq!((e.version, e.value.as_slice()), (1, &[7u8][..]));
    // An existing key is overwritten and its version continues.
    let b = s.kv_get("batch", "b").await.unwrap().unwrap();
    assert_eq!((b.version, b.value.as_slice()), (2, &b"new"[..]));
    // A bad key or too many entries refuses the whole batch: nothing is written.
    let bad = vec![("fine".to_owned(), vec![1]), ("has space".to_owned(), vec![1])];
    assert!(matches!(s.kv_set_many("batch", bad).await, Err(StoreError::InvalidKey(_))));
    assert!(s.kv_get("batch", "fine").await.unwrap().is_none());
    let many: Vec<(String, Vec<u8>)> = (0..=MAX_KV_REPLACE).map(|i| (format!("m{i}"), vec![])).collect();
    assert!(matches!(s.kv_set_many("batch", many).await, Err(StoreError::InvalidKey(_))));
    assert_eq!(s.kv_count("batch", "m").await.unwrap(), 0);
    // Deletes: absent keys are skipped and not counted; other namespaces are untouched.
    s.kv_set("other", "k000", vec![9]).await.unwrap();
    let keys: Vec<String> = (0..150).map(|i| format!("k{i:03}")).chain(["absent".to_owned()]).collect();
    assert_eq!(s.kv_delete_many("batch", keys).await.unwrap(), 150);
    assert_eq!(s.kv_count("batch", "k").await.unwrap(), 150);
    assert!(s.kv_get("batch", "k000").await.unwrap().is_none());
    assert!(s.kv_get("batch", "k150").await.unwrap().is_some());
    assert!(s.kv_get("other", "k000").await.unwrap().is_some());
    assert!(matches!(
        s.kv_delete_many("batch", vec!["k200".into(), "bad key".into()]).await,
        Err(StoreError::InvalidKey(_))
    ));
    assert!(s.kv_get("batch", "k200").await.unwrap().is_some());
    assert_eq!(s.kv_delete_many("batch", Vec::new()).await.unwrap(), 0);
}

async fn audit_batch(s: &dyn Store) {
    let t = TenantId::new("batched").unwrap();
    let rec = |target: usize| AuditRecord {
        id: 0,
        tenant: t.clone(),
        at_ms: 1,
        actor: None,
        actor_session: None,
        action: "session.revoke".into(),
        target: Some(format!("session:{target}")),
        ip: None,
        result: "ok".into(),
    };
    let before = s.append_audit(rec(0)).await.unwrap();
    s.append_audits((1..=250).map(rec).collect()).await.unwrap();
    s.append_audits(Vec::new()).await.unwrap();
    let after = s.append_audit(rec(251)).await.unwrap();
    let all = s.audit(&t, &AuditQuery { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 252);
    // Newest first; ids increase in the batch's order, between the single appends around it.
    let ids: Vec<u64> = all.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!((all[0].id, all[251].id), (after, before));
    let targets: Vec<String> = all.iter().rev().map(|r| r.target.clone().unwrap()).collect();
    let expected: Vec<String> = (0..=251).map(|i| format!("session:{i}")).collect();
    assert_eq!(targets, expected);
}

async fn kv_prefixes(s: &dyn Store) {
    for k in ["dev/1/ec/003", "dev/1/ec/001", "dev/1/ec/002", "dev/1/ecx", "dev/10/ec/001", "dev/2/ec/001"] {
        s.kv_set("p", k, k.as_bytes().to_vec()).await.unwrap();
    }
    s.kv_set("q", "dev/1/ec/000", vec![0]).await.unwrap();
    let keys = |v: Vec<KvEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.kv_scan("p", "dev/1/ec/", None, 100).await.unwrap()),
        ["dev/1/ec/001", "dev/1/ec/002", "dev/1/ec/003"]
    );
    assert_eq!(keys(s.kv_scan("p", "dev/1/ec/", Some("dev/1/ec/001"), 1).await.unwrap()), ["dev/1/ec/002"]);
    assert_eq!(keys(s.kv_scan("p", "dev/1/", Some("dev/1/ec/003"), 10).await.unwrap()), ["dev/1/ecx"]);
    assert_eq!(s.kv_count("p", "dev/1/").await.unwrap(), 4);
    assert_eq!(s.kv_count("p", "dev/").await.unwrap(), 6);
    assert_eq!(s.kv_count("p", "").await.unwrap(), 6);
    assert_eq!(s.kv_scan("p", "dev/1/ec/", None, 100).await.unwrap()[0].value, b"dev/1/ec/001");
    // Replace a subtree: old entries go, new ones come, versions continue, others untouched.
    s.kv_replace_prefix(
        "p",
        "dev/1/ec/",
        vec![("dev/1/ec/002".into(), b"n2".to_vec()), ("dev/1/ec/009".into(), b"n9".to_vec())],
    )
    .await
    .unwrap();
    let now = s.kv_scan("p", "dev/1/ec/", None, 100).await.unwrap();
    assert_eq!(keys(now.clone()), ["dev/1/ec/002", "dev/1/ec/009"]);
    assert_eq!((now[0].version, now[1].version), (2, 1));
    assert_eq!(s.kv_count("p", "dev/").await.unwrap(), 5);
    // A key outside the prefix, or a duplicate, is refused and changes nothing.
    for bad in [
        vec![("dev/2/x".to_string(), vec![1])],
        vec![("dev/1/ec/1".into(), vec![1]), ("dev/1/ec/1".into(), vec![2])],
    ] {
        assert!(matches!(s.kv_replace_prefix("p", "dev/1/ec/", bad).await, Err(StoreError::InvalidKey(_))));
    }
    assert_eq!(keys(s.kv_scan("p", "dev/1/ec/", None, 100).await.unwrap()), ["dev/1/ec/002", "dev/1/ec/009"]);
    // An empty replacement deletes the subtree.
    s.kv_replace_prefix("p", "dev/1/ec/", Vec::new()).await.unwrap();
    assert_eq!(s.kv_count("p", "dev/1/ec/").await.unwrap(), 0);
    assert_eq!(s.kv_count("q", "").await.unwrap(), 1);
}

async fn kv_take_exactly_once(s: &dyn Store) {
    let entries: Vec<(String, Vec<u8>)> =
        (0..40u32).map(|i| (format!("otk/a/{i:08}"), i.to_be_bytes().to_vec())).collect();
    s.kv_replace_prefix("k", "otk/a/", entries).await.unwrap();
    s.kv_set("k", "otk/b/00000001", vec![9]).await.unwrap();
    // The first take returns the lowest key.
    let first = s.kv_take_first("k", "otk/a/").await.unwrap().unwrap();
    assert_eq!(first.key, "otk/a/00000000");
    // 60 concurrent takers for 39 entries: each entry handed out once, 21 get nothing.
    let results = futures_join_all((0..60).map(|_| s.kv_take_first("k", "otk/a/"))).await;
    let mut got: Vec<String> = results.into_iter().filter_map(|r| r.unwrap()).map(|e| e.key).collect();
    assert_eq!(got.len(), 39);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 39);
    assert!(s.kv_take_first("k", "otk/a/").await.unwrap().is_none());
    // Another prefix is untouched.
    assert_eq!(s.kv_count("k", "otk/").await.unwrap(), 1);
}

async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    // Poll all futures concurrently on the current task (no extra dependency needed).
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}
