//! Pre-key distribution (issue 5), black-box against real `hushd` processes: libsignal's own
//! keys upload and come back byte-identical and its bad uploads are refused with nothing stored;
//! 1,000 concurrent fetches over three clustered nodes hand out each one-time key once;
//! `PreKeysLow` reaches a device live on another node and at its next connection; the fetch
//! rate limit is cluster-wide; an identity change gives a new registration id and
//! `StaleDevices`; old signed keys get a `RotateKeys` ask. In the clustered tests the third
//! node serves HTTPS/WSS (its own CA), the others plain HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hush_client::{ClientError, Connection, Session};
use hush_protocol::api::{
    DeviceRequest, KeyCounts, PreKey, PreKeyResponse, Secret, SignedPreKey, UploadKeysRequest,
};
use hush_protocol::e2e::KeyPair;
use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::{ClientFrame, DeviceMessage, ErrorCode, Payload, SendMessage, ServerFrame};
use hush_tests::{drain_all, next, Mongo, Node, Redis};
use serde_json::Value;

// ---- helpers -------------------------------------------------------------------------------

fn hexs(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// libsignal's pre-key vectors (the repository's copy of `shared/vectors/libsignal`).
fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/tests/vectors/libsignal/prekeys.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn signed(v: &Value) -> SignedPreKey {
    SignedPreKey {
        key_id: v["key_id"].as_i64().unwrap(),
        public_key: Payload(hexs(v["public_key"].as_str().unwrap())),
        signature: Payload(hexs(v["signature"].as_str().unwrap())),
    }
}

fn one_time(v: &Value) -> PreKey {
    PreKey {
        key_id: v["key_id"].as_i64().unwrap(),
        public_key: Payload(hexs(v["public_key"].as_str().unwrap())),
    }
}

fn password(user: &str) -> Secret {
    Secret::new(format!("{user}-password"))
}

/// Logs in `user` (created by the admin if `create`), as a new device or device `id`.
async fn login(
    node: &Node,
    user: &str,
    id: Option<u32>,
    registration_id: u32,
    identity: Option<Vec<u8>>,
) -> Result<Session, ClientError> {
    node.client()
        .login(
            &TenantId::new("default").unwrap(),
            &UserId::new(user).unwrap(),
            &password(user),
            DeviceRequest {
                id: id.map(|i| DeviceId::new(i).unwrap()),
                registration_id: RegistrationId::new(registration_id).unwrap(),
                name: None,
                identity_key: identity.map(Payload),
                keys: None,
            },
        )
        .await
}

async fn create(admin: &Session, user: &str) {
    admin.create_user(&UserId::new(user).unwrap(), &password(user), false).await.unwrap();
}

/// One HTTP call with the session's token; returns status, `Retry-After` and the JSON body.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    s: &Session,
    body: Option<&UploadKeysRequest>,
) -> (u16, Option<String>, Value) {
    let mut rb = http.request(method, format!("{base}{path}")).bearer_auth(s.login_info().token.expose());
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, retry, v)
}

async fn put_keys(node: &Node, s: &Session, keys: &UploadKeysRequest) -> (u16, Value) {
    let (st, _, v) =
        call(node.client().http(), reqwest::Method::PUT, &node.url(), "/v1/keys", s, Some(keys)).await;
    (st, v)
}

