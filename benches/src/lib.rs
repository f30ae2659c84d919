//! Criterion benchmarks for the buttress layers, side by side with their
//! peers. The code is in the bench targets (`benches/breaker.rs`, with the
//! subjects in `benches/subjects/`) and in `tests/allocs.rs`, which counts
//! heap allocations per call; figures and method are in
//! `docs/benchmarks.md`. This library itself is empty.
