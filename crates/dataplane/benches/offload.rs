//! Userspace cost of the offload work per 64 KiB TCP super-frame, beside a
//! plain `memcpy` of the same bytes as the baseline (segmentation and
//! coalescing each copy the payload once and checksum it once).
//!
//! `cargo bench -p weft-dataplane --bench offload`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use weft_dataplane::csum::Checksum;
use weft_dataplane::decap::Decapsulator;
use weft_dataplane::gso::segment;
use weft_dataplane::vnet::{CsumOffload, Gso, GsoKind, Offload};

const MSS: u16 = 1398;

/// An Ethernet/IPv4/TCP (timestamps) super-frame with `len` payload bytes, as a TAP hands it out.
fn superframe(len: usize) -> (Vec<u8>, Offload) {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 7, 0x80, 0x10, 0x01, 0xf5, 0, 0, 0,
        0, // TCP
        1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // NOP NOP TS
    ];
    f.extend((0..len).map(|i| (i * 7) as u8));
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    let c = weft_dataplane::csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let p = Checksum::pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, (f.len() - 34) as u32);
    f[50..52].copy_from_slice(&p.fold().to_be_bytes());
    let off = Offload {
        csum: Some(CsumOffload {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::Tcp4,
            size: MSS,
            hdr_len: 66,
            ecn: false,
        }),
        data_valid: false,
    };
    (f, off)
}

fn offload(c: &mut Criterion) {
    let payload = 45 * usize::from(MSS);
    let (frame, off) = superframe(payload);
    let prefix = [0x08, 0, 0, 0, 0, 0, 100, 0];
    let mut g = c.benchmark_group("superframe_64k");
    g.throughput(Throughput::Bytes(payload as u64));

    let mut copy = vec![0u8; frame.len()];
    g.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&frame));
            black_box(&copy);
        })
    });
    g.bench_function("checksum", |b| {
        b.iter(|| {
            let mut s = Checksum::new();
            s.add_bytes(black_box(&frame));
            black_box(s.fold())
        })
    });
    let mut out = Vec::with_capacity(128 << 10);
    g.bench_function("segment_into_vxlan_gso_buffer", |b| {
        b.iter(|| {
            out.clear();
            black_box(segment(black_box(&frame), &off, &prefix, &mut out).unwrap());
        })
    });
    out.clear();
    let r = segment(&frame, &off, &prefix, &mut out).unwrap();
    let mut d = Decapsulator::new(true);
    g.bench_function("decap_and_coalesce_45_segments", |b| {
        b.iter(|| {
            d.clear();
            d.push(0, black_box(&out), 1u8, Some(r.stride as u16));
            d.finish();
            black_box(d.merged_mut(0).unwrap().segments)
        })
    });
    g.finish();
}

criterion_group!(benches, offload);
criterion_main!(benches);
