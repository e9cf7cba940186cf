//! The open database behind a lock, so the writer can reopen it after an I/O error
//! (redb refuses every later operation with `PreviousIo` until the file is reopened),
//! and an optional fault switch that makes the file fail writes like a full disk.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redb::backends::FileBackend;
use redb::{
    BackendError, Database, ReadTransaction, ReadableDatabase, StorageBackend, WriteTransaction,
};

use super::StoreError;

/// Makes the database file fail writes and syncs with ENOSPC while switched on.
/// Only tests switch it; production opens the plain file backend.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    failing: AtomicBool,
}

impl FaultSwitch {
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), std::io::Error> {
        if self.failing.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }
}

/// redb's page cache by default (its own default is 1 GiB, which shows up as RSS that
/// grows with the database file until it reaches that size).
pub const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

pub(super) struct DbHandle {
    path: PathBuf,
    cache_bytes: usize,
    faults: Option<Arc<FaultSwitch>>,
    db: RwLock<Option<Arc<Database>>>,
}

impl DbHandle {
    pub(super) fn open(
        path: &Path,
        cache_bytes: usize,
        faults: Option<Arc<FaultSwitch>>,
    ) -> Result<DbHandle, StoreError> {
        let db = open_db(path, cache_bytes, faults.as_ref())?;
        Ok(DbHandle {
            path: path.to_owned(),
            cache_bytes,
            faults,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    fn current(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Reopening)
    }

    pub(super) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.current()?.begin_read()?)
    }

    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        Ok(self.current()?.begin_write()?)
    }

    /// Closes and reopens the file (running redb's repair if needed). Blocking; retried
    /// by the caller until it succeeds. Readers get `Reopening` meanwhile.
    pub(super) fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take() {
            // Read transactions in flight hold their own references; the file closes
            // when the last one ends, so opening may need a retry.
            drop(old);
        }
        let db = open_db(&self.path, self.cache_bytes, self.faults.as_ref())?;
        *slot = Some(Arc::new(db));
        Ok(())
    }
}

fn open_db(
    path: &Path,
    cache_bytes: usize,
    faults: Option<&Arc<FaultSwitch>>,
) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    let db = match faults {
        None => builder.create(path)?,
        Some(switch) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| StoreError::Db(redb::Error::Io(e)))?;
            let inner = FileBackend::new(file)?;
            builder.create_with_backend(FaultyBackend {
                inner,
                switch: switch.clone(),
            })?
        }
    };
    Ok(db)
}

/// A file backend whose writes fail while the switch is on.
struct FaultyBackend {
    inner: FileBackend,
    switch: Arc<FaultSwitch>,
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultyBackend")
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.switch.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.switch.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.switch.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}
