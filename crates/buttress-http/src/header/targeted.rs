//! Targeted cache-control fields (RFC 9213 §2): `CDN-Cache-Control` and
//! its kin are Structured Field Dictionaries (RFC 8941 §3.2), parsed
//! strictly: a field that is not a valid Dictionary is ignored as a whole.

use std::time::Duration;

use http::HeaderValue;

use super::cache_control::{CacheControl, MAX_DELTA_SECONDS};

/// The value of one dictionary member, as far as cache directives need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Integer(i64),
    Boolean(bool),
    /// A string, token, decimal, byte sequence or inner list.
    Other,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// RFC 8941 parsing, enough of it to accept exactly the valid
/// Dictionaries: every bare item type, inner lists and parameters are
/// checked, and kept only as far as [`Value`] needs.
impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|b| set.contains(&b)) {
            self.i += 1;
        }
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            self.i += 1;
        }
        self.s.get(start..self.i)
    }

    /// §4.2.3: a bare item.
    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => {
                self.i += 1;
                match self.peek()? {
                    b'0' | b'1' => {
                        let v = self.peek() == Some(b'1');
                        self.i += 1;
                        Some(Value::Boolean(v))
                    }
                    _ => None,
                }
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                // §4.2.6: a token.
                while self
                    .peek()
                    .is_some_and(|b| is_tchar(b) || b == b':' || b == b'/')
                {
                    self.i += 1;
                }
                Some(Value::Other)
            }
            _ => None,
        }
    }

    /// §4.2.4: an integer (at most 15 digits) or a decimal (at most 12
    /// integer and 3 fraction digits).
    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-');
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            let frac_start = self.i;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.i += 1;
            }
            let frac = self.i - frac_start;
            return (digits <= 12 && (1..=3).contains(&frac)).then_some(Value::Other);
        }
        if digits > 15 {
            return None;
        }
        let n = std::str::from_utf8(self.s.get(start..self.i)?)
            .ok()?
            .parse::<i64>()
            .ok()?;
        Some(Value::Integer(if negative { -n } else { n }))
    }

    /// §4.2.5: a string of printable ASCII with `\"` and `\\` escapes.
    fn string(&mut self) -> Option<Value> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => {
                    self.i += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.i += 1;
                }
                b'"' => {
                    self.i += 1;
                    return Some(Value::Other);
                }
                0x20..=0x7e => self.i += 1,
                _ => return None,
            }
        }
    }

    /// §4.2.7: `:` base64 `:`.
    fn byte_sequence(&mut self) -> Option<Value> {
        self.i += 1;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            self.i += 1;
        }
        self.eat(b':').then_some(Value::Other)
    }

    /// §4.2.3.2: parameters (checked, then dropped).
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(b" ");
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// §4.2.1.1: an item or an inner list, with parameters.
    fn member_value(&mut self) -> Option<Value> {
        let value = if self.eat(b'(') {
            loop {
                self.skip(b" ");
                if self.eat(b')') {
                    break Value::Other;
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek()?, b' ' | b')') {
                    return None;
                }
            }
        } else {
            self.bare_item()?
        };
        self.parameters()?;
        Some(value)
    }

    /// §4.2.2: the dictionary's members, in order (a later duplicate
    /// overrides an earlier one when applied in order).
    fn dictionary(mut self) -> Option<Vec<(&'a [u8], Value)>> {
        let mut out = Vec::new();
        self.skip(b" ");
        // RFC 9213 §2.1: an empty targeted field is ignored.
        self.peek()?;
        loop {
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.member_value()?
            } else {
                self.parameters()?;
                Value::Boolean(true)
            };
            out.push((key, value));
            self.skip(b" \t");
            if self.peek().is_none() {
                return Some(out);
            }
            if !self.eat(b',') {
                return None;
            }
            self.skip(b" \t");
            // A trailing comma is an error.
            self.peek()?;
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl CacheControl {
    /// The directives of a targeted cache-control field (RFC 9213 §2.1),
    /// every line in `values` combined; `None` when the field is absent,
    /// empty or not a valid Structured Field Dictionary, in which case a
    /// cache ignores it and falls back to `Cache-Control`.
    ///
    /// Delta-seconds directives take Integers (a negative one, or another
    /// type, is ignored); the others are set unless their value is
    /// `?0`. A later duplicate overrides an earlier one (RFC 8941 §4.2.2).
    ///
    /// ```
    /// use std::time::Duration;
    /// use buttress_http::header::CacheControl;
    /// use http::HeaderValue;
    ///
    /// let v = HeaderValue::from_static("max-age=600, stale-if-error=3600, must-revalidate");
    /// let cc = CacheControl::parse_targeted([&v]).unwrap();
    /// assert_eq!(cc.max_age, Some(Duration::from_secs(600)));
    /// assert!(cc.must_revalidate);
    /// // Cache-Control's quoted form is not an Integer in a Dictionary.
    /// let bad = HeaderValue::from_static("max-age=600, private=\"x\", no-cache=");
    /// assert!(CacheControl::parse_targeted([&bad]).is_none());
    /// ```
    pub fn parse_targeted<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Self> {
        let mut joined: Vec<u8> = Vec::new();
        for v in values {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
        let members = Parser { s: &joined, i: 0 }.dictionary()?;
        let mut cc = Self::default();
        for (key, value) in members {
            let seconds = match value {
                Value::Integer(n) if n >= 0 => {
                    Some(Duration::from_secs((n as u64).min(MAX_DELTA_SECONDS)))
                }
                _ => None,
            };
            let on = value != Value::Boolean(false);
            match key {
                b"max-age" => cc.max_age = seconds.or(cc.max_age),
                b"s-maxage" => cc.s_maxage = seconds.or(cc.s_maxage),
                b"stale-while-revalidate" => {
                    cc.stale_while_revalidate = seconds.or(cc.stale_while_revalidate)
                }
                b"stale-if-error" => cc.stale_if_error = seconds.or(cc.stale_if_error),
                b"no-store" => cc.no_store = on,
                b"no-cache" => cc.no_cache = on,
                b"private" => cc.private = on,
                b"public" => cc.public = on,
                b"must-revalidate" => cc.must_revalidate = on,
                b"proxy-revalidate" => cc.proxy_revalidate = on,
                b"immutable" => cc.immutable = on,
                b"no-transform" => cc.no_transform = on,
                b"must-understand" => cc.must_understand = on,
                _ => {}
            }
        }
        Some(cc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<CacheControl> {
        CacheControl::parse_targeted([&HeaderValue::from_bytes(s.as_bytes()).unwrap()])
    }

    #[test]
    fn rfc8941_4_2_2_dictionaries_valid_and_not() {
        let valid = [
            "max-age=60",
            "no-store",
            "a=1, b=?0, c=\"x\\\"y\", d=tok/en:1, e=:aGk=:, f=(1 2 \"x\");p=1, g=1.5, h;q=2",
            "max-age=60,  public",
            "*x=1",
        ];
        for v in valid {
            assert!(parse(v).is_some(), "{v}");
        }
        let invalid = [
            "",
            "   ",
            "Max-Age=60",
            "max-age=60,",
            "max-age=",
            "a=\"unterminated",
            "a=1.",
            "a=1.2345",
            "a=1234567890123456",
            "a=(1 2",
            "a=?2",
            "a b",
            "a=\"\\x\"",
            "a=:bad!:",
            "=1",
            "1a",
        ];
        for v in invalid {
            assert!(parse(v).is_none(), "{v:?}");
        }
    }

    #[test]
    fn rfc9213_2_1_directives() {
        let cc =
            parse("max-age=600, s-maxage=60, stale-while-revalidate=30, private, must-revalidate")
                .unwrap();
        assert_eq!(
            (cc.max_age, cc.s_maxage),
            (
                Some(Duration::from_secs(600)),
                Some(Duration::from_secs(60))
            )
        );
        assert_eq!(cc.stale_while_revalidate, Some(Duration::from_secs(30)));
        assert!(cc.private && cc.must_revalidate && !cc.public);
        // Wrong types and negative integers are ignored; ?0 turns a flag off.
        let cc = parse("max-age=\"60\", s-maxage=-1, no-store=?0, no-cache=?1").unwrap();
        assert_eq!(
            (cc.max_age, cc.s_maxage, cc.no_store, cc.no_cache),
            (None, None, false, true)
        );
        // RFC 8941 §4.2.2: the last of duplicates wins.
        assert_eq!(
            parse("max-age=1, max-age=2").unwrap().max_age,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse("max-age=999999999999").unwrap().max_age,
            Some(Duration::from_secs(MAX_DELTA_SECONDS))
        );
    }

    #[test]
    fn lines_combine() {
        let a = HeaderValue::from_static("max-age=10");
        let b = HeaderValue::from_static("no-store");
        let cc = CacheControl::parse_targeted([&a, &b]).unwrap();
        assert!(cc.no_store && cc.max_age.is_some());
        assert!(CacheControl::parse_targeted(std::iter::empty::<&HeaderValue>()).is_none());
    }
}
