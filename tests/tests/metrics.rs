//! `/metrics` against a real `hushd`: the OpenMetrics text format (`prometheus-client`), the
//! counters and gauges under their names, and the message path's latency histograms counting
//! what a real exchange did (1:1 sends, a group send, live deliveries).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_protocol::wire::ServerFrame;
use hush_tests::{drain_all, next, Node};

async fn scrape(node: &Node) -> String {
    let r = reqwest::get(format!("{}/metrics", node.url())).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

fn value(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

/// A histogram series (`labels` like `{kind="direct"}` or empty) is well formed: its buckets
/// never decrease, the `+Inf` bucket is its count; returns the count.
fn histogram(text: &str, name: &str, labels: &str) -> u64 {
    let inner = labels.trim_start_matches('{').trim_end_matches('}');
    let mut last = 0.0;
    let mut buckets = 0;
    let in_series =
        |l: &&str| l.starts_with(&format!("{name}_bucket{{")) && (inner.is_empty() || l.contains(inner));
    for l in text.lines().filter(in_series) {
        let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v >= last, "{name}{labels}: buckets decrease at {l}");
        last = v;
        buckets += 1;
    }
    assert!(buckets >= 10, "{name}{labels}: {buckets} buckets in\n{text}");
    let count = value(text, &format!("{name}_count{labels}"));
    let inf = text
        .lines()
        .filter(in_series)
        .find(|l| l.contains("le=\"+Inf\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(inf, Some(count), "{name}{labels}: +Inf bucket");
    if count > 0.0 {
        assert!(value(text, &format!("{name}_sum{labels}")) > 0.0, "{name}{labels}: sum");
    }
    count as u64
}

#[tokio::test]
async fn the_message_path_histograms_count_a_real_exchange() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let mut a = alice.connect().await.unwrap();
    let mut b = bob.connect().await.unwrap();
    drain_all(&mut a).await;
    drain_all(&mut b).await;

    let before = scrape(&node).await;
    assert!(before.ends_with("# EOF\n"), "{before}");
    for name in ["hush_logins_total", "hush_connections", "hush_queue_depth", "hush_store_commit_jobs_total"]
    {
        value(&before, name);
    }
    assert_eq!(histogram(&before, "hush_accept_seconds", "{kind=\"direct\"}"), 0);
    assert_eq!(histogram(&before, "hush_group_fanout_seconds", ""), 0);
    histogram(&before, "hush_store_commit_seconds", "");
    let delivered_before = histogram(&before, "hush_delivery_seconds", "{path=\"local\"}");

    // Five 1:1 messages, each delivered live to bob's open socket.
    for i in 0..5 {
        a.send_message(bob.user(), |_, _| format!("m{i}").into_bytes()).await.unwrap();
    }
    let mut got = 0;
    while got < 5 {
        if let ServerFrame::Deliver(e) = next(&mut b).await {
            got += usize::from(e.event.is_none());
        }
    }
    // One group message.
    let group = alice.create_group("metrics", std::slice::from_ref(bob.user())).await.unwrap();
    let answer = a.send_group(uuid::Uuid::new_v4(), &group.id, group.epoch, b"hi".to_vec()).await.unwrap();
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    loop {
        if let ServerFrame::Deliver(e) = next(&mut b).await {
            if e.group.is_some() {
                break;
            }
        }
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = scrape(&node).await;
    assert!(histogram(&after, "hush_accept_seconds", "{kind=\"direct\"}") >= 5);
    assert_eq!(histogram(&after, "hush_accept_seconds", "{kind=\"group\"}"), 1);
    assert_eq!(histogram(&after, "hush_group_fanout_seconds", ""), 1);
    assert!(histogram(&after, "hush_delivery_seconds", "{path=\"local\"}") >= delivered_before + 6);
    // A node alone receives nothing over a bus.
    assert_eq!(histogram(&after, "hush_delivery_seconds", "{path=\"bus\"}"), 0);
    assert!(value(&after, "hush_envelopes_accepted_total") >= 6.0);
}
