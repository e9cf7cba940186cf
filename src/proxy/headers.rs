//! Header hygiene both ways: hop-by-hop headers (RFC 9110 §7.6.1), our own
//! `X-LLMObserve-*` and `X-Customer-Id`, and `Host` (the client's would name us).

use http::HeaderMap;
use http::header::{self, HeaderName};

pub static X_CUSTOMER_ID: HeaderName = HeaderName::from_static("x-customer-id");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `Proxy-Connection` and
/// `Keep-Alive`), by their lower-case names.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
    )
}

/// Client headers the upstream must not see: hop-by-hop ones, `Host` (it would name
/// us), `Content-Length` (the body may be rewritten; hyper sets the length of what is
/// sent), and ours.
fn is_dropped_request_header(name: &str) -> bool {
    is_hop_by_hop(name)
        || matches!(name, "host" | "content-length" | "x-customer-id")
        || name.starts_with("x-llmobserve-")
}

/// Removes every header `drop` selects. A scan of the names per removal rather than a
/// `remove` per candidate name: most candidates are absent, and a scan is cheaper
/// than hashing each of them.
fn remove_where(h: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    while let Some(k) = h.keys().find(|k| drop(k.as_str())).cloned() {
        h.remove(k);
    }
}

/// Removes the headers a `Connection` header names (they are hop-by-hop too).
fn remove_connection_named(h: &mut HeaderMap) {
    if !h.contains_key(header::CONNECTION) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    remove_connection_named(h);
    remove_where(h, is_hop_by_hop);
}

/// Prepares client headers for the upstream.
pub fn clean_request_headers(h: &mut HeaderMap) {
    remove_connection_named(h);
    remove_where(h, is_dropped_request_header);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_what_it_must() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:8080"),
            ("connection", "keep-alive, x-foo"),
            ("x-foo", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-llmobserve-key", "llmo_sk_x"),
            ("x-llmobserve-anything", "1"),
            ("x-customer-id", "alice"),
            ("content-length", "10"),
            ("authorization", "Bearer sk"),
            ("x-stainless-lang", "python"),
        ] {
            h.insert(HeaderName::from_static(k), v.parse().unwrap());
        }
        clean_request_headers(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key("authorization"));
        assert!(h.contains_key("x-stainless-lang"));
    }

    #[test]
    fn response_keeps_end_to_end_headers_only() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-upstream-hop"),
            ("x-upstream-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("content-type", "application/json"),
            ("x-request-id", "req_1"),
            ("openai-processing-ms", "12"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        h.append(header::CONNECTION, "close".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["content-type", "openai-processing-ms", "x-request-id"]
        );
    }

    #[test]
    fn nothing_to_drop_leaves_the_map_as_it_was() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer sk".parse().unwrap());
        h.append(
            HeaderName::from_static("x-stainless-arch"),
            "x64".parse().unwrap(),
        );
        let before = h.clone();
        clean_request_headers(&mut h);
        assert_eq!(h, before);
    }
}
