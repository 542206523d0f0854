//! The embedded account store (redb, the seed's BoltDB): open, seed idempotently, look up.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// id → name. The account has no other stored field; the rest of the response is computed.
const ACCOUNTS: TableDefinition<&str, &str> = TableDefinition::new("accounts");

/// How many accounts the seed creates: ids `10000`..`10099`, names `Person_0`..`Person_99`.
pub const SEED_COUNT: u32 = 100;

/// First seeded id.
pub const FIRST_ID: u32 = 10_000;

/// Errors of the account store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened (locked by another process,
    /// not a redb file, no permission).
    #[error("opening the account database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: redb::DatabaseError,
    },
    /// A transaction, table or storage operation failed.
    #[error("account database: {0}")]
    Redb(#[from] redb::Error),
}

/// Converts any of redb's per-operation error types into [`StoreError::Redb`].
fn db_err(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb(err.into())
}

/// One stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The key, e.g. `"10000"`.
    pub id: String,
    /// e.g. `"Person_0"`.
    pub name: String,
}

/// The account store. redb is thread-safe and MVCC: readers never block on each other
/// or on the writer, so one shared instance serves all requests without a lock of ours.
#[derive(Debug)]
pub struct Store {
    // Declared before `released`: fields drop in order, so the file is closed before the
    // signal fires.
    db: Database,
    released: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Store {
    /// Opens the database at `path`, creating the file if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { db, released: None })
    }

    /// A signal that fires once this store is dropped and its file closed. A server shares
    /// the store with every connection task, and the last of them may let go only after the
    /// server's own task returned; whoever reopens the file (a restart in the same process)
    /// waits for this instead of racing it (`DatabaseAlreadyOpen`).
    pub fn release_signal(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.released = Some(tx);
        rx
    }

    /// Inserts the seed accounts that are missing; never overwrites an existing one, so a
    /// restart neither duplicates nor resets data. Returns how many were inserted.
    pub fn seed(&self) -> Result<u32, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut inserted = 0;
        {
            let mut table = txn.open_table(ACCOUNTS).map_err(db_err)?;
            for n in 0..SEED_COUNT {
                let id = (FIRST_ID + n).to_string();
                if table.get(id.as_str()).map_err(db_err)?.is_none() {
                    table
                        .insert(id.as_str(), format!("Person_{n}").as_str())
                        .map_err(db_err)?;
                    inserted += 1;
                }
            }
        }
        // Committing an unchanged transaction is cheap and also creates the table on a new file.
        txn.commit().map_err(db_err)?;
        Ok(inserted)
    }

    /// The account with `id`, if any.
    ///
    /// Called directly on the async worker: a read is a B-tree lookup in redb's page cache
    /// (microseconds), cheaper than a hop to the blocking pool would be.
    pub fn get(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(ACCOUNTS) {
            Ok(table) => table,
            // A database nobody seeded yet simply has no accounts.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(db_err(err)),
        };
        let name = table.get(id).map_err(db_err)?;
        Ok(name.map(|name| Account {
            id: id.to_owned(),
            name: name.value().to_owned(),
        }))
    }

    /// Inserts or replaces one account.
    pub fn put(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(ACCOUNTS)
            .map_err(db_err)?
            .insert(id, name)
            .map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    /// How many accounts are stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        match txn.open_table(ACCOUNTS) {
            Ok(table) => table.len().map_err(db_err),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(err) => Err(db_err(err)),
        }
    }

    /// The health probe: the store answers a read transaction on the accounts table.
    pub fn ping(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        txn.open_table(ACCOUNTS).map_err(db_err)?;
        Ok(())
    }
}
