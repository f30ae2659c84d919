//! Shared helpers for the buttress benchmarks.
