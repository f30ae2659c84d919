//! Conditional requests (RFC 9110 §13): the request's precondition
//! fields, and their evaluation in the order of §13.2.2.

use std::time::SystemTime;

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, HeaderValue, Method};

use crate::header::list::{members, trim_ows};
use crate::header::{EntityTag, parse_http_date, truncate_to_second};

/// What a request's preconditions decide (RFC 9110 §13.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precondition {
    /// Every precondition holds (or none applies): perform the method.
    Proceed,
    /// `304 Not Modified` (GET or HEAD whose cached representation is
    /// current).
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// The validators of the current representation of a resource, as a
/// precondition compares them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Current<'a> {
    pub(crate) etag: Option<EntityTag<'a>>,
    pub(crate) last_modified: Option<SystemTime>,
}

impl<'a> Current<'a> {
    /// The validators a response carries (`ETag`, `Last-Modified`).
    pub(crate) fn of_response(headers: &'a HeaderMap) -> Self {
        Self {
            etag: headers
                .get(http::header::ETAG)
                .and_then(|v| EntityTag::parse(v.as_bytes())),
            last_modified: headers
                .get(http::header::LAST_MODIFIED)
                .and_then(|v| parse_http_date(v.as_bytes())),
        }
    }
}

/// A request's precondition fields, captured before the request moves
/// into the inner service. Several lines of a list field are joined (the
/// only case that allocates); a date field on several lines is ignored, as
/// §13.1.3 and §13.1.4 require for more than one member.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    if_match: Option<HeaderValue>,
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

fn list_field(headers: &HeaderMap, name: http::HeaderName) -> Option<HeaderValue> {
    let mut all = headers.get_all(&name).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(all) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

fn date_field(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut all = headers.get_all(&name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    parse_http_date(first.as_bytes())
}

/// `If-Match` / `If-None-Match` against the current tag: `None` for `*`,
/// else whether a member matches under `eq`. Members that are not entity
/// tags match nothing.
fn matches(field: &HeaderValue, current: Option<EntityTag<'_>>, strong: bool) -> Option<bool> {
    if trim_ows(field.as_bytes()) == b"*" {
        return None;
    }
    let Some(current) = current else {
        return Some(false);
    };
    Some(
        members(field.as_bytes())
            .filter_map(EntityTag::parse)
            .any(|tag| {
                if strong {
                    tag.strong_eq(&current)
                } else {
                    tag.weak_eq(&current)
                }
            }),
    )
}

impl Conditions {
    /// The precondition fields of a request's `headers`.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if !(headers.contains_key(IF_MATCH)
            || headers.contains_key(IF_NONE_MATCH)
            || headers.contains_key(IF_MODIFIED_SINCE)
            || headers.contains_key(IF_UNMODIFIED_SINCE))
        {
            return Self::default();
        }
        Self {
            if_match: list_field(headers, IF_MATCH),
            if_none_match: list_field(headers, IF_NONE_MATCH),
            if_modified_since: date_field(headers, IF_MODIFIED_SINCE),
            if_unmodified_since: date_field(headers, IF_UNMODIFIED_SINCE),
        }
    }

    /// Whether the request carries no precondition this crate evaluates.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Evaluates the preconditions for `method` against the current
    /// representation's validators (`None`: the resource has no current
    /// representation), in the order of RFC 9110 §13.2.2.
    #[must_use]
    pub fn evaluate(&self, method: &Method, current: Option<&crate::Validators>) -> Precondition {
        self.evaluate_current(method, current.map(crate::Validators::current))
    }

    pub(crate) fn evaluate_current(
        &self,
        method: &Method,
        current: Option<Current<'_>>,
    ) -> Precondition {
        let get_or_head = method == Method::GET || method == Method::HEAD;
        let last_modified = current
            .and_then(|c| c.last_modified)
            .map(truncate_to_second);
        // Step 1: If-Match (§13.1.1): `*` holds when a representation
        // exists; a list holds when a member matches strongly.
        if let Some(field) = &self.if_match {
            let holds =
                matches(field, current.and_then(|c| c.etag), true).unwrap_or(current.is_some());
            if !holds {
                return Precondition::Failed;
            }
        } else if let (Some(date), Some(modified)) = (self.if_unmodified_since, last_modified) {
            // Step 2: If-Unmodified-Since (§13.1.4), only without If-Match
            // and only when the modification date is known.
            if modified > date {
                return Precondition::Failed;
            }
        }
        // Step 3: If-None-Match (§13.1.2): `*` fails when a representation
        // exists; a list fails when a member matches weakly.
        if let Some(field) = &self.if_none_match {
            let matched =
                matches(field, current.and_then(|c| c.etag), false).unwrap_or(current.is_some());
            if matched {
                return if get_or_head {
                    Precondition::NotModified
                } else {
                    Precondition::Failed
                };
            }
        } else if let (true, Some(date), Some(modified)) =
            (get_or_head, self.if_modified_since, last_modified)
        {
            // Step 4: If-Modified-Since (§13.1.3), GET and HEAD only, only
            // without If-None-Match.
            if modified <= date {
                return Precondition::NotModified;
            }
        }
        Precondition::Proceed
    }
}
