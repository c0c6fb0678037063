//! Both WebSocket engines (`hushd --ws-engine`): `tungstenite` (the default, `node/src/upgrade.rs`:
//! the node takes the socket over from actix-http at the upgrade) and `actix` (the fallback:
//! actix-ws inside actix-http's dispatcher). The rest of the suite runs on the default; here
//! each engine, on a real node over real sockets, shows the same behaviours: both encodings,
//! header and first-frame authentication, a message relayed and delivered, a ping answered,
//! refusals answered before the upgrade (401 for a bad token, 404 for another path, 400 for a
//! request that is no WebSocket handshake), oversized and non-UTF-8 messages closed with 1009
//! and 1007 while the node keeps serving, and a revocation closing the socket with `LoggedOut`.
//! The whole suite runs on the fallback with `HUSH_WS_ENGINE=actix` (spawned nodes inherit it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hush_client::ClientError;
use hush_protocol::ids::UserId;
use hush_protocol::wire::ServerFrame;
use hush_tests::{drain, next, Node};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// A node on `engine` (its start line in the log says which).
fn start(engine: &str) -> Node {
    let node = Node::start_args(&["--ws-engine", engine]);
    let want = if engine == "actix" { "ws_engine=Actix" } else { "ws_engine=Tungstenite" };
    let says = |log: &str| {
        // Without the terminal colours around field names.
        let mut plain = String::new();
        let mut escape = false;
        for c in log.chars() {
            match (escape, c) {
                (false, '\u{1b}') => escape = true,
                (true, 'm') => escape = false,
                (false, c) => plain.push(c),
                _ => {}
            }
        }
        plain.contains(want)
    };
    for _ in 0..100 {
        if says(&node.log()) {
            return node;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the node does not say it runs the {engine} engine: {}", node.log());
}

/// One `#[tokio::test]` per engine for a scenario `async fn(&str)`.
macro_rules! on_both_engines {
    ($scenario:ident, $tungstenite:ident, $actix:ident) => {
        #[tokio::test]
        async fn $tungstenite() {
            $scenario("tungstenite").await;
        }
        #[tokio::test]
        async fn $actix() {
            $scenario("actix").await;
        }
    };
}

on_both_engines!(
    messages_flow,
    messages_flow_in_both_encodings_tungstenite,
    messages_flow_in_both_encodings_actix
);
on_both_engines!(
    auth_and_refusals,
    first_frame_auth_and_refusals_before_the_upgrade_tungstenite,
    first_frame_auth_and_refusals_before_the_upgrade_actix
);
on_both_engines!(
    bad_messages,
    oversized_and_non_utf8_messages_close_the_socket_only_tungstenite,
    oversized_and_non_utf8_messages_close_the_socket_only_actix
);
on_both_engines!(
    header_auth_raw,
    header_auth_answers_101_then_ready_byte_for_byte_tungstenite,
    header_auth_answers_101_then_ready_byte_for_byte_actix
);
on_both_engines!(
    revocation,
    revocation_closes_the_socket_with_logged_out_tungstenite,
    revocation_closes_the_socket_with_logged_out_actix
);

async fn close_reason(conn: &mut hush_client::Connection) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), conn.next_frame())
            .await
            .expect("no close within 30 s")
        {
            Ok(_) => continue,
            Err(ClientError::Closed(Some(r))) => return r,
            Err(e) => return format!("{e}"),
        }
    }
}

async fn messages_flow(engine: &str) {
    let node = start(engine);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let bob_id = UserId::new("bob").unwrap();
    for json in [false, true] {
        let mut a = alice.connect_encoded(json).await.unwrap();
        drain(&mut a).await;
        let mut b = bob.connect_encoded(json).await.unwrap();
        drain(&mut b).await;
        let body = format!("hello json={json}");
        a.send_message(&bob_id, |_, _| body.clone().into_bytes()).await.unwrap();
        let got = loop {
            if let ServerFrame::Deliver(e) = next(&mut b).await {
                break e;
            }
        };
        assert_eq!(got.content.0, body.as_bytes());
    }
}

