//! Header hygiene both ways: hop-by-hop headers (RFC 9110 §7.6.1), our own
//! `X-LLMObserve-*` and `X-Customer-Id`, and `Host` (the client's would name us).

use http::HeaderMap;
use http::header::{self, HeaderName};

pub static X_CUSTOMER_ID: HeaderName = HeaderName::from_static("x-customer-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TRANSFER_ENCODING,
    &header::TE,
    &header::TRAILER,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.contains_key(header::CONNECTION) {
        for n in HOP_BY_HOP {
            h.remove(n);
        }
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
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Prepares client headers for the upstream.
pub fn clean_request_headers(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    h.remove(header::HOST);
    // The body may be rewritten; hyper sets the length of what is actually sent.
    h.remove(header::CONTENT_LENGTH);
    h.remove(&X_CUSTOMER_ID);
    // The key header by name (the common case, no allocation), then any other of ours.
    h.remove(&super::auth::X_LLMOBSERVE_KEY);
    while let Some(k) = h
        .keys()
        .find(|k| k.as_str().starts_with("x-llmobserve-"))
        .cloned()
    {
        h.remove(k);
    }
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
}