async fn counts(node: &Node, s: &Session) -> KeyCounts {
    let (st, _, v) = call(node.client().http(), reqwest::Method::GET, &node.url(), "/v1/keys", s, None).await;
    assert_eq!(st, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

async fn fetch(node: &Node, s: &Session, user: &str, device: Option<u32>) -> (u16, Option<String>, Value) {
    let path = match device {
        Some(d) => format!("/v1/keys/{user}/{d}"),
        None => format!("/v1/keys/{user}"),
    };
    call(node.client().http(), reqwest::Method::GET, &node.url(), &path, s, None).await
}

fn bundle(v: Value) -> PreKeyResponse {
    serde_json::from_value(v).unwrap()
}

/// Sends a key request over the socket and waits for its answer; other frames are returned too.
async fn ws_request(
    conn: &mut Connection,
    f: ClientFrame,
    id: uuid::Uuid,
) -> (ServerFrame, Vec<ServerFrame>) {
    conn.send_frame(&f).await.unwrap();
    let mut other = Vec::new();
    loop {
        let fr = next(conn).await;
        let mine = match &fr {
            ServerFrame::KeyCounts { id: i, .. } | ServerFrame::PreKeys { id: i, .. } => *i == id,
            ServerFrame::Error { id: Some(i), .. } => *i == id,
            _ => false,
        };
        if mine {
            return (fr, other);
        }
        other.push(fr);
    }
}

async fn ws_upload(conn: &mut Connection, keys: UploadKeysRequest) -> (ServerFrame, Vec<ServerFrame>) {
    let id = uuid::Uuid::new_v4();
    ws_request(conn, ClientFrame::UploadKeys { id, keys }, id).await
}

/// Connects and reads up to `QueueEmpty`, returning every other non-`Deliver` frame seen on
/// the way (key notices may come before or after `QueueEmpty`: see [`quiet_frames`]).
async fn connect(s: &Session) -> Connection {
    let mut c = s.connect().await.unwrap();
    drain_or_notices(&mut c).await;
    c
}

async fn drain_or_notices(c: &mut Connection) -> Vec<ServerFrame> {
    let mut notices = Vec::new();
    loop {
        match next(c).await {
            ServerFrame::QueueEmpty => return notices,
            ServerFrame::Ready { .. } | ServerFrame::Deliver(_) => {}
            f => notices.push(f),
        }
    }
}

/// Frames that arrive within `wait` (used after the point where the node has already sent
/// everything it would send, to show nothing more comes).
async fn quiet_frames(c: &mut Connection, wait: Duration) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while let Ok(f) = tokio::time::timeout(wait, c.next_frame()).await {
        match f.unwrap() {
            ServerFrame::Deliver(_) => {}
            f => out.push(f),
        }
    }
    out
}

/// Connects, and returns the key notices sent at connect: the node sends them right after
/// `Ready`, in parallel with the queue drain, so they are collected until a quiet moment.
async fn connect_notices(s: &Session) -> (Connection, Vec<ServerFrame>) {
    let mut c = s.connect().await.unwrap();
    let mut n = drain_or_notices(&mut c).await;
    n.extend(quiet_frames(&mut c, Duration::from_millis(1500)).await);
    (c, n)
}

/// A device's keys made here: an identity key pair and keys it signed.
struct Keys {
    identity: KeyPair,
}

impl Keys {
    fn new() -> Keys {
        Keys { identity: KeyPair::generate(&mut rand::rngs::OsRng) }
    }
    fn identity(&self) -> Vec<u8> {
        self.identity.public_key().serialize().to_vec()
    }
    fn sign(&self, bytes: &[u8]) -> Payload {
        Payload(self.identity.sign(bytes, &mut rand::rngs::OsRng).to_vec())
    }
    fn ec(&self, id: i64) -> PreKey {
        let k = KeyPair::generate(&mut rand::rngs::OsRng);
        PreKey { key_id: id, public_key: Payload(k.public_key().serialize().to_vec()) }
    }
    fn signed_ec(&self, id: i64) -> SignedPreKey {
        let PreKey { key_id, public_key } = self.ec(id);
        SignedPreKey { key_id, signature: self.sign(&public_key.0), public_key }
    }
    /// A Kyber-1024 public key as the node sees it (type 0x08 and 1568 bytes; it never runs
    /// the KEM), signed.
    fn kyber(&self, id: i64) -> SignedPreKey {
        use rand::RngCore;
        let mut pk = vec![0u8; 1569];
        rand::rngs::OsRng.fill_bytes(&mut pk);
        pk[0] = 0x08;
        SignedPreKey { key_id: id, signature: self.sign(&pk), public_key: Payload(pk) }
    }
    fn upload(&self, ec: std::ops::Range<i64>, kyber: std::ops::Range<i64>) -> UploadKeysRequest {
        UploadKeysRequest {
            signed_pre_key: Some(self.signed_ec(1)),
            pre_keys: ec.map(|i| self.ec(i)).collect(),
            kyber_pre_keys: kyber.map(|i| self.kyber(i)).collect(),
            kyber_last_resort: Some(self.kyber(999_999)),
        }
    }
}

struct Cluster {
    _redis: Redis,
    _mongo: Mongo,
    nodes: Vec<Node>,
}

/// `n` nodes on one Redis and one MongoDB; the third (`node-c`) serves HTTPS/WSS.
fn cluster(n: usize, extra: &[&str]) -> Cluster {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let mut nodes = vec![Node::start_clustered_args(&redis, &mongo, "node-a", extra)];
    for name in ["node-b", "node-c"].iter().take(n - 1) {
        nodes.push(if *name == "node-c" {
            Node::start_clustered_tls_args(&redis, &mongo, name, extra)
        } else {
            Node::start_clustered_args(&redis, &mongo, name, extra)
        });
    }
    if n >= 3 {
        assert!(nodes[2].url().starts_with("https://"), "{}", nodes[2].url());
    }
    hush_tests::share_admin_password(&mut nodes);
    Cluster { _redis: redis, _mongo: mongo, nodes }
}

fn on(node: &Node, s: &Session) -> Session {
    node.client().resume(s.login_info().clone())
}

// ---- tests ---------------------------------------------------------------------------------

/// Every valid libsignal device uploads (as a registered device with its identity key, over
/// HTTP or the WebSocket) and fetches back byte-identical: the signed key, each of the five EC
/// one-time keys once, the Kyber one-time key once, then the last-resort key. Every bad upload
/// is refused with the expected kind and stores nothing: counts and fetches are unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libsignal_keys_round_trip_and_bad_uploads_store_nothing() {
    let node = Node::start();
    let admin = node.admin().await;
    create(&admin, "fetcher").await;
    let fetcher = login(&node, "fetcher", None, 1, None).await.unwrap();
    let mut fetcher_ws = connect(&fetcher).await;
    let v = vectors();
    let devices = v["devices"].as_array().unwrap();
    let upload_of = |d: &Value, ec: usize| UploadKeysRequest {
        signed_pre_key: Some(signed(&d["signed_pre_key"])),
        pre_keys: d["one_time_pre_keys"].as_array().unwrap().iter().take(ec).map(one_time).collect(),
        kyber_pre_keys: vec![signed(&d["kyber_pre_key"])],
        kyber_last_resort: Some(signed(&d["last_resort_kyber"])),
    };

    for (i, d) in devices.iter().enumerate() {
        let user = format!("v{i}");
        create(&admin, &user).await;
        let identity = hexs(d["identity_key"]["public_key"].as_str().unwrap());
        let reg = d["registration_id"].as_u64().unwrap() as u32;
        let s = login(&node, &user, None, reg, Some(identity.clone())).await.unwrap();
        assert_eq!(u32::from(s.login_info().registration_id.get()), reg);
        let keys = upload_of(d, 5);
        // Even devices upload over HTTP (JSON, base64), odd ones over the socket (postcard).
        if i % 2 == 0 {
            let (st, body) = put_keys(&node, &s, &keys).await;
            assert_eq!(st, 200, "{body}");
            assert_eq!(body, serde_json::json!({"ec": 5, "kyber": 1}));
        } else {
            let mut c = connect(&s).await;
            let (answer, _) = ws_upload(&mut c, keys).await;
            assert!(
                matches!(answer, ServerFrame::KeyCounts { counts: KeyCounts { ec: 5, kyber: 1 }, .. }),
                "{answer:?}"
            );
        }
        // The identity key shows in the device listing.
        let list = fetcher.devices(Some(&UserId::new(user.as_str()).unwrap())).await.unwrap();
        assert_eq!(list.devices[0].identity_key.as_ref().map(|k| k.0.clone()), Some(identity.clone()));

        // Five fetches (the bucket holds six), alternately over HTTP and the socket.
        let mut ec_seen = Vec::new();
        let mut kyber_seen = Vec::new();
        for f in 0..5 {
            let b = if f % 2 == 0 {
                let (st, _, body) = fetch(&node, &fetcher, &user, Some(1)).await;
                assert_eq!(st, 200, "{body}");
                bundle(body)
            } else {
                let id = uuid::Uuid::new_v4();
                let req = ClientFrame::GetPreKeys {
                    id,
                    user: UserId::new(user.as_str()).unwrap(),
                    device: Some(DeviceId::PRIMARY),
                };
                match ws_request(&mut fetcher_ws, req, id).await.0 {
                    ServerFrame::PreKeys { keys, .. } => keys,
                    other => panic!("{other:?}"),
                }
            };
            assert_eq!(b.devices.len(), 1);
            let dk = &b.devices[0];
            assert_eq!(dk.identity_key.0, identity, "identity key of v{i}");
            assert_eq!(u32::from(dk.registration_id.get()), reg);
            assert_eq!(dk.signed_pre_key, signed(&d["signed_pre_key"]), "signed pre-key of v{i}");
            ec_seen.push(dk.pre_key.clone().expect("an EC one-time key is left"));
            kyber_seen.push(dk.kyber_pre_key.clone().expect("a Kyber key"));
        }
        let mut want: Vec<PreKey> = d["one_time_pre_keys"].as_array().unwrap().iter().map(one_time).collect();
        want.sort_by_key(|k| k.key_id);
        assert_eq!(ec_seen, want, "each EC one-time key of v{i} once, byte-identical, in key-id order");
        assert_eq!(kyber_seen[0], signed(&d["kyber_pre_key"]));
        for k in &kyber_seen[1..] {
            assert_eq!(
                *k,
                signed(&d["last_resort_kyber"]),
                "the last-resort key once the one-time key is gone"
            );
        }
        assert_eq!(counts(&node, &s).await, KeyCounts { ec: 0, kyber: 0 });
    }

    for (j, b) in v["bad_uploads"].as_array().unwrap().iter().enumerate() {
        let user = format!("b{j}");
        create(&admin, &user).await;
        let good = &devices[b["device_index"].as_u64().unwrap() as usize];
        let identity = hexs(b["identity_key"].as_str().unwrap());
        assert_eq!(identity, hexs(good["identity_key"]["public_key"].as_str().unwrap()));
        let reg = b["registration_id"].as_u64().unwrap() as u32;
        let s = login(&node, &user, None, reg, Some(identity)).await.unwrap();
        // First a valid upload with three of the five EC keys...
        assert_eq!(put_keys(&node, &s, &upload_of(good, 3)).await.0, 200);
        let before = counts(&node, &s).await;
        assert_eq!(before, KeyCounts { ec: 3, kyber: 1 });
        // ...then the bad one, carrying all five (valid) EC keys too: if any part were stored,
        // the count would change.
        let bad = UploadKeysRequest {
            signed_pre_key: Some(signed(&b["signed_pre_key"])),
            pre_keys: good["one_time_pre_keys"].as_array().unwrap().iter().map(one_time).collect(),
            kyber_pre_keys: vec![signed(&b["kyber_pre_key"])],
            kyber_last_resort: Some(signed(&b["last_resort_kyber"])),
        };
        let want = match b["expect"].as_str().unwrap() {
            "reject_invalid_signature" => ("invalid_signature", ErrorCode::InvalidSignature),
            "reject_invalid_key" => ("invalid_key", ErrorCode::InvalidKey),
            "reject_invalid_key_id" => ("invalid_key_id", ErrorCode::InvalidKeyId),
            other => panic!("{other}"),
        };
        if j % 2 == 0 {
            let (st, body) = put_keys(&node, &s, &bad).await;
            assert_eq!(st, 422, "{}: {body}", b["id"]);
            assert_eq!(body["error"], want.0, "{}: {body}", b["id"]);
        } else {
            let mut c = connect(&s).await;
            match ws_upload(&mut c, bad).await.0 {
                ServerFrame::Error { code, .. } => assert_eq!(code, want.1, "{}", b["id"]),
                other => panic!("{}: {other:?}", b["id"]),
            }
        }
        assert_eq!(counts(&node, &s).await, before, "{}: nothing stored", b["id"]);
        let (st, _, body) = fetch(&node, &fetcher, &user, Some(1)).await;
        assert_eq!(st, 200);
        let dk = &bundle(body).devices[0];
        assert_eq!(dk.signed_pre_key, signed(&good["signed_pre_key"]), "{}", b["id"]);
        assert_eq!(dk.kyber_pre_key, Some(signed(&good["kyber_pre_key"])), "{}", b["id"]);
        let mut first3: Vec<PreKey> =
            good["one_time_pre_keys"].as_array().unwrap().iter().take(3).map(one_time).collect();
        first3.sort_by_key(|k| k.key_id);
        assert_eq!(dk.pre_key.as_ref(), Some(&first3[0]), "{}", b["id"]);
    }

    // Other refusals, each storing nothing.
    create(&admin, "plain").await;
    let plain = login(&node, "plain", None, 9, None).await.unwrap();
    let k = Keys::new();
    let (st, body) = put_keys(&node, &plain, &k.upload(0..1, 0..0)).await;
    assert_eq!((st, body["error"].as_str()), (422, Some("invalid_signature")), "no identity key: {body}");
    let mut too_many = k.upload(0..0, 0..0);
    too_many.pre_keys = (0..101).map(|i| k.ec(i)).collect();
    let s = login(&node, "plain", Some(1), 9, Some(k.identity())).await.unwrap();
    let (st, body) = put_keys(&node, &s, &too_many).await;
    assert_eq!((st, body["error"].as_str()), (422, Some("too_many_keys")), "{body}");
    assert_eq!(counts(&node, &s).await, KeyCounts::default());
    assert_eq!(fetch(&node, &fetcher, "plain", Some(1)).await.0, 404, "no signed pre-key yet");
    assert_eq!(fetch(&node, &fetcher, "plain", None).await.0, 404);
    assert_eq!(fetch(&node, &fetcher, "nobody", Some(1)).await.0, 404);
    assert_eq!(fetch(&node, &fetcher, "v0", Some(9)).await.0, 404);
    assert_eq!(fetch(&node, &fetcher, "v0", Some(0)).await.0, 400);
    let bad_identity = login(&node, "plain", Some(1), 9, Some(vec![5; 32])).await;
    assert!(
        matches!(bad_identity, Err(ClientError::Http { status: 400, .. })),
        "{:?}",
        bad_identity.map(|_| ())
    );
    // A full upload of 100 + 100 keys passes the JSON body limit.
    let (st, body) = put_keys(&node, &s, &k.upload(0..100, 0..100)).await;
    assert_eq!((st, body), (200, serde_json::json!({"ec": 100, "kyber": 100})));
}

