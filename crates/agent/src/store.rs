//! Where the agent keeps its view across restarts: [`RedbViewStore`], a crash-safe file
//! (each update one fsync'd redb transaction, so a crash leaves the old or the new view,
//! never a mix), or [`MemoryViewStore`] for lightweight test agents.

use std::path::Path;

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use weft_southbound::{Commit, LocalView};

/// A persisted view.
pub trait ViewStore: Send + 'static {
    /// The view as last committed (empty, revision 0, if none).
    fn load(&mut self) -> Result<LocalView>;
    /// Persists one update atomically.
    fn commit(&mut self, commit: &Commit) -> Result<()>;
}

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The view in a redb file.
pub struct RedbViewStore {
    db: Database,
}

impl RedbViewStore {
    /// Opens (or creates) the file.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)
            .with_context(|| format!("opening the local view {}", path.display()))?;
        let w = db.begin_write()?;
        w.open_table(RECORDS)?;
        w.open_table(META)?;
        w.commit()?;
        Ok(RedbViewStore { db })
    }
}

impl ViewStore for RedbViewStore {
    fn load(&mut self) -> Result<LocalView> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let records = r.open_table(RECORDS)?;
        let mut view = LocalView {
            revision: meta.get("revision")?.map_or(0, |v| v.value()),
            ..LocalView::default()
        };
        for entry in records.iter()? {
            let (k, v) = entry?;
            view.records
                .insert(k.value().to_string(), v.value().to_vec());
        }
        Ok(view)
    }

    fn commit(&mut self, commit: &Commit) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut records = w.open_table(RECORDS)?;
            match commit {
                Commit::Replace { records: all, .. } => {
                    records.retain(|_, _| false)?;
                    for (k, v) in all {
                        records.insert(k.as_str(), v.as_slice())?;
                    }
                }
                Commit::Patch {
                    upserts, deletes, ..
                } => {
                    for k in deletes {
                        records.remove(k.as_str())?;
                    }
                    for r in upserts {
                        records.insert(r.key.as_str(), r.value.as_slice())?;
                    }
                }
            }
            let mut meta = w.open_table(META)?;
            meta.insert("revision", commit.revision())?;
        }
        w.commit().context("committing the local view")?;
        Ok(())
    }
}

/// A view kept in memory only (lost at restart): for lightweight agents in benchmarks.
#[derive(Default)]
pub struct MemoryViewStore {
    view: LocalView,
}

impl ViewStore for MemoryViewStore {
    fn load(&mut self) -> Result<LocalView> {
        Ok(self.view.clone())
    }

    fn commit(&mut self, commit: &Commit) -> Result<()> {
        self.view.apply(commit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_southbound::Record;

    #[test]
    fn redb_store_survives_reopen_and_applies_patches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("view.redb");
        {
            let mut s = RedbViewStore::open(&path).unwrap();
            assert_eq!(s.load().unwrap(), LocalView::default());
            s.commit(&Commit::Replace {
                revision: 4,
                records: [
                    ("a".to_string(), b"1".to_vec()),
                    ("b".to_string(), b"2".to_vec()),
                ]
                .into(),
            })
            .unwrap();
            s.commit(&Commit::Patch {
                revision: 9,
                upserts: vec![Record::new("c", b"3".to_vec())],
                deletes: vec!["a".into()],
            })
            .unwrap();
        }
        let mut s = RedbViewStore::open(&path).unwrap();
        let v = s.load().unwrap();
        assert_eq!(v.revision, 9);
        assert_eq!(v.records.keys().collect::<Vec<_>>(), ["b", "c"]);
        s.commit(&Commit::Replace {
            revision: 10,
            records: Default::default(),
        })
        .unwrap();
        assert!(s.load().unwrap().records.is_empty());
    }
}
