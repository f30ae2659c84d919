//! `Cache-Control` (RFC 9111 §5.2), parsed.

use std::time::Duration;

use http::HeaderValue;

use super::list::{members, token_or_quoted, trim_ows};

/// The greatest delta-seconds value kept: a larger one (or one that
/// overflows) counts as 2^31 seconds (RFC 9111 §1.2.2).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The directives of one or more `Cache-Control` field lines (RFC 9111
/// §5.2), as a cache reads them.
///
/// Parsing never fails and never panics: directive names are compared
/// case-insensitively, arguments are accepted in token or quoted form
/// (`max-age=5` and `max-age="5"`), unknown directives are ignored
/// (§5.2.3), and a directive whose argument is not valid sets
/// [`invalid`](Self::invalid) instead of taking a value. When a directive
/// that takes an argument appears more than once, the first occurrence
/// wins and [`duplicated`](Self::duplicated) is set (§4.2.1 lets a cache
/// use the first or treat the response as stale).
///
/// A qualified `no-cache="field"` or `private="field"` is read as the
/// unqualified directive: the conservative reading §5.2.2.4 and §5.2.2.7
/// allow.
///
/// ```
/// use std::time::Duration;
/// use buttress_http::header::CacheControl;
/// use http::HeaderValue;
///
/// let cc = CacheControl::parse_value(&HeaderValue::from_static("public, Max-Age=\"60\", immutable"));
/// assert!(cc.public && cc.immutable);
/// assert_eq!(cc.max_age, Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `max-age` (§5.2.1.1, §5.2.2.1).
    pub max_age: Option<Duration>,
    /// `s-maxage` (§5.2.2.10).
    pub s_maxage: Option<Duration>,
    /// `max-stale` (§5.2.1.2): `Some(None)` without an argument (any
    /// staleness is accepted).
    pub max_stale: Option<Option<Duration>>,
    /// `min-fresh` (§5.2.1.3).
    pub min_fresh: Option<Duration>,
    /// `stale-while-revalidate` (RFC 5861 §3).
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` (RFC 5861 §4).
    pub stale_if_error: Option<Duration>,
    /// `no-cache` (§5.2.1.4, §5.2.2.4), qualified or not.
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-transform` (§5.2.1.6, §5.2.2.6).
    pub no_transform: bool,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `private` (§5.2.2.7), qualified or not.
    pub private: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// A known directive had an argument it cannot take (`max-age=soon`,
    /// `max-age` without one): a cache should treat the response as stale
    /// (§4.2.1).
    pub invalid: bool,
    /// A directive with an argument appeared more than once; the first
    /// occurrence was kept.
    pub duplicated: bool,
}

impl CacheControl {
    /// The directives of every `Cache-Control` line in `values`, in order
    /// (e.g. `headers.get_all(CACHE_CONTROL)`): several lines read as one
    /// comma-separated list (RFC 9110 §5.3).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut cc = Self::default();
        for value in values {
            cc.add(value.as_bytes());
        }
        cc
    }

    /// The directives of one field value.
    #[must_use]
    pub fn parse_value(value: &HeaderValue) -> Self {
        Self::parse_bytes(value.as_bytes())
    }

    /// The directives of one field value given as bytes.
    #[must_use]
    pub fn parse_bytes(value: &[u8]) -> Self {
        let mut cc = Self::default();
        cc.add(value);
        cc
    }

    fn add(&mut self, value: &[u8]) {
        for member in members(value) {
            let (name, arg) = match member.iter().position(|&b| b == b'=') {
                Some(i) => (
                    trim_ows(&member[..i]),
                    Some(trim_ows(member.get(i + 1..).unwrap_or_default())),
                ),
                None => (member, None),
            };
            self.directive(name, arg);
        }
    }

    fn directive(&mut self, name: &[u8], arg: Option<&[u8]>) {
        let is = |d: &str| name.eq_ignore_ascii_case(d.as_bytes());
        let delta = arg.and_then(token_or_quoted).and_then(delta_seconds);
        let slot = if is("max-age") {
            Some(&mut self.max_age)
        } else if is("s-maxage") {
            Some(&mut self.s_maxage)
        } else if is("min-fresh") {
            Some(&mut self.min_fresh)
        } else if is("stale-while-revalidate") {
            Some(&mut self.stale_while_revalidate)
        } else if is("stale-if-error") {
            Some(&mut self.stale_if_error)
        } else {
            None
        };
        if let Some(slot) = slot {
            match (delta, &slot) {
                (None, _) => self.invalid = true,
                (Some(_), Some(_)) => self.duplicated = true,
                (Some(d), None) => *slot = Some(d),
            }
        } else if is("max-stale") {
            match (arg, delta, self.max_stale) {
                (_, _, Some(_)) => self.duplicated = true,
                (None, _, None) => self.max_stale = Some(None),
                (Some(_), Some(d), None) => self.max_stale = Some(Some(d)),
                (Some(_), None, None) => self.invalid = true,
            }
        } else if is("no-cache") {
            self.no_cache = true;
        } else if is("no-store") {
            self.no_store = true;
        } else if is("no-transform") {
            self.no_transform = true;
        } else if is("only-if-cached") {
            self.only_if_cached = true;
        } else if is("must-revalidate") {
            self.must_revalidate = true;
        } else if is("must-understand") {
            self.must_understand = true;
        } else if is("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if is("private") {
            self.private = true;
        } else if is("public") {
            self.public = true;
        } else if is("immutable") {
            self.immutable = true;
        }
    }
}

