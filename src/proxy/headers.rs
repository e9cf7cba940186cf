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
/// us), and ours.
fn is_dropped_request_header(name: &str) -> bool {
    is_hop_by_hop(name)
        || matches!(name, "host" | "x-customer-id")
        || name.starts_with("x-llmobserve-")
}

/// Removes every header `drop` selects. A scan of the names per removal rather than a
/// `remove` per candidate name: most candidates are absent, and a scan is cheaper
/// than hashing each of them.
fn remove_where(h: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    // The name is copied to the stack to end the borrow of `h`: cloning a `HeaderName`
    // that is not a standard one allocates (`x-llmobserve-key` is on every call).
    let mut buf = [0u8; 64];
    while let Some(k) = h.keys().find(|k| drop(k.as_str())) {
        let name = k.as_str().as_bytes();
        let copied = buf.get_mut(..name.len()).and_then(|copy| {
            copy.copy_from_slice(name);
            std::str::from_utf8(copy).ok()
        });
        match copied {
            Some(name) => {
                h.remove(name);
            }
            None => {
                let k = k.clone();
                h.remove(k);
            }
        }
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

/// Prepares client headers for the upstream. `Content-Length` stays only when
/// `sent_len` is what it says, in one header: the body may have been rewritten or sent
/// chunked, and then hyper sets the length of what is sent (keeping a right one saves
/// formatting and allocating a new one per call).
pub fn clean_request_headers(h: &mut HeaderMap, sent_len: usize) {
    remove_connection_named(h);
    if plain_length(h) == Some(sent_len) {
        remove_where(h, is_dropped_request_header);
    } else {
        remove_where(h, |n| n == "content-length" || is_dropped_request_header(n));
    }
}

/// The length a single, digits-only `Content-Length` states (`+10` and `10, 10` parse
/// elsewhere, but are not forwarded as they are).
fn plain_length(h: &HeaderMap) -> Option<usize> {
    let mut values = h.get_all(header::CONTENT_LENGTH).iter();
    let v = values.next().filter(|_| values.next().is_none())?;
    let digits = std::str::from_utf8(v.as_bytes()).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
        let mut wrong_length = h.clone();
        clean_request_headers(&mut h, 10);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(h.contains_key("authorization"));
        assert!(h.contains_key("x-stainless-lang"));
        assert_eq!(h["content-length"], "10");
        // A rewritten body (or a length that is not the body's): hyper sets it.
        clean_request_headers(&mut wrong_length, 48);
        assert!(!wrong_length.contains_key("content-length"));
        for odd in ["+10", "10, 10", "0x0a", ""] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, odd.parse().unwrap());
            clean_request_headers(&mut h, 10);
            assert!(h.is_empty(), "{odd}");
        }
        let mut twice = HeaderMap::new();
        twice.append(header::CONTENT_LENGTH, "10".parse().unwrap());
        twice.append(header::CONTENT_LENGTH, "10".parse().unwrap());
        clean_request_headers(&mut twice, 10);
        assert!(twice.is_empty());
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
        clean_request_headers(&mut h, 0);
        assert_eq!(h, before);
    }

    #[test]
    fn long_names_are_removed_too() {
        let mut h = HeaderMap::new();
        let long = format!("x-llmobserve-{}", "a".repeat(80));
        h.insert(
            HeaderName::from_bytes(long.as_bytes()).unwrap(),
            "1".parse().unwrap(),
        );
        h.insert(header::AUTHORIZATION, "Bearer sk".parse().unwrap());
        clean_request_headers(&mut h, 0);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("authorization"));
    }
}