async fn auth_and_refusals(engine: &str) {
    let node = start(engine);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let url = format!("ws://{}/v1/ws", node.addr);

    // No header: the first frame authenticates; replies follow the text format.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let auth = format!("{{\"Auth\":{{\"token\":\"{}\"}}}}", alice.login_info().token.expose());
    ws.send(Message::Text(auth.into())).await.unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => texts.push(t.to_string()),
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(texts[0], r#"{"Ready":{"user":"alice","device":1}}"#);
    assert_eq!(texts[1], r#""QueueEmpty""#);
    // A ping is answered with its payload.
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there");
                break;
            }
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    }

    // A wrong token in the Auth frame: closed with 4401.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::Text(r#"{"Auth":{"token":"not-a-token"}}"#.into())).await.unwrap();
    let code = loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(c)))) => break u16::from(c.code),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 4401);

    // A bad token in the header: a JSON 401 before the upgrade.
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().insert("authorization", "Bearer nope".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 401);
            let body: serde_json::Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert!(body["error"].is_string(), "{body}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Another path: 404.
    match tokio_tungstenite::connect_async(format!("ws://{}/v1/other", node.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // An upgrade without the WebSocket key: 400; a plain GET of the socket's path: 400 too.
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/v1/ws", node.url()))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not a WebSocket upgrade"), "{body}");
    let resp = http.get(format!("{}/v1/ws", node.url())).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // The node still serves a socket.
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
}

async fn bad_messages(engine: &str) {
    let node = start(engine);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
    a.send_raw(Message::Binary(vec![0u8; 2 * 1024 * 1024].into())).await.unwrap();
    let reason = close_reason(&mut a).await;
    assert!(reason.starts_with("1009"), "{reason}");

    let mut a = alice.connect_encoded(true).await.unwrap();
    drain(&mut a).await;
    let bad = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    a.send_raw(Message::Frame(bad)).await.unwrap();
    let reason = close_reason(&mut a).await;
    // RFC 6455's code for a text message that is not UTF-8 is 1007; actix-ws reports an
    // unfragmented one as a protocol error (1002), which the actix engine cannot tell apart.
    let want = if engine == "actix" { "1002" } else { "1007" };
    assert!(reason.starts_with(want), "{reason}");

    // Still serving.
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
}

async fn revocation(engine: &str) {
    let node = start(engine);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
    let id = alice.login_info().session_id.clone();
    assert_eq!(alice.revoke_session(&id).await.unwrap(), 1);
    assert_eq!(next(&mut a).await, ServerFrame::LoggedOut { reason: "revoked_by_user".into() });
    let reason = close_reason(&mut a).await;
    assert!(reason.starts_with("4401"), "{reason}");
}

/// A socket authenticated by its header, read as raw bytes: the `101` answer with the chosen
/// subprotocol, then at once the `Ready` and `QueueEmpty` text frames, each exactly once (the
/// tungstenite engine writes the `101` together with `Ready`, `node/src/upgrade.rs`).
async fn header_auth_raw(engine: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = start(engine);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let mut tcp = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        node.addr,
        hush_protocol::wire::SUBPROTOCOL_JSON,
        alice.login_info().token.expose()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let ready = br#"{"Ready":{"user":"alice","device":1}}"#;
    let empty = br#""QueueEmpty""#;
    let want = 2 + ready.len() + 2 + empty.len();
    let mut got = Vec::new();
    let head_end = loop {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= i + 4 + want {
                break i + 4;
            }
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    // RFC 6455's example key and its accept value.
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    assert!(
        head.contains(&format!("sec-websocket-protocol: {}", hush_protocol::wire::SUBPROTOCOL_JSON)),
        "{head}"
    );
    let frames = &got[head_end..head_end + want];
    assert_eq!(&frames[..2], &[0x81, ready.len() as u8]);
    assert_eq!(&frames[2..2 + ready.len()], ready);
    assert_eq!(&frames[2 + ready.len()..4 + ready.len()], &[0x81, empty.len() as u8]);
    assert_eq!(&frames[4 + ready.len()..], empty);
}