/// 1,000 concurrent fetches of one device, spread over three clustered nodes (Redis bus,
/// MongoDB-wire store), after 100 EC and 100 Kyber one-time keys were uploaded: each one-time
/// key is handed out exactly once; every other fetch gets no EC key and the last-resort key.
///
/// The rate limit is per (requesting device, target device): here all fetches come from one
/// requesting device, so the nodes run with `--prekey-fetch-bucket 5000` (the limit itself is
/// tested in `prekeys_low_and_the_rate_limit_across_nodes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_fetches_over_three_nodes_hand_out_each_key_once() {
    let c = cluster(3, &["--prekey-fetch-bucket", "5000"]);
    let admin = c.nodes[0].admin().await;
    create(&admin, "alice").await;
    create(&admin, "bob").await;
    let k = Keys::new();
    let alice = login(&c.nodes[0], "alice", None, 77, Some(k.identity())).await.unwrap();
    let upload = k.upload(0..100, 1000..1100);
    let (st, body) = put_keys(&c.nodes[0], &alice, &upload).await;
    assert_eq!((st, body), (200, serde_json::json!({"ec": 100, "kyber": 100})));
    let bob = login(&c.nodes[1], "bob", None, 78, None).await.unwrap();

    // One HTTP client per node: the third one trusts that node's CA (HTTPS).
    let https: Vec<reqwest::Client> = c.nodes.iter().map(|n| n.client().http().clone()).collect();
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url()).collect();
    let t0 = std::time::Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (http, base, bob) = (https[i % 3].clone(), urls[i % 3].clone(), bob.clone());
            tokio::spawn(async move {
                call(&http, reqwest::Method::GET, &base, "/v1/keys/alice/1", &bob, None).await
            })
        })
        .collect();
    let mut ec = HashMap::new();
    let mut kyber = HashMap::new();
    let mut last_resort = 0;
    for t in tasks {
        let (st, _, body) = t.await.unwrap();
        assert_eq!(st, 200, "{body}");
        let b = bundle(body);
        let d = &b.devices[0];
        assert_eq!(d.signed_pre_key, upload.signed_pre_key.clone().unwrap());
        if let Some(p) = &d.pre_key {
            *ec.entry(p.key_id).or_insert(0) += 1;
            assert_eq!(p, &upload.pre_keys[p.key_id as usize], "byte-identical");
        }
        let ky = d.kyber_pre_key.clone().unwrap();
        if ky == upload.kyber_last_resort.clone().unwrap() {
            last_resort += 1;
        } else {
            *kyber.entry(ky.key_id).or_insert(0) += 1;
            assert_eq!(ky, upload.kyber_pre_keys[(ky.key_id - 1000) as usize], "byte-identical");
        }
    }
    eprintln!("1,000 fetches over 3 nodes in {:?}", t0.elapsed());
    assert_eq!(ec.len(), 100, "exactly 100 distinct EC one-time keys");
    assert!(ec.values().all(|&n| n == 1), "no EC key twice");
    assert_eq!(ec.keys().copied().collect::<HashSet<_>>(), (0..100).collect::<HashSet<_>>());
    assert_eq!(kyber.len(), 100, "exactly 100 distinct Kyber one-time keys");
    assert!(kyber.values().all(|&n| n == 1), "no Kyber key twice");
    assert_eq!(last_resort, 900, "the other fetches got the last-resort key");
    assert_eq!(counts(&c.nodes[2], &alice).await, KeyCounts::default());
}

