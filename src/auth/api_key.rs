//! `llmo_sk_` API keys: generation, format check, hashing.
//!
//! A key is `llmo_sk_` followed by 40 random base62 characters (238 bits). Only its
//! SHA-256 is stored; the first 12 characters are kept as a display prefix.

use rand::RngExt;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "llmo_sk_";
const RANDOM_LEN: usize = 40;
/// Shortest random part we accept (DESIGN: at least 32 base62 characters).
const MIN_RANDOM_LEN: usize = 32;
/// Longest key we accept, so a hostile header cannot make us hash megabytes.
const MAX_KEY_LEN: usize = 128;
const DISPLAY_LEN: usize = 12;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A full secret key. Its `Debug` shows only the display prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}…)", self.display_prefix())
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> SecretKey {
        let mut rng = rand::rng();
        let mut s = String::with_capacity(KEY_PREFIX.len() + RANDOM_LEN);
        s.push_str(KEY_PREFIX);
        for _ in 0..RANDOM_LEN {
            s.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
        }
        SecretKey(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_LEN.min(self.0.len())]
    }

    pub fn hash(&self) -> KeyHash {
        hash_key(&self.0)
    }
}

/// SHA-256 of a full key.
pub type KeyHash = [u8; 32];

pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// True if `s` starts like one of our keys (used to tell managed mode from a provider key).
pub fn looks_like_key(s: &str) -> bool {
    s.starts_with(KEY_PREFIX)
}

/// Why a presented key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key does not start with llmo_sk_")]
    Prefix,
    #[error("the key is too short or too long")]
    Length,
    #[error("the key has characters other than letters and digits after llmo_sk_")]
    Charset,
}

/// Checks the shape of a presented key: `llmo_sk_` + 32..=120 base62 characters.
pub fn check_format(key: &str) -> Result<(), KeyFormatError> {
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return Err(KeyFormatError::Prefix);
    };
    if rest.len() < MIN_RANDOM_LEN || key.len() > MAX_KEY_LEN {
        return Err(KeyFormatError::Length);
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::Charset);
    }
    Ok(())
}

pub fn hex(h: &KeyHash) -> String {
    ::hex::encode(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        assert_ne!(a, b);
        assert_eq!(check_format(a.expose()), Ok(()));
        assert_eq!(a.expose().len(), 48);
        assert_eq!(a.display_prefix().len(), 12);
        assert!(!format!("{a:?}").contains(&a.expose()[12..]));
    }

    #[test]
    fn format_errors() {
        assert_eq!(check_format("sk-abc"), Err(KeyFormatError::Prefix));
        assert_eq!(check_format("llmo_sk_short"), Err(KeyFormatError::Length));
        let bad = format!("llmo_sk_{}!", "a".repeat(32));
        assert_eq!(check_format(&bad), Err(KeyFormatError::Charset));
        let long = format!("llmo_sk_{}", "a".repeat(200));
        assert_eq!(check_format(&long), Err(KeyFormatError::Length));
    }
}
