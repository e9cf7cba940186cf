//! Password hashing with argon2id at the crate's defaults (m = 19 MiB, t = 2, p = 1:
//! the OWASP minimum). Both calls take ~20 ms of CPU: run them off the async runtime.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`). Blocking.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let h = Argon2::default().hash_password(password.as_bytes())?;
    Ok(h.to_string())
}

/// True if `password` matches `phc`. A malformed hash never matches. Blocking.
pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A valid hash of a random password, for verifying against when no account exists,
/// so a login for an unknown email costs the same time as one for a known email.
pub fn dummy_hash() -> &'static str {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::auth::api_key::SecretKey::generate();
        hash(random.expose()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("x", "not a hash"));
        assert!(!verify("x", dummy_hash()));
    }
}
