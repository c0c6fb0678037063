//! Bad and abusive clients: a slow consumer is closed and loses nothing; oversized, malformed
//! and out-of-range frames get a typed error or close code and change nothing, while the node
//! keeps serving everyone else. Also the JSON text protocol with an `Auth` frame.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hush_client::ClientError;
use hush_protocol::ids::{DeviceId, RegistrationId, UserId};
use hush_protocol::limits::MAX_CONTENT_BYTES;
use hush_protocol::wire::{ClientFrame, DeviceMessage, ErrorCode, Payload, SendMessage, ServerFrame};
use hush_tests::{drain, next, Node};
use tokio_tungstenite::tungstenite::Message;

fn to_bob(reg: u16, content: Vec<u8>) -> SendMessage {
    SendMessage {
        id: uuid::Uuid::new_v4(),
        to: UserId::new("bob").unwrap(),
        devices: vec![DeviceMessage {
            device: DeviceId::PRIMARY,
            registration_id: RegistrationId::new(u32::from(reg)).unwrap(),
            content: Payload(content),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: vec![],
    }
}

async fn close_code(conn: &mut hush_client::Connection) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_and_loses_nothing() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let carol = node.user(&admin, "carol").await;
    let reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();

    // Bob connects, reads up to QueueEmpty, then stops reading.
    let mut slow = bob.connect().await.unwrap();
    drain(&mut slow).await;
    let mut c = carol.connect().await.unwrap();
    drain(&mut c).await;

    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
    let total = 4000;
    let mut ids = Vec::with_capacity(total);
    let mut inflight = 0;
    let mut sent = 0;
    let mut order = std::collections::HashMap::new();
    while ids.len() < total {
        while inflight < 64 && sent < total {
            let m = to_bob(reg, vec![(sent % 251) as u8; 8 * 1024]);
            order.insert(m.id, sent);
            a.send_frame(&ClientFrame::Send(m)).await.unwrap();
            sent += 1;
            inflight += 1;
        }
        match next(&mut a).await {
            ServerFrame::Accepted { id } => {
                ids.push(id);
                inflight -= 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // Meanwhile everyone else is served: carol gets a message live.
    let cid = a.send_message(&UserId::new("carol").unwrap(), |_, _| b"still here".to_vec()).await.unwrap();
    match next(&mut c).await {
        ServerFrame::Deliver(e) => assert_eq!(e.id, cid),
        other => panic!("{other:?}"),
    }
    // Bob's socket was closed as a slow consumer (after the frames already in flight).
    let reason = close_code(&mut slow).await;
    assert!(reason.starts_with("4429"), "expected 4429, got {reason}");
    // Nothing was acked, so a new connection gets all of it, in order.
    let mut again = bob.connect().await.unwrap();
    let got = drain(&mut again).await;
    let got_ids: Vec<uuid::Uuid> = got.iter().map(|e| e.id).collect();
    assert_eq!(got_ids.len(), ids.len(), "envelopes lost or duplicated");
    if let Some(i) = (0..ids.len()).find(|i| got_ids[*i] != ids[*i]) {
        let pos = ids.iter().position(|x| *x == got_ids[i]);
        panic!(
            "delivery #{i} (sent #{}) was accepted as #{pos:?}: a sender's messages must stay in order",
            order[&got_ids[i]]
        );
    }
    let metrics = reqwest::get(format!("{}/metrics", node.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hush_slow_consumers_total 1"), "{metrics}");
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_change_nothing() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;

    // Garbage binary frame: an error frame, and the socket stays usable.
    a.send_raw(Message::Binary(vec![0xff, 0xff, 0xff, 0x01].into())).await.unwrap();
    match next(&mut a).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::MalformedFrame),
        other => panic!("{other:?}"),
    }
    // Malformed JSON text frame: same.
    a.send_raw(Message::Text("{\"Send\": 42}".into())).await.unwrap();
    match next(&mut a).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::MalformedFrame),
        other => panic!("{other:?}"),
    }
    // Content above 96 KiB: refused, nothing stored.
    let big = to_bob(reg, vec![1; MAX_CONTENT_BYTES + 1]);
    a.send_frame(&ClientFrame::Send(big)).await.unwrap();
    match next(&mut a).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::ContentTooLarge),
        other => panic!("{other:?}"),
    }
    // Exactly 96 KiB is fine.
    let ok = to_bob(reg, vec![2; MAX_CONTENT_BYTES]);
    let ok_id = ok.id;
    a.send_frame(&ClientFrame::Send(ok)).await.unwrap();
    assert_eq!(next(&mut a).await, ServerFrame::Accepted { id: ok_id });
    // Too many acks in one frame.
    a.send_frame(&ClientFrame::Ack { seqs: vec![1; 5000] }).await.unwrap();
    match next(&mut a).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidRequest),
        other => panic!("{other:?}"),
    }
    // A frame above the frame limit closes that socket with 1009...
    a.send_raw(Message::Binary(vec![0u8; 2 * 1024 * 1024].into())).await.unwrap();
    let reason = close_code(&mut a).await;
    assert!(reason.starts_with("1009"), "{reason}");
    // ...and the node keeps serving: bob got exactly the one valid message.
    let mut b = bob.connect().await.unwrap();
    let got = drain(&mut b).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, ok_id);
    let mut a2 = alice.connect().await.unwrap();
    drain(&mut a2).await;
    a2.send_message(&UserId::new("bob").unwrap(), |_, _| b"after".to_vec()).await.unwrap();
    // A client that ends its side of the connection (`end_stream`, a TCP half-close) and keeps
    // the object: the node ends the socket too, and the client reads the end.
    a2.end_stream().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a2.next_frame().await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the node kept the socket open after the client ended its side");
    assert!(matches!(end, ClientError::Closed(_) | ClientError::Transport(_)), "{end:?}");
}

#[tokio::test]
async fn json_protocol_with_auth_frame() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();
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
    let send = format!(
        r#"{{"Send":{{"id":"6f1c2a52-8a3e-4c1e-9a55-3f1f0e1b2c3d","to":"bob","devices":[{{"device":1,"registration_id":{reg},"content":"aGVsbG8=","content_type":"ciphertext"}}]}}}}"#
    );
    ws.send(Message::Text(send.into())).await.unwrap();
    let reply = loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            break t.to_string();
        }
    };
    assert_eq!(reply, r#"{"Accepted":{"id":"6f1c2a52-8a3e-4c1e-9a55-3f1f0e1b2c3d"}}"#);
    let mut b = bob.connect().await.unwrap();
    let got = drain(&mut b).await;
    assert_eq!(got[0].content.0, b"hello");

    // A wrong token in the Auth frame, or another frame first: closed with 4401.
    for first in [r#"{"Auth":{"token":"not-a-token"}}"#.to_owned(), r#"{"Ack":{"seqs":[]}}"#.to_owned()] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.send(Message::Text(first.into())).await.unwrap();
        let code = loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(c)))) => break u16::from(c.code),
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(code, 4401);
    }
    // A bad token in the header is refused before the upgrade.
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().insert("authorization", "Bearer nope".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
