//! Entity tags (RFC 9110 §8.8.3): parsing, the two comparisons, and an
//! owned, validated [`ETag`].

use std::fmt;

use http::HeaderValue;

use super::list::trim_ows;
use crate::error::InvalidETag;

/// An entity tag borrowed from a field value: `W/"xyzzy"` or `"xyzzy"`.
///
/// ```
/// use buttress_http::header::EntityTag;
///
/// let weak = EntityTag::parse(br#"W/"v1""#).unwrap();
/// let strong = EntityTag::parse(br#""v1""#).unwrap();
/// assert!(weak.is_weak() && !strong.is_weak());
/// assert!(weak.weak_eq(&strong));     // RFC 9110 §8.8.3.2
/// assert!(!weak.strong_eq(&strong));
/// assert!(EntityTag::parse(b"v1").is_none()); // no quotes: not an entity tag
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
const fn is_etagc(b: u8) -> bool {
    b == 0x21 || (b >= 0x23 && b != 0x7f)
}

impl<'a> EntityTag<'a> {
    /// The entity tag `value` holds, surrounding whitespace ignored; `None`
    /// unless it is exactly one `entity-tag` (`W/` is case-sensitive).
    #[must_use]
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let value = trim_ows(value);
        let (weak, rest) = match value.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let opaque = rest.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        opaque
            .iter()
            .all(|&b| is_etagc(b))
            .then_some(Self { weak, opaque })
    }

    /// Whether the tag is weak (`W/` prefix).
    #[must_use]
    pub const fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque tag, without quotes or `W/`.
    #[must_use]
    pub const fn opaque(&self) -> &'a [u8] {
        self.opaque
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): neither is weak and the
    /// opaque tags are equal.
    #[must_use]
    pub fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the opaque tags are equal,
    /// whether either is weak or not.
    #[must_use]
    pub fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

impl fmt::Debug for EntityTag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for EntityTag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.opaque.escape_ascii())
    }
}

/// An owned entity tag, valid by construction, kept as the `ETag` field
/// value it is sent as (cloning it copies no bytes).
///
/// ```
/// use buttress_http::header::ETag;
///
/// let tag = ETag::strong("v42")?;
/// assert_eq!(tag.header_value(), "\"v42\"");
/// assert_eq!(ETag::weak("v42")?.header_value(), "W/\"v42\"");
/// assert!(ETag::strong("has \"quotes\"").is_err());
/// # Ok::<(), buttress_http::InvalidETag>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(HeaderValue);

impl ETag {
    /// A strong tag with the opaque value `opaque` (without quotes).
    ///
    /// # Errors
    ///
    /// [`InvalidETag`] when `opaque` holds a character an entity tag cannot
    /// (a double quote, a space, a control character).
    pub fn strong(opaque: &str) -> Result<Self, InvalidETag> {
        Self::build(false, opaque.as_bytes())
    }

    /// A weak tag (`W/"…"`) with the opaque value `opaque`.
    ///
    /// # Errors
    ///
    /// As [`strong`](Self::strong).
    pub fn weak(opaque: &str) -> Result<Self, InvalidETag> {
        Self::build(true, opaque.as_bytes())
    }

    /// The entity tag of an `ETag` field value, if it holds exactly one.
    #[must_use]
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        EntityTag::parse(value.as_bytes())?;
        Some(Self(value.clone()))
    }

    fn build(weak: bool, opaque: &[u8]) -> Result<Self, InvalidETag> {
        if !opaque.iter().all(|&b| is_etagc(b) && b < 0x80) {
            return Err(InvalidETag(()));
        }
        let mut v = Vec::with_capacity(opaque.len() + 4);
        if weak {
            v.extend_from_slice(b"W/");
        }
        v.push(b'"');
        v.extend_from_slice(opaque);
        v.push(b'"');
        HeaderValue::from_bytes(&v)
            .map(Self)
            .map_err(|_| InvalidETag(()))
    }

    /// The tag, borrowed, for comparisons.
    #[must_use]
    pub fn as_entity_tag(&self) -> EntityTag<'_> {
        // Valid by construction; the fallback is never taken.
        EntityTag::parse(self.0.as_bytes()).unwrap_or(EntityTag {
            weak: true,
            opaque: b"",
        })
    }

    /// Whether the tag is weak.
    #[must_use]
    pub fn is_weak(&self) -> bool {
        self.0.as_bytes().starts_with(b"W/")
    }

    /// The `ETag` field value.
    #[must_use]
    pub const fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_entity_tag(), f)
    }
}

impl From<ETag> for HeaderValue {
    fn from(tag: ETag) -> Self {
        tag.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9110_8_8_3_syntax() {
        let rows: &[(&str, Option<(bool, &str)>)] = &[
            (r#""xyzzy""#, Some((false, "xyzzy"))),
            (r#"W/"xyzzy""#, Some((true, "xyzzy"))),
            (r#""""#, Some((false, ""))),
            (r#"  "a"  "#, Some((false, "a"))),
            // W/ is case-sensitive (%s"W/").
            (r#"w/"xyzzy""#, None),
            (r#"xyzzy"#, None),
            (r#""xy zzy""#, None),
            (r#""xy"zzy""#, None),
            (r#""a", "b""#, None),
            (r#"""#, None),
        ];
        for (value, want) in rows {
            let got = EntityTag::parse(value.as_bytes()).map(|t| (t.is_weak(), t.opaque()));
            assert_eq!(got, want.map(|(w, o)| (w, o.as_bytes())), "{value}");
        }
    }

    #[test]
    fn rfc9110_8_8_3_2_comparison_table() {
        // The example table of §8.8.3.2: ETag 1, ETag 2, strong, weak.
        let rows = [
            (r#"W/"1""#, r#"W/"1""#, false, true),
            (r#"W/"1""#, r#"W/"2""#, false, false),
            (r#"W/"1""#, r#""1""#, false, true),
            (r#""1""#, r#""1""#, true, true),
        ];
        for (a, b, strong, weak) in rows {
            let (a, b) = (
                EntityTag::parse(a.as_bytes()).unwrap(),
                EntityTag::parse(b.as_bytes()).unwrap(),
            );
            assert_eq!(
                (a.strong_eq(&b), a.weak_eq(&b)),
                (strong, weak),
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn owned_tags_are_validated_and_round_trip() {
        assert_eq!(
            ETag::strong("abc").unwrap().as_entity_tag().opaque(),
            b"abc"
        );
        assert!(ETag::weak("abc").unwrap().is_weak());
        assert!(ETag::strong("a b").is_err());
        assert!(ETag::strong("é").is_err());
        let from = ETag::from_header(&HeaderValue::from_static("W/\"x\"")).unwrap();
        assert_eq!(from, ETag::weak("x").unwrap());
        assert!(ETag::from_header(&HeaderValue::from_static("x")).is_none());
    }
}