/// `delta-seconds` (RFC 9111 §1.2.2): one or more digits, saturating at
/// [`MAX_DELTA_SECONDS`].
pub(crate) fn delta_seconds(s: &[u8]) -> Option<Duration> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .filter(|&n| n <= MAX_DELTA_SECONDS)
    });
    Some(Duration::from_secs(n.unwrap_or(MAX_DELTA_SECONDS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Option<Duration> = |s| Some(Duration::from_secs(s));

    #[test]
    fn rfc9111_5_2_table() {
        // (field value, expected parse): one row per rule, with its section.
        let rows: &[(&str, &str, CacheControl)] = &[
            (
                "§5.2.2.1 max-age",
                "max-age=60",
                CacheControl {
                    max_age: S(60),
                    ..Default::default()
                },
            ),
            (
                "§5.2 quoted argument accepted",
                "max-age=\"60\"",
                CacheControl {
                    max_age: S(60),
                    ..Default::default()
                },
            ),
            (
                "§5.2 names are case-insensitive",
                "MAX-AGE=5, Public",
                CacheControl {
                    max_age: S(5),
                    public: true,
                    ..Default::default()
                },
            ),
            (
                "§1.2.2 overflow saturates at 2^31",
                "s-maxage=99999999999999999999999",
                CacheControl {
                    s_maxage: S(MAX_DELTA_SECONDS),
                    ..Default::default()
                },
            ),
            (
                "§4.2.1 invalid argument",
                "max-age=soon",
                CacheControl {
                    invalid: true,
                    ..Default::default()
                },
            ),
            (
                "§4.2.1 negative is invalid",
                "max-age=-1",
                CacheControl {
                    invalid: true,
                    ..Default::default()
                },
            ),
            (
                "§4.2.1 missing argument",
                "max-age",
                CacheControl {
                    invalid: true,
                    ..Default::default()
                },
            ),
            (
                "§4.2.1 first of duplicates",
                "max-age=1, max-age=2",
                CacheControl {
                    max_age: S(1),
                    duplicated: true,
                    ..Default::default()
                },
            ),
            (
                "§5.2.2.4 qualified no-cache",
                "no-cache=\"Set-Cookie, X-Id\", no-store",
                CacheControl {
                    no_cache: true,
                    no_store: true,
                    ..Default::default()
                },
            ),
            (
                "§5.2.2.7 private",
                "private",
                CacheControl {
                    private: true,
                    ..Default::default()
                },
            ),
            (
                "§5.2.1.2 max-stale without argument",
                "max-stale",
                CacheControl {
                    max_stale: Some(None),
                    ..Default::default()
                },
            ),
            (
                "§5.2.1.2 max-stale with argument",
                "max-stale=30, min-fresh=5",
                CacheControl {
                    max_stale: Some(S(30)),
                    min_fresh: S(5),
                    ..Default::default()
                },
            ),
            (
                "RFC 5861 §3/§4",
                "stale-while-revalidate=10, stale-if-error=300",
                CacheControl {
                    stale_while_revalidate: S(10),
                    stale_if_error: S(300),
                    ..Default::default()
                },
            ),
            (
                "§5.2.3 unknown directives ignored",
                "community=\"UCI\", foo, bar=baz",
                CacheControl::default(),
            ),
            (
                "RFC 8246 immutable and the rest",
                "immutable, must-revalidate, proxy-revalidate, no-transform, only-if-cached, must-understand",
                CacheControl {
                    immutable: true,
                    must_revalidate: true,
                    proxy_revalidate: true,
                    no_transform: true,
                    only_if_cached: true,
                    must_understand: true,
                    ..Default::default()
                },
            ),
        ];
        for (rule, value, want) in rows {
            assert_eq!(
                &CacheControl::parse_bytes(value.as_bytes()),
                want,
                "{rule}: {value}"
            );
        }
    }

    #[test]
    fn rfc9110_5_3_several_lines_read_as_one_list() {
        let lines = [
            HeaderValue::from_static("max-age=10"),
            HeaderValue::from_static("max-age=20, public"),
        ];
        let cc = CacheControl::parse(&lines);
        assert_eq!((cc.max_age, cc.public, cc.duplicated), (S(10), true, true));
    }
}
