//! Precondition evaluation, one row per rule of RFC 9110 §13.1 and the
//! order of §13.2.2, against a representation with `ETag: "v2"` and
//! `Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT`.

use std::time::{Duration, UNIX_EPOCH};

use buttress_http::header::ETag;
use buttress_http::{Conditions, Precondition, Validators};
use http::{HeaderMap, HeaderValue, Method};

use Precondition::{Failed, NotModified, Proceed};

const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const EARLIER: &str = "Sat, 05 Nov 1994 08:49:37 GMT";
const LATER: &str = "Mon, 07 Nov 1994 08:49:37 GMT";

fn current() -> Validators {
    Validators::new()
        .with_etag(ETag::strong("v2").unwrap())
        // Sub-second part: compared at the second (§5.6.7's resolution).
        .with_last_modified(UNIX_EPOCH + Duration::from_millis(784_111_777_250))
}

struct Row {
    rule: &'static str,
    method: Method,
    fields: &'static [(&'static str, &'static str)],
    /// Against the current representation.
    present: Precondition,
    /// Against no current representation.
    absent: Precondition,
}

fn rows() -> Vec<Row> {
    use Method as M;
    let r = |rule, method, fields, present, absent| Row {
        rule,
        method,
        fields,
        present,
        absent,
    };
    vec![
        r("§13.2.2 no precondition", M::GET, &[], Proceed, Proceed),
        // §13.1.1 If-Match
        r(
            "§13.1.1 If-Match strong match holds",
            M::PUT,
            &[("if-match", r#""v1", "v2""#)],
            Proceed,
            Failed,
        ),
        r(
            "§13.1.1 If-Match mismatch fails: 412",
            M::PUT,
            &[("if-match", r#""v1""#)],
            Failed,
            Failed,
        ),
        r(
            "§13.1.1 If-Match uses strong comparison: weak never matches",
            M::PUT,
            &[("if-match", r#"W/"v2""#)],
            Failed,
            Failed,
        ),
        r(
            "§13.1.1 If-Match: * holds iff a representation exists",
            M::PUT,
            &[("if-match", "*")],
            Proceed,
            Failed,
        ),
        r(
            "§13.1.1 If-Match fails on GET too",
            M::GET,
            &[("if-match", r#""v1""#)],
            Failed,
            Failed,
        ),
        r(
            "§13.1.1 If-Match members that are not entity tags match nothing",
            M::PUT,
            &[("if-match", "v2")],
            Failed,
            Failed,
        ),
        // §13.1.2 If-None-Match
        r(
            "§13.1.2 If-None-Match weak match on GET: 304",
            M::GET,
            &[("if-none-match", r#"W/"v2""#)],
            NotModified,
            Proceed,
        ),
        r(
            "§13.1.2 If-None-Match match on HEAD: 304",
            M::HEAD,
            &[("if-none-match", r#""x", "v2""#)],
            NotModified,
            Proceed,
        ),
        r(
            "§13.1.2 If-None-Match match on POST: 412",
            M::POST,
            &[("if-none-match", r#""v2""#)],
            Failed,
            Proceed,
        ),
        r(
            "§13.1.2 If-None-Match: * on PUT: create only if absent",
            M::PUT,
            &[("if-none-match", "*")],
            Failed,
            Proceed,
        ),
        r(
            "§13.1.2 If-None-Match: * on GET: 304",
            M::GET,
            &[("if-none-match", "*")],
            NotModified,
            Proceed,
        ),
        r(
            "§13.1.2 If-None-Match no match proceeds",
            M::GET,
            &[("if-none-match", r#""v1""#)],
            Proceed,
            Proceed,
        ),
        // §13.1.3 If-Modified-Since
        r(
            "§13.1.3 not modified since the date: 304",
            M::GET,
            &[("if-modified-since", MODIFIED)],
            NotModified,
            Proceed,
        ),
        r(
            "§13.1.3 later date: 304",
            M::HEAD,
            &[("if-modified-since", LATER)],
            NotModified,
            Proceed,
        ),
        r(
            "§13.1.3 modified after the date proceeds",
            M::GET,
            &[("if-modified-since", EARLIER)],
            Proceed,
            Proceed,
        ),
        r(
            "§13.1.3 ignored unless GET or HEAD",
            M::POST,
            &[("if-modified-since", LATER)],
            Proceed,
            Proceed,
        ),
        r(
            "§13.1.3 ignored when not a valid HTTP-date",
            M::GET,
            &[("if-modified-since", "yesterday")],
            Proceed,
            Proceed,
        ),
        r(
            "§13.1.3 ignored with more than one member",
            M::GET,
            &[("if-modified-since", LATER), ("if-modified-since", LATER)],
            Proceed,
            Proceed,
        ),
        // §13.1.4 If-Unmodified-Since
        r(
            "§13.1.4 unmodified since the date holds",
            M::PUT,
            &[("if-unmodified-since", MODIFIED)],
            Proceed,
            Proceed,
        ),
        r(
            "§13.1.4 modified after the date: 412",
            M::PUT,
            &[("if-unmodified-since", EARLIER)],
            Failed,
            Proceed,
        ),
        r(
            "§13.1.4 ignored when not a valid HTTP-date",
            M::PUT,
            &[("if-unmodified-since", "0")],
            Proceed,
            Proceed,
        ),
        // §13.2.2 order of precedence
        r(
            "§13.2.2 step 1: If-Match holding skips If-Unmodified-Since",
            M::PUT,
            &[("if-match", r#""v2""#), ("if-unmodified-since", EARLIER)],
            Proceed,
            Failed,
        ),
        r(
            "§13.2.2 step 1 before step 3: If-Match fails first",
            M::GET,
            &[("if-match", r#""v1""#), ("if-none-match", r#""v2""#)],
            Failed,
            Failed,
        ),
        r(
            "§13.2.2 step 2 before step 3",
            M::GET,
            &[
                ("if-unmodified-since", EARLIER),
                ("if-none-match", r#""v2""#),
            ],
            Failed,
            Proceed,
        ),
        r(
            "§13.2.2 step 3 ignores If-Modified-Since: no match proceeds",
            M::GET,
            &[("if-none-match", r#""v1""#), ("if-modified-since", LATER)],
            Proceed,
            Proceed,
        ),
        r(
            "§13.2.2 step 3 then 304",
            M::GET,
            &[("if-match", r#""v2""#), ("if-none-match", r#""v2""#)],
            NotModified,
            Failed,
        ),
    ]
}

#[test]
fn rfc9110_13_2_2_table() {
    for row in rows() {
        let mut headers = HeaderMap::new();
        for (name, value) in row.fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let conditions = Conditions::from_headers(&headers);
        assert_eq!(
            conditions.evaluate(&row.method, Some(&current())),
            row.present,
            "{} (present)",
            row.rule
        );
        assert_eq!(
            conditions.evaluate(&row.method, None),
            row.absent,
            "{} (absent)",
            row.rule
        );
    }
}

#[test]
fn rfc9110_13_1_1_without_an_etag_a_list_never_matches() {
    let mut headers = HeaderMap::new();
    headers.insert("if-match", HeaderValue::from_static(r#""v2""#));
    let conditions = Conditions::from_headers(&headers);
    let only_date = Validators::new().with_last_modified(UNIX_EPOCH);
    assert_eq!(conditions.evaluate(&Method::PUT, Some(&only_date)), Failed);
}

#[test]
fn rfc9110_5_3_list_fields_on_several_lines_combine() {
    let mut headers = HeaderMap::new();
    headers.append("if-none-match", HeaderValue::from_static(r#""v1""#));
    headers.append("if-none-match", HeaderValue::from_static(r#""v2""#));
    let conditions = Conditions::from_headers(&headers);
    assert_eq!(
        conditions.evaluate(&Method::GET, Some(&current())),
        NotModified
    );
}
