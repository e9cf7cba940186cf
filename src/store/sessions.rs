//! Sessions ended by logout before they expire: their token ids (`jti`) and expiry,
//! kept so a logged-out token stays refused across restarts. Entries are pruned once
//! the token would have expired anyway.

use redb::{ReadableTable, TableDefinition};

use super::{Result, Store};

/// jti → the token's `exp` (Unix seconds).
pub const REVOKED_SESSIONS: TableDefinition<&str, u64> = TableDefinition::new("revoked_sessions");

impl Store {
    /// Records a logged-out token and drops entries that expired before `now_secs`.
    pub fn revoke_session(&self, jti: &str, exp_secs: u64, now_secs: u64) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(REVOKED_SESSIONS)?;
            t.retain(|_, exp| exp >= now_secs)?;
            t.insert(jti, exp_secs)?;
        }
        w.commit()?;
        Ok(())
    }

    /// Every logged-out token not yet expired at `now_secs`.
    pub fn revoked_sessions(&self, now_secs: u64) -> Result<Vec<(String, u64)>> {
        let r = self.db.begin_read()?;
        let t = match r.open_table(REVOKED_SESSIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if v.value() >= now_secs {
                out.push((k.value().to_owned(), v.value()));
            }
        }
        Ok(out)
    }
}
