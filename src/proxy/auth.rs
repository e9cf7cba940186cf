//! Finding and checking the caller's `llmo_sk_` key, in either mode of DESIGN.md:
//! pass-through (`X-LLMObserve-Key`, provider credential forwarded unchanged) or
//! managed (the key stands in a provider-key slot and is swapped for the stored one).

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

use super::error::ProxyError;
use crate::auth::api_key::{self, looks_like_key};
use crate::auth::keys::{KeyCache, KeyOwner};

pub static X_LLMOBSERVE_KEY: HeaderName = HeaderName::from_static("x-llmobserve-key");
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static API_KEY: HeaderName = HeaderName::from_static("api-key");
pub static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// Where a managed-mode key was found (and where it must be removed from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Authorization,
    XApiKey,
    ApiKey,
    XGoogApiKey,
    /// `?key=` in the query string (Gemini style).
    QueryKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PassThrough,
    Managed(Slot),
}

#[derive(Debug, Clone)]
pub struct Authed {
    pub owner: KeyOwner,
    pub mode: Mode,
}

/// Authenticates a request from its headers and query. No I/O: a memory lookup.
pub fn authenticate(
    headers: &HeaderMap,
    query: Option<&str>,
    keys: &KeyCache,
) -> Result<Authed, ProxyError> {
    if let Some(v) = headers.get(&X_LLMOBSERVE_KEY) {
        let key = v.to_str().map_err(|_| ProxyError::UnknownKey)?.trim();
        return verify(key, keys).map(|owner| Authed {
            owner,
            mode: Mode::PassThrough,
        });
    }
    let (key, slot) = find_managed_key(headers, query).ok_or(ProxyError::MissingKey)?;
    verify(key, keys).map(|owner| Authed {
        owner,
        mode: Mode::Managed(slot),
    })
}

fn verify(key: &str, keys: &KeyCache) -> Result<KeyOwner, ProxyError> {
    api_key::check_format(key).map_err(ProxyError::MalformedKey)?;
    keys.lookup(&api_key::hash_key(key))
        .ok_or(ProxyError::UnknownKey)
}

fn find_managed_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<(&'a str, Slot)> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if looks_like_key(token) {
            return Some((token, Slot::Authorization));
        }
    }
    for (name, slot) in [
        (&X_API_KEY, Slot::XApiKey),
        (&API_KEY, Slot::ApiKey),
        (&X_GOOG_API_KEY, Slot::XGoogApiKey),
    ] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            if looks_like_key(v) {
                return Some((v, slot));
            }
        }
    }
    let q = query?;
    q.split('&').find_map(|pair| {
        let v = pair.strip_prefix("key=")?;
        looks_like_key(v).then_some((v, Slot::QueryKey))
    })
}

/// The query string without its `key=` parameter (managed Gemini calls).
pub fn strip_query_key(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.starts_with("key=") && !p.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::ApiKeyRecord;

    fn cache_with(key: &api_key::SecretKey) -> KeyCache {
        KeyCache::from_records(&[ApiKeyRecord {
            id: "k1".into(),
            user_id: "u1".into(),
            name: "default".into(),
            prefix: key.display_prefix().into(),
            hash_hex: api_key::hex(&key.hash()),
            created_at_ms: 0,
            last_used_at_ms: None,
            revoked: false,
        }])
    }

    #[test]
    fn both_modes_and_every_slot() {
        let key = api_key::SecretKey::generate();
        let cache = cache_with(&key);
        let k = key.expose();

        let mut h = HeaderMap::new();
        h.insert("x-llmobserve-key", k.parse().unwrap());
        h.insert("authorization", "Bearer sk-real".parse().unwrap());
        let a = authenticate(&h, None, &cache).unwrap();
        assert_eq!(a.mode, Mode::PassThrough);
        assert_eq!(&*a.owner.user_id, "u1");

        for (name, value, slot) in [
            ("authorization", format!("Bearer {k}"), Slot::Authorization),
            ("x-api-key", k.to_string(), Slot::XApiKey),
            ("api-key", k.to_string(), Slot::ApiKey),
            ("x-goog-api-key", k.to_string(), Slot::XGoogApiKey),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            assert_eq!(
                authenticate(&h, None, &cache).unwrap().mode,
                Mode::Managed(slot)
            );
        }
        let q = format!("alt=sse&key={k}");
        let a = authenticate(&HeaderMap::new(), Some(&q), &cache).unwrap();
        assert_eq!(a.mode, Mode::Managed(Slot::QueryKey));
        assert_eq!(strip_query_key(&q), "alt=sse");
    }

    #[test]
    fn refusals() {
        let key = api_key::SecretKey::generate();
        let cache = cache_with(&key);
        let h = HeaderMap::new();
        assert!(matches!(
            authenticate(&h, None, &cache),
            Err(ProxyError::MissingKey)
        ));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-provider".parse().unwrap());
        assert!(matches!(
            authenticate(&h, None, &cache),
            Err(ProxyError::MissingKey)
        ));
        let mut h = HeaderMap::new();
        h.insert("x-llmobserve-key", "llmo_sk_short".parse().unwrap());
        assert!(matches!(
            authenticate(&h, None, &cache),
            Err(ProxyError::MalformedKey(_))
        ));
        let other = api_key::SecretKey::generate();
        let mut h = HeaderMap::new();
        h.insert("x-api-key", other.expose().parse().unwrap());
        assert!(matches!(
            authenticate(&h, None, &cache),
            Err(ProxyError::UnknownKey)
        ));
        cache.remove_key_id("k1");
        let mut h = HeaderMap::new();
        h.insert("x-api-key", k_of(&key).parse().unwrap());
        assert!(matches!(
            authenticate(&h, None, &cache),
            Err(ProxyError::UnknownKey)
        ));
    }

    fn k_of(k: &api_key::SecretKey) -> String {
        k.expose().to_string()
    }
}
