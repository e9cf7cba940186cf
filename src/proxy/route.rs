//! The routing table: the only place an upstream is chosen.
//!
//! The first path segment names the provider (a bare `/v1` means OpenAI); the rest of
//! the path and the query are appended to that provider's configured base URL.
//! Nothing from the client (Host, headers, body) can change the upstream.

use crate::providers::Provider;

/// Splits a proxy path into its provider and the path to send upstream.
/// Returns `None` for an unknown prefix.
pub fn split(path: &str) -> Option<(Provider, &str)> {
    let rest = path.strip_prefix('/')?;
    let (first, tail_start) = match rest.find('/') {
        Some(i) => (&rest[..i], i + 1),
        None => (rest, rest.len() + 1),
    };
    let tail = if tail_start < path.len() {
        &path[tail_start..]
    } else {
        ""
    };
    match first {
        // `/v1/...` keeps its `/v1`: OpenAI's base URL has no version in it.
        "v1" => Some((Provider::OpenAi, path)),
        "openai" => {
            let t = if tail.is_empty() { "/" } else { tail };
            Some((Provider::OpenAi, t))
        }
        name => {
            let p = Provider::from_name(name)?;
            Some((p, if tail.is_empty() { "/" } else { tail }))
        }
    }
}

/// True when a path has a `.` or `..` segment, plain or percent-encoded: such paths
/// could climb out of the provider's base path upstream, so they are refused.
/// Allocation-free: it runs on every request.
pub fn has_dot_segment(path: &str) -> bool {
    let b = path.as_bytes();
    b.windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && w[2] | 0x20 == b'f')
        || b.split(|c| *c == b'/').any(is_dot_segment)
}

/// `.` or `..`, each dot plain or as `%2e`/`%2E`.
fn is_dot_segment(seg: &[u8]) -> bool {
    let mut dots = 0;
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if seg.len() - i >= 3
            && seg[i] == b'%'
            && seg[i + 1] == b'2'
            && seg[i + 2] | 0x20 == b'e'
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(
            split("/v1/chat/completions"),
            Some((Provider::OpenAi, "/v1/chat/completions"))
        );
        assert_eq!(
            split("/openai/v1/chat/completions"),
            Some((Provider::OpenAi, "/v1/chat/completions"))
        );
        assert_eq!(
            split("/anthropic/v1/messages"),
            Some((Provider::Anthropic, "/v1/messages"))
        );
        assert_eq!(
            split("/groq/v1/chat/completions"),
            Some((Provider::Groq, "/v1/chat/completions"))
        );
        assert_eq!(
            split("/gemini/v1beta/models/gemini-2.5-pro:generateContent"),
            Some((
                Provider::Gemini,
                "/v1beta/models/gemini-2.5-pro:generateContent"
            ))
        );
        assert_eq!(
            split("/azure/openai/deployments/d/chat/completions"),
            Some((Provider::Azure, "/openai/deployments/d/chat/completions"))
        );
        assert_eq!(split("/anthropic"), Some((Provider::Anthropic, "/")));
        assert_eq!(split("/nope/v1/x"), None);
        assert_eq!(split("/"), None);
        assert_eq!(split(""), None);
    }

    #[test]
    fn dot_segments() {
        assert!(has_dot_segment("/v1/../admin"));
        assert!(has_dot_segment("/v1/%2e%2e/admin"));
        assert!(has_dot_segment("/v1/%2E./admin"));
        assert!(has_dot_segment("/v1/a%2fb"));
        assert!(has_dot_segment("/v1/%2e"));
        assert!(has_dot_segment("/v1/.%2E/x"));
        assert!(has_dot_segment("/v1/A%2Fb"));
        assert!(!has_dot_segment("/v1/.../x"));
        assert!(!has_dot_segment("/v1/.x/..y"));
        assert!(!has_dot_segment("/v1/%2"));
        assert!(!has_dot_segment("/v1//x"));
        assert!(!has_dot_segment("/v1/chat/completions"));
        assert!(!has_dot_segment(
            "/v1beta/models/gemini-2.5-pro:generateContent"
        ));
    }
}
