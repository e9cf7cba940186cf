//! Dashboard and script sessions: HS256 JWTs signed with the server's JWT secret
//! (`LLMO_JWT_SECRET`, else `jwt.secret` in the data dir; see `auth::secrets`).
//!
//! The admin listener issues a token at signup and login and checks it on every
//! authenticated request (`admin::extract::AuthUser`). Only HS256 is accepted, `exp`
//! is required and checked, and a token never lives longer than [`SESSION_TTL_SECS`].
//! A token also carries the account's session generation (`gen`): changing the
//! password bumps it, which voids every older token. A deleted account's tokens fail
//! because the account lookup after decoding finds nothing. Pure and cheap: no I/O.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// Longest session: 7 days.
pub const SESSION_TTL_SECS: u64 = 7 * 24 * 3600;
/// Clock skew tolerated on `exp` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;
/// Longest token we decode: ours are ~250 bytes; anything huge is refused unread.
const MAX_TOKEN_BYTES: usize = 4096;

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id.
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Random token id.
    pub jti: String,
    /// The account's `sessions_valid_after_ms` when the token was issued.
    #[serde(rename = "gen")]
    pub generation: i64,
}

/// Why a token was refused. Callers answer 401 for every variant; the message helps
/// script authors tell an expired token from a broken one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("session expired: log in again")]
    Expired,
    #[error("invalid session token")]
    Invalid,
    #[error("could not sign the session token")]
    Sign,
}

/// Signing and checking keys, built once from the 32-byte secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

/// A freshly issued token and when it expires (Unix seconds).
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_at_secs: u64,
}

impl JwtKeys {
    pub fn new(secret: &[u8; 32]) -> JwtKeys {
        // Only HS256: a token whose header names another algorithm (or `none`) fails.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `user_id` valid for [`SESSION_TTL_SECS`] from `now_secs`.
    pub fn issue(&self, user_id: &str, generation: i64, now_secs: u64) -> Result<Issued, JwtError> {
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now_secs,
            exp: now_secs + SESSION_TTL_SECS,
            jti: hex::encode(rand::rng().random::<[u8; 16]>()),
            generation,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| JwtError::Sign)?;
        Ok(Issued {
            token,
            expires_at_secs: claims.exp,
        })
    }

    /// Checks signature, algorithm and expiry; refuses tokens that claim a lifetime
    /// longer than we ever issue. Does not look the account up.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        use jsonwebtoken::errors::ErrorKind;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Invalid);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                _ => JwtError::Invalid,
            })?;
        let c = data.claims;
        // Never issued with a longer life, and never issued in the future.
        if c.exp.saturating_sub(c.iat) > SESSION_TTL_SECS || c.iat > now_secs() + LEEWAY_SECS {
            return Err(JwtError::Invalid);
        }
        Ok(c)
    }
}

/// Now, in Unix seconds.
pub fn now_secs() -> u64 {
    u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[9u8; 32])
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let now = now_secs();
        let t = k.issue("user1", 42, now).unwrap();
        assert_eq!(t.expires_at_secs, now + SESSION_TTL_SECS);
        let c = k.verify(&t.token).unwrap();
        assert_eq!(c.sub, "user1");
        assert_eq!(c.generation, 42);
        assert_eq!(c.exp - c.iat, SESSION_TTL_SECS);
    }

    #[test]
    fn refuses_other_secret_expired_and_garbage() {
        let now = now_secs();
        let t = keys().issue("u", 0, now).unwrap();
        assert_eq!(
            JwtKeys::new(&[1u8; 32]).verify(&t.token),
            Err(JwtError::Invalid)
        );
        let old = keys().issue("u", 0, now - SESSION_TTL_SECS - 60).unwrap();
        assert_eq!(keys().verify(&old.token), Err(JwtError::Expired));
        assert_eq!(keys().verify("garbage"), Err(JwtError::Invalid));
        assert_eq!(keys().verify(""), Err(JwtError::Invalid));
    }

    #[test]
    fn refuses_other_algorithms_and_long_lifetimes() {
        let now = now_secs();
        let claims = Claims {
            sub: "u".into(),
            iat: now,
            exp: now + 60,
            jti: "x".into(),
            generation: 0,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(&[9u8; 32]),
        )
        .unwrap();
        assert_eq!(keys().verify(&hs512), Err(JwtError::Invalid));
        let long = Claims {
            exp: now + SESSION_TTL_SECS * 10,
            ..claims
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &long,
            &EncodingKey::from_secret(&[9u8; 32]),
        )
        .unwrap();
        assert_eq!(keys().verify(&t), Err(JwtError::Invalid));
    }
}
