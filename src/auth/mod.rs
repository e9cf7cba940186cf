//! Credentials: `llmo_sk_` API keys, the in-memory key cache, and secrets at rest.

pub mod api_key;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod secrets;
pub mod sessions;
