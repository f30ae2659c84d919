//! What a stored response is stored under (RFC 9111 §2, §4.1): the
//! effective request URI, and the request fields its `Vary` names.

use http::header::{HOST, VARY};
use http::{HeaderMap, HeaderName, Uri};

use crate::header::list::{members, trim_ows};

/// The primary cache key of a request (RFC 9111 §2): its effective URI
/// (RFC 9110 §7.1), normalised — scheme and host lowercased, the default
/// port dropped, an empty path as `/` — from the request target and, for
/// an origin-form target, the `Host` field and `scheme` (the scheme the
/// cache's listener serves). Nothing else from the request goes in: no
/// `X-Forwarded-Host`, `X-Original-URL` or `X-Forwarded-Scheme` can make
/// one request's key another's. `None` without a host.
///
/// GET and HEAD share a key: a stored GET response answers a HEAD (§4).
///
/// ```
/// use buttress_http::semantics::cache_key;
/// use http::{HeaderMap, HeaderValue, Uri};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("host", HeaderValue::from_static("Example.COM:80"));
/// let uri: Uri = "/a?b=1".parse().unwrap();
/// assert_eq!(cache_key("http", &uri, &headers).as_deref(), Some("http://example.com/a?b=1"));
/// ```
#[must_use]
pub fn cache_key(scheme: &str, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let scheme = uri.scheme_str().unwrap_or(scheme).to_ascii_lowercase();
    let authority = match uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None => {
            let mut hosts = headers.get_all(HOST).iter();
            let host = hosts.next()?;
            if hosts.next().is_some() {
                // RFC 9112 §3.2: several Host lines make the request invalid.
                return None;
            }
            std::str::from_utf8(trim_ows(host.as_bytes()))
                .ok()?
                .to_owned()
        }
    };
    // Userinfo has no place in a key (and is deprecated, RFC 9110 §4.2.4).
    let host_port = authority
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host_port.is_empty()
        || host_port
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/')
    {
        return None;
    }
    let default_port = match scheme.as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    let host_port = match default_port {
        Some(port) => host_port.strip_suffix(port).unwrap_or(&host_port),
        None => &host_port,
    };
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path_and_query = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    Some(format!("{scheme}://{host_port}{path_and_query}"))
}

/// The secondary key of a stored response (§4.1): the request fields its
/// `Vary` names and their values in the request that got it, each
/// normalised (several lines combined, whitespace around commas dropped,
/// RFC 9110 §5.3). A request matches when every named field has the same
/// normalised value (absent matches absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaryKey {
    fields: Vec<(HeaderName, Option<String>)>,
}

/// The normalised combined value of `name` in `headers`.
fn normalised(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        for member in members(value.as_bytes()) {
            let s = out.get_or_insert_with(String::new);
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(&String::from_utf8_lossy(member));
        }
    }
    // A field present with an empty value is present.
    out.or_else(|| headers.contains_key(name).then(String::new))
}

impl VaryKey {
    /// The secondary key of `response` to `request`; `None` when the
    /// response varies on `*` (it never matches another request, §4.1) or
    /// names a field that is not a field name.
    #[must_use]
    pub fn new(response: &HeaderMap, request: &HeaderMap) -> Option<Self> {
        let mut fields: Vec<(HeaderName, Option<String>)> = Vec::new();
        for value in response.get_all(VARY) {
            for member in members(value.as_bytes()) {
                if member == b"*" {
                    return None;
                }
                let name = HeaderName::from_bytes(member).ok()?;
                if !fields.iter().any(|(n, _)| *n == name) {
                    let v = normalised(request, &name);
                    fields.push((name, v));
                }
            }
        }
        fields.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Some(Self { fields })
    }

    /// Whether `request` selects the response stored under this key.
    #[must_use]
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.fields
            .iter()
            .all(|(name, value)| normalised(request, name) == *value)
    }

    /// Whether the response varies on nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}