/// `PreKeysLow` reaches a device connected to another node as soon as fetches leave it below
/// the threshold (once), and reaches it at its next connection when it was offline; an upload
/// clears it. The fetch bucket (6, one back every 10 minutes) is shared by the nodes: the
/// seventh fetch is refused on a third node with 429 and `Retry-After`, and over the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekeys_low_and_the_rate_limit_across_nodes() {
    let c = cluster(3, &[]);
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let admin = a.admin().await;
    create(&admin, "alice").await;
    create(&admin, "bob").await;
    let k = Keys::new();
    let alice = login(a, "alice", None, 77, Some(k.identity())).await.unwrap();
    let bob = login(b, "bob", None, 78, None).await.unwrap();

    // Alice on node A uploads 12 + 12 one-time keys over her socket.
    let mut ca = connect(&alice).await;
    let (answer, _) = ws_upload(&mut ca, k.upload(0..12, 100..112)).await;
    assert!(matches!(answer, ServerFrame::KeyCounts { counts: KeyCounts { ec: 12, kyber: 12 }, .. }));
    // Bob fetches from node B: 11 left, 10 left (not below 10), 9 left -> the push.
    let first_take = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(fetch(b, &bob, "alice", Some(1)).await.0, 200);
    }
    assert!(quiet_frames(&mut ca, Duration::from_millis(500)).await.is_empty());
    assert_eq!(fetch(b, &bob, "alice", Some(1)).await.0, 200);
    assert_eq!(next(&mut ca).await, ServerFrame::PreKeysLow { ec: 9, kyber: 9 });
    // Once per low period: the next fetch pushes nothing more.
    assert_eq!(fetch(b, &bob, "alice", None).await.0, 200);
    assert!(quiet_frames(&mut ca, Duration::from_millis(1000)).await.is_empty());

    // Alice refills (which clears the notice), then goes offline.
    let (answer, _) = ws_upload(&mut ca, k.upload(0..12, 100..112)).await;
    assert!(matches!(answer, ServerFrame::KeyCounts { counts: KeyCounts { ec: 12, kyber: 12 }, .. }));
    ca.close().await.unwrap();
    // Bob's fifth and sixth fetches, on node C: 10 left, no notice yet.
    assert_eq!(fetch(cc, &bob, "alice", Some(1)).await.0, 200);
    assert_eq!(fetch(cc, &bob, "alice", Some(1)).await.0, 200);
    let (cb, notices) = connect_notices(&on(b, &alice)).await;
    assert!(notices.is_empty(), "{notices:?}");
    cb.close().await.unwrap();

    // The bucket of six is used up (2 + 1 + 1 on B, 2 on C): the seventh fetch is refused on
    // node A, which served none of them.
    let (st, retry, body) = fetch(a, &bob, "alice", Some(1)).await;
    assert_eq!(st, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    // One token comes back 600 s after the first of the six takes: at most 600 s from now,
    // and no earlier than 600 s after that take (measured here, so a slow machine only moves
    // the lower bound by the time it really took; 1 s for rounding).
    let since_first = first_take.elapsed().as_secs() + 1;
    assert!((600 - since_first..=600).contains(&retry), "{retry} (first take {since_first} s ago)");
    assert_eq!(body["retry_after_s"].as_u64(), Some(retry));
    let mut bob_ws = connect(&on(cc, &bob)).await;
    let id = uuid::Uuid::new_v4();
    let req = ClientFrame::GetPreKeys { id, user: UserId::new("alice").unwrap(), device: None };
    match ws_request(&mut bob_ws, req, id).await.0 {
        // Its own code over the socket, with the wait as a field (as HTTP's `retry_after_s`).
        ServerFrame::Error { code: ErrorCode::PrekeyRateLimited, message, retry_after_s, .. } => {
            assert!(message.contains("retry after"), "{message}");
            let ws_retry = retry_after_s.expect("retry_after_s on a pre-key rate limit");
            assert!(ws_retry <= retry && ws_retry + 5 >= retry, "{ws_retry} vs HTTP's {retry}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(counts(a, &alice).await, KeyCounts { ec: 10, kyber: 10 }, "refused fetches consume nothing");
    // Another requesting device has its own bucket.
    create(&admin, "carol").await;
    let carol = login(cc, "carol", None, 79, None).await.unwrap();
    assert_eq!(fetch(cc, &carol, "alice", Some(1)).await.0, 200);
    assert_eq!(counts(a, &alice).await, KeyCounts { ec: 9, kyber: 9 });
    // Alice was offline when that fetch left her below the threshold: she hears it when she
    // connects (to node C this time), and again each time until she uploads.
    let (c1, notices) = connect_notices(&on(cc, &alice)).await;
    assert_eq!(notices, vec![ServerFrame::PreKeysLow { ec: 9, kyber: 9 }]);
    c1.close().await.unwrap();
    let (mut c2, notices) = connect_notices(&on(a, &alice)).await;
    assert_eq!(notices, vec![ServerFrame::PreKeysLow { ec: 9, kyber: 9 }]);
    let _ = ws_upload(&mut c2, k.upload(0..50, 100..150)).await;
    c2.close().await.unwrap();
    let (_c3, notices) = connect_notices(&on(b, &alice)).await;
    assert!(notices.is_empty(), "{notices:?}");
}

/// A device that logs in again with a new identity key gets a new registration id (even when
/// it asks for the old one), its pre-keys are gone, and a sender still holding the old
/// registration id gets `StaleDevices`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_change_means_new_registration_id_and_stale_devices() {
    let node = Node::start();
    let admin = node.admin().await;
    create(&admin, "alice").await;
    create(&admin, "bob").await;
    let k1 = Keys::new();
    let alice = login(&node, "alice", None, 100, Some(k1.identity())).await.unwrap();
    assert_eq!(put_keys(&node, &alice, &k1.upload(0..5, 0..5)).await.0, 200);
    let bob = login(&node, "bob", None, 200, None).await.unwrap();
    let mut cb = connect(&bob).await;
    let send = |reg: u16| {
        ClientFrame::Send(SendMessage {
            id: uuid::Uuid::new_v4(),
            to: UserId::new("alice").unwrap(),
            devices: vec![DeviceMessage {
                device: DeviceId::PRIMARY,
                registration_id: RegistrationId::new(u32::from(reg)).unwrap(),
                content: Payload(b"x".to_vec()),
                content_type: hush_protocol::wire::ContentType::Ciphertext,
            }],
            sync: vec![],
        })
    };
    cb.send_frame(&send(100)).await.unwrap();
    assert!(matches!(next(&mut cb).await, ServerFrame::Accepted { .. }));

    // Same identity, same registration id: nothing changes.
    let again = login(&node, "alice", Some(1), 100, Some(k1.identity())).await.unwrap();
    assert_eq!(again.login_info().registration_id.get(), 100);
    assert_eq!(counts(&node, &again).await, KeyCounts { ec: 5, kyber: 5 });

    // New identity, old registration id: the node picks another one.
    let k2 = Keys::new();
    let changed = login(&node, "alice", Some(1), 100, Some(k2.identity())).await.unwrap();
    let new_reg = changed.login_info().registration_id.get();
    assert_ne!(new_reg, 100);
    // Its old keys are gone and it has no new ones yet: senders are not shown it.
    let list = bob.devices(Some(&UserId::new("alice").unwrap())).await.unwrap();
    assert!(list.devices.is_empty(), "a device without keys is listed: {list:?}");
    assert_eq!(counts(&node, &changed).await, KeyCounts::default(), "old pre-keys deleted");
    assert_eq!(fetch(&node, &bob, "alice", Some(1)).await.0, 404);
    // Keys signed by the old identity are refused now.
    assert_eq!(put_keys(&node, &changed, &k1.upload(0..1, 0..1)).await.1["error"], "invalid_signature");

    // Bob still holds the old registration id: StaleDevices, nothing stored.
    let stale_send = send(100);
    let ClientFrame::Send(SendMessage { id, .. }) = &stale_send else { unreachable!() };
    let id = *id;
    cb.send_frame(&stale_send).await.unwrap();
    match next(&mut cb).await {
        ServerFrame::StaleDevices { id: i, user, stale } => {
            assert_eq!(i, id);
            assert_eq!(user.as_str(), "alice");
            assert_eq!(stale, vec![DeviceId::PRIMARY]);
        }
        other => panic!("{other:?}"),
    }
    // With the new one (and new keys), it goes through.
    assert_eq!(put_keys(&node, &changed, &k2.upload(0..5, 0..5)).await.0, 200);
    let list = bob.devices(Some(&UserId::new("alice").unwrap())).await.unwrap();
    assert_eq!(list.devices[0].registration_id.get(), new_reg);
    assert_eq!(list.devices[0].identity_key.as_ref().map(|k| k.0.clone()), Some(k2.identity()));
    let (st, _, body) = fetch(&node, &bob, "alice", Some(1)).await;
    assert_eq!(st, 200);
    let b = bundle(body);
    assert_eq!(b.devices[0].identity_key.0, k2.identity());
    assert_eq!(b.devices[0].registration_id.get(), new_reg);
    cb.send_frame(&send(new_reg)).await.unwrap();
    assert!(matches!(next(&mut cb).await, ServerFrame::Accepted { .. }));
    // A new identity with a new registration id keeps the one asked for.
    let k3 = Keys::new();
    let s = login(&node, "alice", Some(1), 4321, Some(k3.identity())).await.unwrap();
    assert_eq!(s.login_info().registration_id.get(), 4321);
    // Alice's device got both accepted messages, and nothing of the refused one.
    let mut ca = s.connect().await.unwrap();
    let got: Vec<_> = drain_all(&mut ca).await.into_iter().filter(|e| e.event.is_none()).collect();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e.id != id));

    // A removed device's identity and keys go with it: a new device that gets the same id
    // (without an identity key) has none of them.
    let k4 = Keys::new();
    let linked = login(&node, "alice", None, 300, Some(k4.identity())).await.unwrap();
    assert_eq!(linked.device().get(), 2);
    assert_eq!(put_keys(&node, &linked, &k4.upload(0..5, 0..5)).await.0, 200);
    assert_eq!(fetch(&node, &bob, "alice", Some(2)).await.0, 200);
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/devices/2", node.url()))
        .bearer_auth(s.login_info().token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let again = login(&node, "alice", None, 301, None).await.unwrap();
    assert_eq!(again.device().get(), 2);
    assert_eq!(fetch(&node, &bob, "alice", Some(2)).await.0, 404);
    assert_eq!(counts(&node, &again).await, KeyCounts::default());
    // Alice's own listing shows it without an identity key; senders are not shown it.
    let list = again.devices(None).await.unwrap();
    assert!(list.devices.iter().find(|d| d.id.get() == 2).unwrap().identity_key.is_none());
    let list = bob.devices(Some(&UserId::new("alice").unwrap())).await.unwrap();
    assert!(list.devices.iter().all(|d| d.id.get() != 2), "{list:?}");
}

/// With a rotation age of 5 s: fresh keys get no ask; once they are older, `RotateKeys` comes
/// after `Ready`, and after an upload that left the other one old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_asked_for_old_signed_keys() {
    let node = Node::start_args(&["--prekey-rotation-age-secs", "5"]);
    let admin = node.admin().await;
    create(&admin, "alice").await;
    let k = Keys::new();
    let alice = login(&node, "alice", None, 5, Some(k.identity())).await.unwrap();
    // A device without keys hears nothing.
    let (c, notices) = connect_notices(&alice).await;
    assert!(notices.is_empty(), "{notices:?}");
    c.close().await.unwrap();
    assert_eq!(put_keys(&node, &alice, &k.upload(0..20, 0..20)).await.0, 200);
    let (c, notices) = connect_notices(&alice).await;
    assert!(notices.is_empty(), "fresh keys: {notices:?}");
    c.close().await.unwrap();

    tokio::time::sleep(Duration::from_millis(5200)).await;
    let (mut c, notices) = connect_notices(&alice).await;
    assert_eq!(notices, vec![ServerFrame::RotateKeys { signed_pre_key: true, last_resort: true }]);
    // A new signed pre-key alone: the last-resort key is still old, so the node asks again.
    let only_spk = UploadKeysRequest { signed_pre_key: Some(k.signed_ec(2)), ..Default::default() };
    let (answer, mut other) = ws_upload(&mut c, only_spk).await;
    assert!(matches!(answer, ServerFrame::KeyCounts { counts: KeyCounts { ec: 20, kyber: 20 }, .. }));
    other.extend(quiet_frames(&mut c, Duration::from_millis(1000)).await);
    assert_eq!(other, vec![ServerFrame::RotateKeys { signed_pre_key: false, last_resort: true }]);
    let only_lrk = UploadKeysRequest { kyber_last_resort: Some(k.kyber(7)), ..Default::default() };
    let (_, mut other) = ws_upload(&mut c, only_lrk).await;
    other.extend(quiet_frames(&mut c, Duration::from_millis(1000)).await);
    assert!(other.is_empty(), "{other:?}");
    c.close().await.unwrap();
    let (_c, notices) = connect_notices(&alice).await;
    assert!(notices.is_empty(), "{notices:?}");
}
