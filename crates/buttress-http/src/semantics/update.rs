//! Updating and invalidating stored responses (RFC 9111 §3.1, §4.3.4,
//! §4.4).

use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_LOCATION, ETAG, LAST_MODIFIED, LOCATION,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};

use super::cache_key;
use crate::header::EntityTag;
use crate::header::list::members;

/// Fields a cache never stores (§3.1): the hop-by-hop fields — those
/// `Connection` names, and the standard ones (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 4] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authentication-info",
    "trailer",
];

/// Removes from `headers` the fields a cache must not store or forward
/// from a stored response (§3.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| members(v.as_bytes()))
        .filter_map(|m| HeaderName::from_bytes(m).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        TE,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TRAILER,
    ] {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a `304` response freshens the stored response whose fields
/// are `stored` (§4.3.4): the same strong `ETag` if the `304` has one;
/// else the same `Last-Modified` if it has one; else the stored response
/// has no validator either (the one stored response, for the caller to
/// choose).
#[must_use]
pub fn freshens(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let tag = |h: &HeaderMap| {
        h.get(ETAG).and_then(|v| {
            EntityTag::parse(v.as_bytes()).map(|t| (t.is_weak(), t.opaque().to_vec()))
        })
    };
    if let Some(new) = tag(not_modified) {
        return !new.0 && tag(stored).is_some_and(|old| !old.0 && old.1 == new.1);
    }
    if let Some(new) = not_modified.get(LAST_MODIFIED) {
        return stored.get(LAST_MODIFIED) == Some(new);
    }
    !stored.contains_key(ETAG) && !stored.contains_key(LAST_MODIFIED)
}

/// Freshens `stored` with a `304`'s fields (§4.3.4): each field of the
/// `304` replaces the stored one, except `Content-Length` and the fields
/// never stored (§3.1).
pub fn freshen(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let mut fresh = not_modified.clone();
    strip_hop_by_hop(&mut fresh);
    fresh.remove(CONTENT_LENGTH);
    let names: Vec<HeaderName> = fresh.keys().cloned().collect();
    for name in names {
        stored.remove(&name);
        for value in fresh.get_all(&name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// The cache keys an answer to an unsafe request invalidates (§4.4): for
/// a non-error response (2xx or 3xx) to a method other than GET, HEAD,
/// OPTIONS or TRACE, the target URI's key, and the keys of `Location` and
/// `Content-Location` when they are on the same origin (so one origin
/// cannot invalidate another's entries).
#[must_use]
pub fn invalidated_keys(
    scheme: &str,
    method: &Method,
    uri: &Uri,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
) -> Vec<String> {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let Some(target) = cache_key(scheme, uri, request) else {
        return Vec::new();
    };
    let origin = |key: &str| -> Option<String> {
        let (scheme, rest) = key.split_once("://")?;
        let host = rest.split('/').next()?;
        Some(format!("{scheme}://{host}"))
    };
    let target_origin = origin(&target);
    let mut keys = vec![target.clone()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(value) = response.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(reference) = value.trim().parse::<Uri>() else {
            continue;
        };
        // A relative reference resolves against the target's origin.
        let key = if reference.authority().is_some() {
            cache_key(scheme, &reference, &HeaderMap::new())
        } else if value.trim().starts_with('/') {
            target_origin.as_ref().map(|o| {
                format!(
                    "{o}{}",
                    reference.path_and_query().map_or("/", |p| p.as_str())
                )
            })
        } else {
            None
        };
        if let Some(key) = key
            && origin(&key) == target_origin
            && !keys.contains(&key)
        {
            keys.push(key);
        }
    }
    keys
}
