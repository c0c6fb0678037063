//! Frame codec benches: `ClientFrame::Send` (256 B and 1 KiB payloads) and
//! `ServerFrame::Deliver`, postcard (binary frames) against JSON (text frames).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hush_protocol::ids::{DeviceId, RegistrationId, UserId};
use hush_protocol::wire::{ClientFrame, DeviceMessage, Envelope, Payload, SendMessage, ServerFrame};
use std::hint::black_box;

fn send(len: usize) -> Option<ClientFrame> {
    Some(ClientFrame::Send(SendMessage {
        id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        to: UserId::new("load-4711").ok()?,
        devices: vec![DeviceMessage {
            device: DeviceId::PRIMARY,
            registration_id: RegistrationId::new(4712).ok()?,
            content: Payload((0..len).map(|i| i as u8).collect()),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: vec![],
    }))
}

fn deliver(len: usize) -> Option<ServerFrame> {
    Some(ServerFrame::Deliver(Envelope {
        seq: 1_234_567,
        id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        from: UserId::new("load-815").ok()?,
        from_device: DeviceId::PRIMARY,
        timestamp_ms: 1_795_000_000_000,
        sync: false,
        content: Payload((0..len).map(|i| i as u8).collect()),
        event: None,
        group: None,
        content_type: hush_protocol::wire::ContentType::Ciphertext,
    }))
}

fn client_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_send");
    for len in [256usize, 1024] {
        let Some(f) = send(len) else { return };
        let (Ok(bin), Ok(text)) = (f.encode_binary(), f.encode_text()) else {
            return;
        };
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("postcard_encode", len), &f, |b, f| {
            b.iter(|| black_box(f).encode_binary())
        });
        g.bench_with_input(BenchmarkId::new("postcard_decode", len), &bin, |b, x| {
            b.iter(|| ClientFrame::decode_binary(black_box(x)))
        });
        g.bench_with_input(BenchmarkId::new("json_encode", len), &f, |b, f| {
            b.iter(|| black_box(f).encode_text())
        });
        g.bench_with_input(BenchmarkId::new("json_decode", len), &text, |b, x| {
            b.iter(|| ClientFrame::decode_text(black_box(x)))
        });
    }
    g.finish();
}

fn server_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_deliver");
    for len in [256usize, 1024] {
        let Some(f) = deliver(len) else { return };
        let (Ok(bin), Ok(text)) = (f.encode_binary(), f.encode_text()) else {
            return;
        };
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("postcard_encode", len), &f, |b, f| {
            b.iter(|| black_box(f).encode_binary())
        });
        g.bench_with_input(BenchmarkId::new("postcard_decode", len), &bin, |b, x| {
            b.iter(|| ServerFrame::decode_binary(black_box(x)))
        });
        g.bench_with_input(BenchmarkId::new("json_encode", len), &f, |b, f| {
            b.iter(|| black_box(f).encode_text())
        });
        g.bench_with_input(BenchmarkId::new("json_decode", len), &text, |b, x| {
            b.iter(|| ServerFrame::decode_text(black_box(x)))
        });
    }
    g.finish();
}

criterion_group!(benches, client_frames, server_frames);
criterion_main!(benches);
