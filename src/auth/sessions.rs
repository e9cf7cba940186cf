//! Logged-out sessions in memory: checked on every authenticated admin request
//! (a hash probe under a std `RwLock`, nothing awaited while held).

use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct RevokedSessions {
    /// jti → exp (Unix seconds).
    map: RwLock<HashMap<String, u64>>,
}

impl RevokedSessions {
    pub fn from_entries(entries: Vec<(String, u64)>) -> RevokedSessions {
        RevokedSessions {
            map: RwLock::new(entries.into_iter().collect()),
        }
    }

    /// Adds a token id and forgets those already expired at `now_secs`.
    pub fn insert(&self, jti: &str, exp_secs: u64, now_secs: u64) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, exp| *exp >= now_secs);
        m.insert(jti.to_owned(), exp_secs);
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(jti)
    }
}
