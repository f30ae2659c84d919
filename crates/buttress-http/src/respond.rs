//! What the layer writes into responses: a policy's fields, ETags, and
//! the `304` / `412` answers.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, EXPIRES, LAST_MODIFIED, TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;

use crate::body::ResponseBody;
use crate::header::list::members;
use crate::header::{http_date, parse_http_date};
use crate::policy::PolicyFields;
use crate::validators::Validators;

/// Writes `policy`'s fields into `headers`: a field the handler set is
/// kept unless the policy overwrites; `Expires` only goes with the
/// policy's own `Cache-Control`; `Vary` members are merged.
pub(crate) fn apply_policy(policy: &PolicyFields, headers: &mut HeaderMap) {
    let mut own_cache_control = false;
    for (name, value) in &policy.fields {
        if policy.overwrite || !headers.contains_key(name) {
            own_cache_control |= *name == CACHE_CONTROL;
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Some(after) = policy.expires_after
        && own_cache_control
        && (policy.overwrite || !headers.contains_key(EXPIRES))
    {
        headers.insert(EXPIRES, http_date(SystemTime::now() + after));
    }
    if let Some(vary) = &policy.vary_value {
        merge_vary(policy, vary, headers);
    }
}

fn merge_vary(policy: &PolicyFields, vary: &HeaderValue, headers: &mut HeaderMap) {
    if !headers.contains_key(VARY) || policy.vary.is_empty() {
        // No Vary yet, or ours is `*`, which covers every other member.
        headers.insert(VARY, vary.clone());
        return;
    }
    let present = |name: &[u8]| {
        headers
            .get_all(VARY)
            .iter()
            .flat_map(|v| members(v.as_bytes()))
            .any(|m| m == b"*" || m.eq_ignore_ascii_case(name))
    };
    if present(b"*") {
        return;
    }
    let missing: Vec<&[u8]> = policy
        .vary
        .iter()
        .map(|h| h.as_str().as_bytes())
        .filter(|h| !present(h))
        .collect();
    if missing.len() == policy.vary.len() {
        headers.append(VARY, vary.clone());
    } else if !missing.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(&missing.join(&b", "[..]))
    {
        headers.append(VARY, v);
    }
}

/// The strong `ETag` of `body`: its XXH3-128 hash in hex. XXH3 is a fixed
/// algorithm without a per-process seed, so every instance of a service,
/// and every version of this crate, tags the same bytes alike.
pub(crate) fn body_etag(body: &[u8]) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_128(body);
    let mut out = [b'"'; 34];
    for (i, slot) in out[1..33].iter_mut().enumerate() {
        *slot = HEX[((hash >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("\"\""))
}

/// A weak `ETag` from `Last-Modified` and `Content-Length`, when the
/// response has both.
pub(crate) fn weak_etag(headers: &HeaderMap) -> Option<HeaderValue> {
    let modified = parse_http_date(headers.get(LAST_MODIFIED)?.as_bytes())?;
    let secs = modified.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let len: u64 = headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    HeaderValue::from_str(&format!("W/\"{secs:x}-{len:x}\"")).ok()
}

/// `response` turned into a `304 Not Modified` (RFC 9110 §15.4.5): no
/// content, the fields a `200` would carry kept (`ETag`, `Cache-Control`,
/// `Expires`, `Vary`, `Content-Location`, `Date`, targeted fields and any
/// non-representation field), representation metadata dropped, and
/// `Last-Modified` kept only when there is no `ETag`.
pub(crate) fn not_modified<B: Body>(
    response: Response<ResponseBody<B>>,
) -> Response<ResponseBody<B>> {
    let (mut parts, _content) = response.into_parts();
    parts.status = StatusCode::NOT_MODIFIED;
    for name in [
        CONTENT_TYPE,
        CONTENT_LENGTH,
        CONTENT_ENCODING,
        CONTENT_LANGUAGE,
        CONTENT_RANGE,
        TRANSFER_ENCODING,
    ] {
        parts.headers.remove(name);
    }
    if parts.headers.contains_key(ETAG) {
        parts.headers.remove(LAST_MODIFIED);
    }
    Response::from_parts(parts, ResponseBody::empty())
}

/// A `304` for a representation known only by its validators (answered
/// before the handler runs): they are its only fields besides the policy's.
pub(crate) fn not_modified_from<B: Body>(
    validators: Option<&Validators>,
) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    if let Some(tag) = validators.and_then(Validators::etag) {
        response
            .headers_mut()
            .insert(ETAG, tag.header_value().clone());
    } else if let Some(at) = validators.and_then(Validators::last_modified) {
        response.headers_mut().insert(LAST_MODIFIED, http_date(at));
    }
    response
}

/// `412 Precondition Failed`, without content.
pub(crate) fn precondition_failed<B: Body>() -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::PRECONDITION_FAILED;
    response
}

/// The buffered chunks of a body being hashed.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    first: Bytes,
    rest: Option<bytes::BytesMut>,
    pub(crate) trailers: Option<HeaderMap>,
}

impl Buffer {
    /// Appends a chunk; the first one is kept without copying.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        match &mut self.rest {
            Some(rest) => rest.extend_from_slice(&chunk),
            None if self.first.is_empty() => self.first = chunk,
            None if chunk.is_empty() => {}
            None => {
                let mut rest = bytes::BytesMut::with_capacity(self.first.len() + chunk.len());
                rest.extend_from_slice(&self.first);
                rest.extend_from_slice(&chunk);
                self.rest = Some(rest);
            }
        }
    }

    /// How many bytes it holds.
    pub(crate) fn len(&self) -> u64 {
        self.rest.as_ref().map_or(self.first.len(), |r| r.len()) as u64
    }

    /// The whole body so far.
    pub(crate) fn take(&mut self) -> Bytes {
        match self.rest.take() {
            Some(rest) => rest.freeze(),
            None => std::mem::take(&mut self.first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_etags_are_stable_quoted_hex() {
        let tag = body_etag(b"hello");
        // XXH3-128 of "hello", as every instance and version computes it.
        assert_eq!(tag, "\"b5e9c1ad071b3e7fc779cfaa5e523818\"");
        assert_ne!(body_etag(b"hello!"), tag);
    }

    #[test]
    fn buffers_join_chunks() {
        let mut b = Buffer::default();
        b.push(Bytes::from_static(b"ab"));
        assert_eq!(b.take(), "ab");
        b.push(Bytes::from_static(b"ab"));
        b.push(Bytes::new());
        b.push(Bytes::from_static(b"cd"));
        b.push(Bytes::from_static(b"e"));
        assert_eq!(b.take(), "abcde");
    }
}
