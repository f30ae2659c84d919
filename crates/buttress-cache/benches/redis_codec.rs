//! The measurement behind the Redis store's default codec: encode and
//! decode time, and encoded size, of a representative cached value (a
//! product record as an API or a database row gives it) for postcard,
//! bincode 2 (serde, standard configuration), MessagePack (rmp-serde,
//! compact and with field names) and JSON. The figures are in
//! docs/redis.md.
//!
//! `cargo bench -p buttress-cache --features redis --bench redis_codec`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    sku: String,
    name: String,
    description: String,
    price_cents: u64,
    currency: String,
    stock: u32,
    rating: f32,
    tags: Vec<String>,
    updated_at_ms: i64,
    active: bool,
    dimensions_mm: Option<[u16; 3]>,
}

fn product() -> Product {
    Product {
        id: 48_213_007,
        sku: "SKU-048213-XL-BLU".to_owned(),
        name: "Merino wool crew-neck sweater, navy blue".to_owned(),
        description: "A midweight sweater knitted from extra-fine merino wool: \
            warm without bulk, soft next to the skin, and machine washable on \
            a wool cycle. Ribbed cuffs and hem; regular fit; true to size."
            .to_owned(),
        price_cents: 8_950,
        currency: "EUR".to_owned(),
        stock: 214,
        rating: 4.6,
        tags: ["knitwear", "merino", "winter", "menswear"]
            .map(str::to_owned)
            .to_vec(),
        updated_at_ms: 1_767_225_600_000,
        active: true,
        dimensions_mm: Some([320, 240, 40]),
    }
}

type Encode = fn(&Product) -> Vec<u8>;
type Decode = fn(&[u8]) -> Product;

fn codecs() -> [(&'static str, Encode, Decode); 5] {
    [
        (
            "postcard",
            |p| postcard::to_allocvec(p).unwrap(),
            |b| postcard::from_bytes(b).unwrap(),
        ),
        (
            "bincode2",
            |p| bincode::serde::encode_to_vec(p, bincode::config::standard()).unwrap(),
            |b| {
                bincode::serde::decode_from_slice(b, bincode::config::standard())
                    .unwrap()
                    .0
            },
        ),
        (
            "rmp_compact",
            |p| rmp_serde::to_vec(p).unwrap(),
            |b| rmp_serde::from_slice(b).unwrap(),
        ),
        (
            "rmp_named",
            |p| rmp_serde::to_vec_named(p).unwrap(),
            |b| rmp_serde::from_slice(b).unwrap(),
        ),
        (
            "json",
            |p| serde_json::to_vec(p).unwrap(),
            |b| serde_json::from_slice(b).unwrap(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let p = product();
    for (name, encode, decode) in codecs() {
        let bytes = encode(&p);
        assert_eq!(decode(&bytes), p, "{name} round-trips");
        eprintln!("codec {name}: {} bytes", bytes.len());
    }
    let mut g = c.benchmark_group("redis_codec/encode");
    for (name, encode, _) in codecs() {
        g.bench_function(name, |b| b.iter(|| encode(black_box(&p))));
    }
    g.finish();
    let mut g = c.benchmark_group("redis_codec/decode");
    for (name, encode, decode) in codecs() {
        let bytes = encode(&p);
        g.bench_function(name, |b| b.iter(|| decode(black_box(&bytes))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
