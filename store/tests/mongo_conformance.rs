//! The MongoDB backend against a real MongoDB (`HUSH_TEST_MONGODB_URI`) or, without one, an
//! `nx-27017` MongoDB-wire server each test starts on a free port. With neither, the tests fail.
//!
//! Run: `cargo test -p hush-store --features mongo,conformance --test mongo_conformance`.
#![cfg(all(feature = "mongo", feature = "conformance"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use hush_store::conformance::{addr, envelopes};
use hush_store::mongo::MongoStore;
use hush_store::{DeviceRecord, DeviceStore, QueueStore, StoreError};

/// A MongoDB to test against: the one named by `HUSH_TEST_MONGODB_URI`, or an `nx-27017`
/// child process (killed when this is dropped).
struct TestMongo {
    uri: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestMongo {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(2_000);
    text.get(start..).unwrap_or_default().to_owned()
}

impl TestMongo {
    fn start() -> Self {
        if let Ok(uri) = std::env::var("HUSH_TEST_MONGODB_URI") {
            if !uri.trim().is_empty() {
                return Self { uri, child: None, _dir: None };
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let spawned = Command::new("nx-27017")
            .arg("--host")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--log-file")
            .arg(dir.path().join("log"))
            .arg("--pid-file")
            .arg(dir.path().join("pid"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => panic!(
                "no MongoDB to test against: HUSH_TEST_MONGODB_URI is not set and `nx-27017` \
                 could not be started ({e}). Install it with `pip install nx-27017` or point \
                 HUSH_TEST_MONGODB_URI at a MongoDB (e.g. mongodb://127.0.0.1:27017)."
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "nx-27017 exited ({status}) before accepting connections:\n{}\n{}",
                    log_tail(&dir.path().join("stderr")),
                    log_tail(&dir.path().join("log"))
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "nx-27017 did not accept connections on port {port} within 30 s:\n{}",
                    log_tail(&dir.path().join("stderr"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            uri: format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=10000"),
            child: Some(child),
            _dir: Some(dir),
        }
    }

    /// A database name no other test (or earlier run) uses.
    fn fresh_db(test: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("hush_test_{test}_{}", &id[..12])
    }

    async fn store(&self, db: &str) -> MongoStore {
        MongoStore::connect(&self.uri, db)
            .await
            .unwrap_or_else(|e| panic!("connect to {} (db {db}): {e}", self.uri))
    }

    /// Drops a passed test's database on a shared MongoDB (a child server's goes with its
    /// temp dir); a failed test keeps it for inspection.
    async fn cleanup(&self, store: &MongoStore) {
        if self.child.is_none() {
            store.database().drop().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongo_conformance() {
    let mongo = TestMongo::start();
    let store = mongo.store(&TestMongo::fresh_db("conformance")).await;
    hush_store::conformance::run_all(&store).await;
    let stats = hush_store::StoreStats::commit_stats(&store);
    assert!(stats.commits > 0 && stats.buckets[10] == stats.commits);
    mongo.cleanup(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongo_retention_and_bound() {
    let mongo = TestMongo::start();
    let db = TestMongo::fresh_db("retention");
    let store =
        MongoStore::connect_with(&mongo.uri, &db, hush_store::conformance::RETENTION_POLICY).await.unwrap();
    hush_store::conformance::retention_and_bound(&store).await;
    mongo.cleanup(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnect_keeps_sequence_depth_and_schema() {
    let mongo = TestMongo::start();
    let db = TestMongo::fresh_db("reopen");
    let to = addr("acme", "bob", 1);
    let first = {
        let s = mongo.store(&db).await;
        s.enqueue(envelopes(&to, 3)).await.unwrap().last().unwrap().seq
    };
    let s = mongo.store(&db).await;
    assert_eq!(s.depth(), 3, "depth is counted at connect");
    let more = s.enqueue(envelopes(&to, 1)).await.unwrap();
    assert!(more[0].seq > first, "sequence numbers never repeat after reconnect");
    assert_eq!(s.fetch(&to, 0, 10).await.unwrap().len(), 4);
    let meta = s.database().collection::<mongodb::bson::Document>("meta");
    let schema =
        meta.find_one(mongodb::bson::doc! { "_id": "schema" }).await.unwrap().expect("schema document");
    assert_eq!(schema.get_i64("version").ok().or(schema.get_i32("version").ok().map(i64::from)), Some(1));
    // A database written by a newer build is refused.
    meta.update_one(
        mongodb::bson::doc! { "_id": "schema" },
        mongodb::bson::doc! { "$set": { "version": 99i64 } },
    )
    .await
    .unwrap();
    match MongoStore::connect(&mongo.uri, &db).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("newer"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    mongo.cleanup(&s).await;
}

/// Queue documents written before content types (`env` = the envelope without its last field,
/// the one-byte type) read after the upgrade: a 1:1 envelope as `unknown`, a group message's
/// reference as `sender_key`, node events as `event`; new ones keep their type.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_documents_written_before_content_types_still_read() {
    use hush_protocol::wire::{ContentType, GroupStamp, SessionEvent};
    use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
    let mongo = TestMongo::start();
    let db = TestMongo::fresh_db("content_types");
    let s = mongo.store(&db).await;
    let (a, b) = (addr("acme", "bob", 1), addr("acme", "amy", 1));
    let mut items = envelopes(&a, 2);
    items[1].envelope.event =
        Some(SessionEvent::DeviceAdded { device: hush_protocol::ids::DeviceId::PRIMARY });
    items[1].envelope.content_type = ContentType::Event;
    let plain = s.enqueue(items).await.unwrap();
    let mut group = envelopes(&a, 1).remove(0).envelope;
    group.group = Some(GroupStamp {
        group: hush_protocol::ids::GroupId::new("00112233445566778899aabbccddeeff").unwrap(),
        epoch: 2,
    });
    group.content_type = ContentType::SenderKey;
    let shared = s
        .enqueue_shared(hush_store::SharedEnvelope {
            to: vec![a.clone(), b.clone()],
            envelope: group.clone(),
        })
        .await
        .unwrap();
    // Rewrite every queue document as the previous build wrote it: postcard puts the type last,
    // in one byte, so the old record is the new one without its last byte.
    let queue = s.database().collection::<Document>("queue");
    let mut cursor = queue.find(doc! {}).await.unwrap();
    let mut rewritten = 0;
    while cursor.advance().await.unwrap() {
        let d = cursor.deserialize_current().unwrap();
        let Some(Bson::Binary(env)) = d.get("env") else { panic!("no env in {d:?}") };
        let old = env.bytes[..env.bytes.len() - 1].to_vec();
        let env = Binary { subtype: BinarySubtype::Generic, bytes: old };
        queue
            .update_one(doc! { "_id": d.get("_id").unwrap().clone() }, doc! { "$set": { "env": env } })
            .await
            .unwrap();
        rewritten += 1;
    }
    assert_eq!(rewritten, 4);
    let s = mongo.store(&db).await;
    let got = s.fetch(&a, 0, 10).await.unwrap();
    let types: Vec<_> = got.iter().map(|e| (e.seq, e.content_type)).collect();
    assert_eq!(
        types,
        vec![
            (plain[0].seq, ContentType::Unknown),
            (plain[1].seq, ContentType::Event),
            (shared[0], ContentType::SenderKey)
        ]
    );
    assert_eq!(
        (&got[0].content, &got[2].content, &got[2].group),
        (&plain[0].content, &group.content, &group.group)
    );
    assert_eq!(s.fetch(&b, 0, 10).await.unwrap()[0].content_type, ContentType::SenderKey);
    let new = s.enqueue(envelopes(&a, 1)).await.unwrap().remove(0);
    assert_eq!(s.fetch(&a, shared[0], 10).await.unwrap(), vec![new.clone()]);
    assert_eq!(new.content_type, ContentType::PreKey);
    assert_eq!(s.ack(&a, vec![plain[0].seq, plain[1].seq, shared[0]]).await.unwrap(), 3);
    mongo.cleanup(&s).await;
}

/// Two "nodes" (two stores on one database) enqueue concurrently to the same devices while a
/// third reader drains like a device does (always "after the last seq seen"): every envelope
/// gets its own number and the reader sees each exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_nodes_enqueue_concurrently() {
    let mongo = TestMongo::start();
    let db = TestMongo::fresh_db("two_nodes");
    let a = Arc::new(mongo.store(&db).await);
    let b = Arc::new(mongo.store(&db).await);
    let reader_store = Arc::new(mongo.store(&db).await);
    let devices = [addr("acme", "dave", 1), addr("acme", "dave", 2), addr("acme", "erin", 1)];
    const WRITERS_PER_NODE: usize = 8;
    const BATCHES: usize = 12;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = devices
        .iter()
        .cloned()
        .map(|dev| {
            let s = reader_store.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut after = 0u64;
                let mut seen = Vec::new();
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let page = s.fetch(&dev, after, 64).await.unwrap();
                    for e in &page {
                        assert!(e.seq > after, "fetch returns seqs above `after`, in order");
                        after = e.seq;
                        seen.push(e.seq);
                    }
                    if page.is_empty() {
                        if finished {
                            return (dev, seen);
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        })
        .collect();

    let mut writers = Vec::new();
    for (n, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for w in 0..WRITERS_PER_NODE {
            let store = store.clone();
            let devices = devices.clone();
            writers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..BATCHES {
                    // Each batch spans one or two devices, like a send to a user's devices.
                    let mut batch = envelopes(&devices[(n + w + i) % 3], 2);
                    if i % 2 == 0 {
                        batch.extend(envelopes(&devices[(n + w + i + 1) % 3], 1));
                    }
                    let tos: Vec<_> = batch.iter().map(|e| e.to.clone()).collect();
                    let out = store.enqueue(batch).await.unwrap();
                    got.extend(tos.into_iter().zip(out.into_iter().map(|e| e.seq)));
                }
                got
            }));
        }
    }
    let mut enqueued = Vec::new();
    for w in writers {
        enqueued.extend(w.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);

    let all: BTreeSet<u64> = enqueued.iter().map(|(_, s)| *s).collect();
    assert_eq!(all.len(), enqueued.len(), "every envelope got its own seq");
    let mut expected: HashMap<String, Vec<u64>> = HashMap::new();
    for (to, seq) in &enqueued {
        expected.entry(to.to_string()).or_default().push(*seq);
    }
    for r in readers {
        let (dev, seen) = r.await.unwrap();
        let mut want = expected.remove(&dev.to_string()).unwrap_or_default();
        want.sort_unstable();
        assert_eq!(seen, want, "{dev}: every envelope fetched exactly once, in seq order");
        // And the queue as a whole holds exactly those envelopes.
        let stored: Vec<u64> = a.fetch(&dev, 0, 1_000).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(stored, want);
    }
    mongo.cleanup(&a).await;
}

/// Two nodes race to change one user's device set from the same version: exactly one wins,
/// whether the set is being created (version 0) or updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_devices_race_has_one_winner() {
    let mongo = TestMongo::start();
    let db = TestMongo::fresh_db("devices_race");
    let a = Arc::new(mongo.store(&db).await);
    let b = Arc::new(mongo.store(&db).await);
    let tenant = TenantId::new("acme").unwrap();
    let device = |id: u32| DeviceRecord {
        id: DeviceId::new(id).unwrap(),
        registration_id: RegistrationId::new(id).unwrap(),
        name: format!("d{id}"),
        created_ms: 1,
    };
    for round in 0..10u32 {
        let user = UserId::new(format!("user{round}")).unwrap();
        for expected in 0..3u64 {
            let (sa, sb) = (a.clone(), b.clone());
            let (ta, tb) = (tenant.clone(), tenant.clone());
            let (ua, ub) = (user.clone(), user.clone());
            let (da, db_) = (vec![device(1)], vec![device(2)]);
            let fa = tokio::spawn(async move { sa.put_devices(&ta, &ua, expected, da).await });
            let fb = tokio::spawn(async move { sb.put_devices(&tb, &ub, expected, db_).await });
            let (ra, rb) = (fa.await.unwrap(), fb.await.unwrap());
            let winners = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "round {round}, version {expected}: {ra:?} / {rb:?}");
            let loser = if ra.is_ok() { &rb } else { &ra };
            assert!(matches!(loser, Err(StoreError::VersionConflict)), "{loser:?}");
            let won = ra.or(rb).unwrap();
            assert_eq!(won.version, expected + 1);
            assert_eq!(a.get_devices(&tenant, &user).await.unwrap(), won, "the winner's set is stored");
        }
    }
    mongo.cleanup(&a).await;
}

/// An `insert_many` that fails part-way leaves nothing of its batch behind (no transaction: the
/// store deletes the part written), returns the error, and does not hold up later reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_enqueue_leaves_nothing() {
    use mongodb::bson::doc;
    let mongo = TestMongo::start();
    let s = mongo.store(&TestMongo::fresh_db("partial")).await;
    let to = addr("acme", "frank", 1);
    let first = s.enqueue(envelopes(&to, 1)).await.unwrap()[0].seq;
    // Plant a foreign document on the third number the next batch will take, so its ordered
    // insert writes two envelopes and then hits the unique `seq` index.
    let queue = s.database().collection::<mongodb::bson::Document>("queue");
    queue
        .insert_one(doc! { "seq": (first + 3) as i64, "t": "x", "u": "y", "d": 1, "env": "" })
        .await
        .unwrap();
    let depth = s.depth();
    let err = s.enqueue(envelopes(&to, 5)).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(s.depth(), depth, "a failed enqueue does not count");
    let started = Instant::now();
    let left: Vec<u64> = s.fetch(&to, 0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, vec![first], "nothing of the failed batch is visible");
    assert!(started.elapsed() < Duration::from_secs(2), "its in-flight entry was cleared");
    // The next batch works and numbers after the failed block.
    let next = s.enqueue(envelopes(&to, 2)).await.unwrap();
    assert!(next[0].seq > first + 5);
    assert_eq!(s.fetch(&to, 0, 100).await.unwrap().len(), 3);
    mongo.cleanup(&s).await;
}

/// An in-flight entry left by a writer that died holds back its devices' reads only until it
/// expires; an expired one is ignored and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_writers_entry_expires() {
    use mongodb::bson::doc;
    let mongo = TestMongo::start();
    let s = mongo.store(&TestMongo::fresh_db("dead_writer")).await;
    let to = addr("acme", "gina", 1);
    let queued = s.enqueue(envelopes(&to, 2)).await.unwrap();
    let meta = s.database().collection::<mongodb::bson::Document>("meta");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let stale = format!("0|{}|dead|acme/gina/1", now - hush_store::mongo::PENDING_TTL_MS - 1_000);
    meta.update_one(doc! { "_id": "seq" }, doc! { "$push": { "pending": &stale } }).await.unwrap();
    let started = Instant::now();
    assert_eq!(s.fetch(&to, 0, 10).await.unwrap(), queued);
    assert!(started.elapsed() < Duration::from_secs(2), "an expired entry holds nothing back");
    let counter = meta.find_one(doc! { "_id": "seq" }).await.unwrap().unwrap();
    let pending = counter.get_array("pending").unwrap();
    assert!(pending.iter().all(|p| p.as_str() != Some(stale.as_str())), "expired entry removed");
    mongo.cleanup(&s).await;
}
