//! Account operations shared by the CLI (`llmobserve account create`) and the admin
//! API: creating accounts and keys, revoking keys, storing provider keys. Each one
//! writes the store and updates the in-memory caches together. Blocking (redb, argon2).

use crate::auth::api_key::{self, SecretKey};
use crate::providers::Provider;
use crate::state::AppState;
use crate::store::model::{ApiKeyRecord, ProviderKeyRecord, User};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("email is not valid")]
    BadEmail,
    #[error("password must be at least 8 characters")]
    WeakPassword,
    #[error("email already registered")]
    EmailTaken,
    #[error("not found")]
    NotFound,
    #[error("store: {0}")]
    Store(StoreError),
    #[error("password hashing failed")]
    Hash,
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => AccountError::EmailTaken,
            StoreError::NotFound => AccountError::NotFound,
            other => AccountError::Store(other),
        }
    }
}

/// Trimmed and lower-cased; `None` unless it looks like `local@domain.tld`.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && e.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@');
    ok.then_some(e)
}

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A freshly made key: the secret (shown once) and its stored record.
pub struct NewKey {
    pub secret: SecretKey,
    pub record: ApiKeyRecord,
}

fn new_key_record(user_id: &str, name: &str) -> NewKey {
    let secret = SecretKey::generate();
    let record = ApiKeyRecord {
        id: ulid::Ulid::generate().to_string(),
        user_id: user_id.to_owned(),
        name: name.to_owned(),
        prefix: secret.display_prefix().to_owned(),
        hash_hex: api_key::hex(&secret.hash()),
        created_at_ms: crate::time::now_ms(),
        last_used_at_ms: None,
        revoked: false,
    };
    NewKey { secret, record }
}

/// Creates an account and its first key. `password` may be `None` (CLI accounts).
/// Blocking: hashes the password and writes the store.
pub fn create_account(
    state: &AppState,
    email: &str,
    password: Option<&str>,
    name: Option<&str>,
) -> Result<(User, NewKey), AccountError> {
    let email = normalize_email(email).ok_or(AccountError::BadEmail)?;
    let password_hash = match password {
        Some(p) => {
            if p.chars().count() < MIN_PASSWORD_LEN || p.len() > MAX_PASSWORD_LEN {
                return Err(AccountError::WeakPassword);
            }
            Some(crate::auth::password::hash(p).map_err(|_| AccountError::Hash)?)
        }
        None => None,
    };
    let now = crate::time::now_ms();
    let user = User {
        id: ulid::Ulid::generate().to_string(),
        email,
        name: name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        password_hash,
        created_at_ms: now,
        sessions_valid_after_ms: 0,
    };
    let key = new_key_record(&user.id, "default");
    state.store.create_user_with_key(&user, &key.record)?;
    state.keys.insert(&key.record);
    Ok((user, key))
}

/// Creates another key for an account. Blocking.
pub fn create_api_key(state: &AppState, user_id: &str, name: &str) -> Result<NewKey, AccountError> {
    let key = new_key_record(user_id, name);
    state.store.insert_api_key(&key.record)?;
    state.keys.insert(&key.record);
    Ok(key)
}

/// Revokes a key of `user_id`; it stops working on the proxy at once. Blocking.
pub fn revoke_api_key(state: &AppState, user_id: &str, key_id: &str) -> Result<(), AccountError> {
    state.store.revoke_api_key(user_id, key_id)?;
    state.keys.remove_key_id(key_id);
    Ok(())
}

fn aad(user_id: &str, provider: Provider) -> Vec<u8> {
    format!("{user_id}/{}", provider.as_str()).into_bytes()
}

/// Stores (or replaces) a provider key for managed mode, encrypted at rest. Blocking.
pub fn set_provider_key(
    state: &AppState,
    user_id: &str,
    provider: Provider,
    key: &str,
) -> Result<ProviderKeyRecord, AccountError> {
    let last4: String = {
        let chars: Vec<char> = key.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    let rec = ProviderKeyRecord {
        provider,
        sealed: state
            .secret_box
            .seal(key.as_bytes(), &aad(user_id, provider)),
        last4,
        updated_at_ms: crate::time::now_ms(),
    };
    state.store.put_provider_key(user_id, &rec)?;
    state.provider_keys.set(user_id, provider, key);
    Ok(rec)
}

/// Removes a provider key. Blocking.
pub fn delete_provider_key(
    state: &AppState,
    user_id: &str,
    provider: Provider,
) -> Result<(), AccountError> {
    state
        .store
        .delete_provider_key(user_id, provider.as_str())?;
    state.provider_keys.remove(user_id, provider);
    Ok(())
}

/// Fills the managed-mode cache from the store at start. Keys that cannot be opened
/// (the server key changed) are skipped with a warning.
pub fn load_provider_keys(state: &AppState) -> Result<(), StoreError> {
    for (user_id, rec) in state.store.all_provider_keys()? {
        match state
            .secret_box
            .open(&rec.sealed, &aad(&user_id, rec.provider))
        {
            Ok(plain) => match String::from_utf8(plain) {
                Ok(k) => state.provider_keys.set(&user_id, rec.provider, &k),
                Err(_) => {
                    tracing::warn!(provider = %rec.provider, "stored provider key is not text")
                }
            },
            Err(_) => tracing::warn!(
                provider = %rec.provider,
                "stored provider key cannot be decrypted (was LLMO_SECRET_KEY or secret.key changed?)"
            ),
        }
    }
    Ok(())
}

/// Opens a store for one-off CLI work without starting listeners.
pub fn open_store(data_dir: &std::path::Path) -> Result<Store, StoreError> {
    Store::open(&data_dir.join("llmobserve.redb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(normalize_email("nope"), None);
        assert_eq!(normalize_email("a@b"), None);
        assert_eq!(normalize_email("a b@c.d"), None);
        assert_eq!(normalize_email("@c.d"), None);
    }
}
