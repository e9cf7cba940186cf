//! Server secrets: loaded from the environment or generated once into the data dir,
//! and the AEAD box that seals provider keys at rest.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngExt;
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// Returns 32 secret bytes: derived from `configured` when given (any string, hashed
/// with SHA-256), else read from `dir/file_name`, else generated and written there
/// with mode 0600.
pub fn load_or_create(
    configured: Option<&str>,
    dir: &Path,
    file_name: &str,
) -> std::io::Result<[u8; 32]> {
    if let Some(s) = configured.filter(|s| !s.is_empty()) {
        return Ok(Sha256::digest(s.as_bytes()).into());
    }
    let path = dir.join(file_name);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let decoded = hex::decode(text.trim()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not 64 hex characters", path.display()),
                )
            })?;
            <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not 64 hex characters", path.display()),
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::rng().fill(&mut secret);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path)?;
            f.write_all(hex::encode(secret).as_bytes())?;
            f.sync_all()?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

/// Seals and opens small secrets (provider keys) with ChaCha20-Poly1305.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sealed secret could not be opened (wrong server key or corrupt data)")]
pub struct OpenError;

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// nonce ‖ ciphertext. `aad` binds the secret to its owner and slot.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let payload = chacha20poly1305::aead::Payload {
            msg: plaintext,
            aad,
        };
        // Encryption of an in-memory buffer cannot fail for ChaCha20-Poly1305.
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let payload = chacha20poly1305::aead::Payload { msg: ct, aad };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let b = SecretBox::new(&[7u8; 32]);
        let s = b.seal(b"sk-secret", b"user1/openai");
        assert!(!s.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(b.open(&s, b"user1/openai").unwrap(), b"sk-secret");
        assert!(b.open(&s, b"user2/openai").is_err());
        assert!(
            SecretBox::new(&[8u8; 32])
                .open(&s, b"user1/openai")
                .is_err()
        );
    }

    #[test]
    fn generated_secret_persists_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(None, dir.path(), "jwt.secret").unwrap();
        let b = load_or_create(None, dir.path(), "jwt.secret").unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt.secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let c = load_or_create(Some("configured"), dir.path(), "jwt.secret").unwrap();
        assert_ne!(a, c);
    }
}
