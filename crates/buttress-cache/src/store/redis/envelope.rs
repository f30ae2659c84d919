//! The envelope: one Redis value holding an entry's value and its
//! timestamps, so that a hit is one `GET`.
//!
//! Layout (little-endian integers, times in Unix-epoch milliseconds):
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0      | magic `0xB7` |
//! | 1      | envelope format ([`FORMAT`]) |
//! | 2      | codec of the value ([`Codec::id`]) |
//! | 3      | flags: bit 0, a negative entry |
//! | 4..8   | CRC-32 of bytes 0..4 and 8.. |
//! | 8..16  | fresh until |
//! | 16..24 | revalidate until |
//! | 24..32 | stale until |
//! | 32..40 | early refresh from (XFetch) |
//! | 40..48 | version |
//! | 48..52 | load time, microseconds |
//! | 52..56 | weight |
//! | 56..   | the value, in its codec |
//!
//! Anything else under the store's keys (another program's value, a
//! truncated or altered one, a format this build does not know) fails
//! [`decode`] and is a miss: never served, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress_core::time::Instant;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{Entry, later, origin};

const MAGIC: u8 = 0xB7;
/// The envelope format this build writes and reads.
pub(crate) const FORMAT: u8 = 1;
/// Bytes before the value.
pub(crate) const HEADER: usize = 56;
const NEGATIVE: u8 = 1;

/// How a [`RedisStore`](super::RedisStore) encodes values.
///
/// A store writes with its codec and reads either (the envelope says
/// which one wrote a value), so instances can move from one to the other
/// without a flush. `docs/redis.md` gives the measurements behind the
/// default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// [postcard](https://docs.rs/postcard): a compact binary serde
    /// format with a stable, documented wire format (varint integers, no
    /// field names). The default.
    #[default]
    Postcard,
    /// JSON (`serde_json`): larger and slower, but readable with
    /// `redis-cli GET` after the 56-byte header. For debugging.
    Json,
}

impl Codec {
    /// The codec's byte in the envelope.
    pub(crate) const fn id(self) -> u8 {
        match self {
            Self::Postcard => 1,
            Self::Json => 2,
        }
    }

    const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Postcard),
            2 => Some(Self::Json),
            _ => None,
        }
    }
}

/// Why a stored value was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Shorter than a header, or not an envelope (wrong magic).
    Foreign,
    /// An envelope format or codec this build does not know.
    Format,
    /// The checksum does not match: altered or truncated.
    Checksum,
    /// The value does not decode as `V` (or leaves bytes over).
    Value,
}

/// Why an entry was not encoded.
#[derive(Debug)]
pub(crate) struct EncodeError;

/// This process's clocks, read once per Redis call: tokio's clock (which
/// entries use) and the wall clock (which other processes share), plus
/// a test hook's offset on the wall clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clocks {
    pub(crate) now: Instant,
    pub(crate) wall_ms: i64,
}

impl Clocks {
    /// Both clocks now, the wall clock moved by `offset_ms`.
    pub(crate) fn read(offset_ms: i64) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            now: Instant::now(),
            wall_ms: wall.saturating_add(offset_ms),
        }
    }

    /// `t` on the wall clock, in Unix milliseconds. Instants ahead are
    /// rounded up, instants past rounded down (towards later: an entry is
    /// never judged stale a millisecond early by its writer's rounding).
    pub(crate) fn to_wall(self, t: Instant) -> i64 {
        if t >= self.now {
            let d = t.duration_since(self.now);
            self.wall_ms.saturating_add(ceil_ms(d))
        } else {
            let d = self.now.duration_since(t);
            self.wall_ms
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
    }

    /// The instant of this process's clock that the wall time `ms` is.
    /// Times far in the past map to the entries' clock origin (before
    /// every entry's bounds), times far ahead are cut to the entries'
    /// longest window.
    pub(crate) fn to_instant(self, ms: i64) -> Instant {
        let diff = i128::from(ms) - i128::from(self.wall_ms);
        let d = Duration::from_millis(u64::try_from(diff.unsigned_abs()).unwrap_or(u64::MAX));
        if diff >= 0 {
            later(self.now, d)
        } else {
            self.now.checked_sub(d).unwrap_or_else(origin).max(origin())
        }
    }

    /// Milliseconds from now until `t`, rounded up; 0 if `t` has passed.
    pub(crate) fn ms_until(self, t: Instant) -> u64 {
        u64::try_from(ceil_ms(t.saturating_duration_since(self.now))).unwrap_or(u64::MAX)
    }
}

