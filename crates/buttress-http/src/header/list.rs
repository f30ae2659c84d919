//! The list syntax of HTTP field values (RFC 9110 §5.6.1): members split at
//! commas outside quoted strings, optional whitespace trimmed, empty
//! members skipped. Works on bytes, so no field value can make it panic.

/// Optional whitespace (RFC 9110 §5.6.3): spaces and horizontal tabs.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The members of a comma-separated list, in order.
pub(crate) fn members(value: &[u8]) -> Members<'_> {
    Members { rest: value }
}

/// Iterator returned by [`members`].
#[derive(Debug, Clone)]
pub(crate) struct Members<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Members<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let mut in_quotes = false;
            let mut escaped = false;
            let mut end = self.rest.len();
            for (i, &b) in self.rest.iter().enumerate() {
                if escaped {
                    escaped = false;
                } else if in_quotes && b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_quotes = !in_quotes;
                } else if !in_quotes && b == b',' {
                    end = i;
                    break;
                }
            }
            let (member, rest) = self.rest.split_at(end);
            self.rest = rest.get(1..).unwrap_or_default();
            let member = trim_ows(member);
            if !member.is_empty() {
                return Some(member);
            }
        }
        None
    }
}

/// A value in either form a directive argument may take (RFC 9111 §5.2:
/// `token / quoted-string`): the token itself, or the content of a quoted
/// string. A quoted string holding a quoted pair or a stray quote is
/// refused (`None`): no argument this crate reads needs either.
pub(crate) fn token_or_quoted(s: &[u8]) -> Option<&[u8]> {
    match s {
        [b'"', inner @ .., b'"'] if !inner.iter().any(|&b| b == b'"' || b == b'\\') => Some(inner),
        [b'"', ..] => None,
        _ => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Vec<&[u8]> {
        members(s.as_bytes()).collect()
    }

    #[test]
    fn rfc9110_5_6_1_empty_members_are_skipped_and_ows_trimmed() {
        assert_eq!(all("a, ,b ,\t c,,"), [&b"a"[..], b"b", b"c"]);
        assert!(all(" , ,").is_empty());
    }

    #[test]
    fn rfc9110_5_6_4_commas_inside_quoted_strings_do_not_split() {
        assert_eq!(
            all(r#""a,b", W/"c\",d", e"#),
            [&br#""a,b""#[..], br#"W/"c\",d""#, b"e"]
        );
    }

    #[test]
    fn rfc9111_5_2_arguments_in_token_or_quoted_form() {
        assert_eq!(token_or_quoted(b"60"), Some(&b"60"[..]));
        assert_eq!(token_or_quoted(br#""60""#), Some(&b"60"[..]));
        assert_eq!(token_or_quoted(br#""6\0""#), None);
        assert_eq!(token_or_quoted(br#"""#), None);
        assert_eq!(token_or_quoted(br#""""#), Some(&b""[..]));
    }
}
