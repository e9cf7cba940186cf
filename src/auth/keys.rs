//! In-memory caches of credentials, so the proxy never reads the disk per request.
//!
//! `KeyCache` maps the SHA-256 of every live `llmo_sk_` key to its owner; revoking a
//! key removes it here in the same call that writes the store, so it stops working at
//! once. `ProviderKeys` holds the decrypted provider keys for managed mode.
//! Both use a std `RwLock`: lookups are a hash probe, nothing is awaited while held.

use std::sync::{Arc, RwLock};

use super::api_key::KeyHash;
use crate::hash::FastMap;
use crate::providers::Provider;
use crate::store::model::ApiKeyRecord;

/// Who a live key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub key_id: Arc<str>,
    pub user_id: Arc<str>,
}

#[derive(Default)]
pub struct KeyCache {
    by_hash: RwLock<FastMap<KeyHash, KeyOwner>>,
}

impl KeyCache {
    /// Builds the cache from stored records, skipping revoked and unreadable ones.
    pub fn from_records(records: &[ApiKeyRecord]) -> KeyCache {
        let cache = KeyCache::default();
        for r in records {
            cache.insert(r);
        }
        cache
    }

    pub fn insert(&self, r: &ApiKeyRecord) {
        if r.revoked {
            return;
        }
        let Ok(bytes) = hex::decode(&r.hash_hex) else {
            return;
        };
        let Ok(hash) = KeyHash::try_from(bytes.as_slice()) else {
            return;
        };
        let owner = KeyOwner {
            key_id: Arc::from(r.id.as_str()),
            user_id: Arc::from(r.user_id.as_str()),
        };
        self.write().insert(hash, owner);
    }

    pub fn remove_key_id(&self, key_id: &str) {
        self.write().retain(|_, o| &*o.key_id != key_id);
    }

    pub fn remove_user(&self, user_id: &str) {
        self.write().retain(|_, o| &*o.user_id != user_id);
    }

    pub fn lookup(&self, hash: &KeyHash) -> Option<KeyOwner> {
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, FastMap<KeyHash, KeyOwner>> {
        self.by_hash.write().unwrap_or_else(|p| p.into_inner())
    }
}

type ProviderKeyMap = FastMap<(Arc<str>, Provider), Arc<str>>;

/// Decrypted provider keys for managed mode, by (account, provider).
#[derive(Default)]
pub struct ProviderKeys {
    map: RwLock<ProviderKeyMap>,
}

impl ProviderKeys {
    pub fn set(&self, user_id: &str, provider: Provider, key: &str) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((Arc::from(user_id), provider), Arc::from(key));
    }

    pub fn remove(&self, user_id: &str, provider: Provider) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(Arc::from(user_id), provider));
    }

    pub fn remove_user(&self, user_id: &str) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(u, _), _| &**u != user_id);
    }

    pub fn get(&self, user_id: &Arc<str>, provider: Provider) -> Option<Arc<str>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(user_id.clone(), provider))
            .cloned()
    }
}