fn ceil_ms(d: Duration) -> i64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn checksum(bytes: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..4]);
    crc.update(&bytes[8..]);
    crc.finalize()
}

/// `entry` as an envelope written with `codec`, its instants put on the
/// wall clock of `clocks`.
pub(crate) fn encode<V: Serialize>(
    entry: &Entry<V>,
    codec: Codec,
    clocks: Clocks,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(HEADER + 64);
    let flags = if entry.is_negative() { NEGATIVE } else { 0 };
    out.extend_from_slice(&[MAGIC, FORMAT, codec.id(), flags, 0, 0, 0, 0]);
    for t in [
        entry.fresh_until(),
        entry.revalidate_until(),
        entry.stale_until(),
        entry.early_refresh_from(),
    ] {
        out.extend_from_slice(&clocks.to_wall(t).to_le_bytes());
    }
    out.extend_from_slice(&entry.version().to_le_bytes());
    let load_micros = u32::try_from(entry.load_time().as_micros()).unwrap_or(u32::MAX);
    out.extend_from_slice(&load_micros.to_le_bytes());
    out.extend_from_slice(&entry.weight().to_le_bytes());
    debug_assert_eq!(out.len(), HEADER);
    let mut out = match codec {
        Codec::Postcard => postcard::to_extend(entry.value(), out).map_err(|_| EncodeError)?,
        Codec::Json => {
            serde_json::to_writer(&mut out, entry.value()).map_err(|_| EncodeError)?;
            out
        }
    };
    let crc = checksum(&out);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The entry in `bytes`, its wall times mapped onto this process's clock
/// through `clocks`.
pub(crate) fn decode<V: DeserializeOwned>(
    bytes: &[u8],
    clocks: Clocks,
) -> Result<Entry<V>, DecodeError> {
    if bytes.len() < HEADER || bytes[0] != MAGIC {
        return Err(DecodeError::Foreign);
    }
    if bytes[1] != FORMAT {
        return Err(DecodeError::Format);
    }
    let codec = Codec::from_id(bytes[2]).ok_or(DecodeError::Format)?;
    if u32_at(bytes, 4) != checksum(bytes) {
        return Err(DecodeError::Checksum);
    }
    let payload = &bytes[HEADER..];
    let value: V = match codec {
        Codec::Postcard => match postcard::take_from_bytes(payload) {
            Ok((v, [])) => v,
            _ => return Err(DecodeError::Value),
        },
        Codec::Json => serde_json::from_slice(payload).map_err(|_| DecodeError::Value)?,
    };
    let at = |offset: usize| clocks.to_instant(u64_at(bytes, offset) as i64);
    Ok(Entry::new(
        value,
        at(8),
        at(16),
        at(24),
        at(32),
        Duration::from_micros(u64::from(u32_at(bytes, 48))),
        u32_at(bytes, 52),
        u64_at(bytes, 40),
        bytes[3] & NEGATIVE != 0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clocks(wall_ms: i64) -> Clocks {
        Clocks {
            now: Instant::now(),
            wall_ms,
        }
    }

    fn sample(c: Clocks) -> Entry<(u32, String)> {
        Entry::new(
            (7, "seven".to_owned()),
            c.now + Duration::from_secs(30),
            c.now + Duration::from_secs(40),
            c.now + Duration::from_secs(600),
            c.now + Duration::from_secs(29),
            Duration::from_micros(1234),
            321,
            99,
            true,
        )
    }

    #[test]
    fn an_entry_round_trips_in_both_codecs() {
        let c = clocks(1_700_000_000_000);
        let e = sample(c);
        for codec in [Codec::Postcard, Codec::Json] {
            let bytes = encode(&e, codec, c).unwrap();
            assert_eq!(bytes[2], codec.id());
            let d: Entry<(u32, String)> = decode(&bytes, c).unwrap();
            assert_eq!(d.value(), e.value());
            assert_eq!(d.fresh_until(), e.fresh_until());
            assert_eq!(d.revalidate_until(), e.revalidate_until());
            assert_eq!(d.stale_until(), e.stale_until());
            assert_eq!(d.early_refresh_from(), e.early_refresh_from());
            assert_eq!(d.load_time(), e.load_time());
            assert_eq!((d.weight(), d.version(), d.is_negative()), (321, 99, true));
        }
    }

    #[test]
    fn a_reader_whose_wall_clock_is_ahead_sees_the_entry_staler_by_the_skew() {
        let writer = clocks(1_700_000_000_000);
        let e = sample(writer);
        let bytes = encode(&e, Codec::Postcard, writer).unwrap();
        let skew = Duration::from_secs(5);
        let reader = Clocks {
            now: writer.now,
            wall_ms: writer.wall_ms + 5_000,
        };
        let d: Entry<(u32, String)> = decode(&bytes, reader).unwrap();
        assert_eq!(d.fresh_until() + skew, e.fresh_until());
        let behind = Clocks {
            now: writer.now,
            wall_ms: writer.wall_ms - 5_000,
        };
        let d: Entry<(u32, String)> = decode(&bytes, behind).unwrap();
        assert_eq!(d.fresh_until(), e.fresh_until() + skew);
    }

    #[test]
    fn anything_but_an_intact_envelope_is_refused() {
        let c = clocks(1_700_000_000_000);
        let good = encode(&sample(c), Codec::Postcard, c).unwrap();
        let decode = |b: &[u8]| decode::<(u32, String)>(b, c).map(|_| ());
        assert_eq!(decode(b"hello"), Err(DecodeError::Foreign));
        assert_eq!(decode(&[0u8; 80]), Err(DecodeError::Foreign));
        let mut other = good.clone();
        other[1] = FORMAT + 1;
        assert_eq!(decode(&other), Err(DecodeError::Format));
        let mut other = good.clone();
        other[2] = 9;
        assert_eq!(decode(&other), Err(DecodeError::Format));
        for i in (0..good.len()).filter(|i| !(1..=2).contains(i)) {
            let mut flipped = good.clone();
            flipped[i] ^= 0x10;
            assert!(decode(&flipped).is_err(), "byte {i} flipped was served");
        }
        assert_eq!(decode(&good[..good.len() - 1]), Err(DecodeError::Checksum));
        // A valid envelope of another type, or with bytes left over.
        let other = encode(
            &Entry::fresh_for(5u8, Duration::from_secs(1)),
            Codec::Postcard,
            c,
        )
        .unwrap();
        assert_eq!(decode(&other), Err(DecodeError::Value));
        let mut longer = good.clone();
        longer.push(0);
        let crc = checksum(&longer);
        longer[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&longer), Err(DecodeError::Value));
    }

    #[test]
    fn wall_times_far_off_stay_in_range() {
        let c = clocks(1_700_000_000_000);
        assert_eq!(
            c.to_instant(0),
            c.now
                .checked_sub(Duration::from_millis(1_700_000_000_000))
                .unwrap_or_else(origin)
                .max(origin())
        );
        assert!(c.to_instant(i64::MIN) <= c.now);
        assert!(c.to_instant(i64::MAX) > c.now);
        assert_eq!(c.ms_until(c.now + Duration::from_micros(1500)), 2);
        assert_eq!(c.ms_until(c.now), 0);
        assert_eq!(c.to_wall(c.now + Duration::from_micros(1)), c.wall_ms + 1);
    }
}
