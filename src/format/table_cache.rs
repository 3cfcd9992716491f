//! A bounded cache of metadata tables (qcow2 L2 tables and refcount blocks,
//! QED L2 tables), by host offset, with dirty tracking. When it is full,
//! the oldest clean table makes room; dirty tables stay until written, and
//! [`TableCache::wants_flush`] tells the writer when half the cache is dirty,
//! which bounds memory between flushes.

use crate::error::Result;
use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
struct Cached<T> {
    entries: Vec<T>,
    dirty: bool,
}

/// Tables of entries of type `T`, by the host offset they live at.
#[derive(Debug)]
pub(crate) struct TableCache<T> {
    tables: HashMap<u64, Cached<T>>,
    /// Offsets in the order they were cached (eviction order).
    order: VecDeque<u64>,
    capacity: usize,
    /// How many cached tables are dirty.
    dirty: usize,
}

impl<T> TableCache<T> {
    /// A cache of at most `capacity` clean tables (at least 2).
    pub fn new(capacity: usize) -> Self {
        TableCache {
            tables: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(2),
            dirty: 0,
        }
    }

    /// The table at `offset`, read with `load` when it is not cached.
    pub fn get(&mut self, offset: u64, load: impl FnOnce() -> Result<Vec<T>>) -> Result<&[T]> {
        self.load_if_missing(offset, load)?;
        Ok(&self.tables[&offset].entries)
    }

    /// The table at `offset` for changing (it becomes dirty), read with
    /// `load` when it is not cached.
    pub fn get_mut(
        &mut self,
        offset: u64,
        load: impl FnOnce() -> Result<Vec<T>>,
    ) -> Result<&mut [T]> {
        self.load_if_missing(offset, load)?;
        let table = self.tables.get_mut(&offset).expect("just cached");
        if !table.dirty {
            table.dirty = true;
            self.dirty += 1;
        }
        Ok(&mut table.entries)
    }

    fn load_if_missing(
        &mut self,
        offset: u64,
        load: impl FnOnce() -> Result<Vec<T>>,
    ) -> Result<()> {
        if !self.tables.contains_key(&offset) {
            let entries = load()?;
            self.insert(offset, entries, false);
        }
        Ok(())
    }

    /// Caches `entries` as the table at `offset`; a new table that must
    /// reach the disk is `dirty`.
    pub fn insert(&mut self, offset: u64, entries: Vec<T>, dirty: bool) {
        self.evict_clean();
        match self.tables.insert(offset, Cached { entries, dirty }) {
            Some(old) if old.dirty => self.dirty -= 1,
            Some(_) => {}
            None => self.order.push_back(offset),
        }
        if dirty {
            self.dirty += 1;
        }
    }

    /// Makes room by dropping the oldest clean tables while the cache is full.
    fn evict_clean(&mut self) {
        let mut scanned = 0;
        while self.tables.len() >= self.capacity && scanned < self.order.len() {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.tables.get(&oldest).is_some_and(|t| t.dirty) {
                self.order.push_back(oldest);
                scanned += 1;
            } else {
                self.tables.remove(&oldest);
            }
        }
    }

    /// Whether half the cache is dirty: time for a flush.
    pub fn wants_flush(&self) -> bool {
        self.dirty * 2 >= self.capacity
    }

    /// Writes every dirty table with `write(offset, entries)`, each marked
    /// clean once written. Returns whether anything was written.
    pub fn write_dirty(&mut self, mut write: impl FnMut(u64, &[T]) -> Result<()>) -> Result<bool> {
        let mut wrote = false;
        for (&offset, table) in self.tables.iter_mut().filter(|(_, t)| t.dirty) {
            write(offset, &table.entries)?;
            table.dirty = false;
            self.dirty -= 1;
            wrote = true;
        }
        Ok(wrote)
    }

    /// Forgets every table (none may be dirty: their changes would be lost).
    pub fn clear(&mut self) {
        debug_assert_eq!(self.dirty, 0, "clearing dirty tables");
        self.tables.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(v: u8) -> impl FnOnce() -> Result<Vec<u8>> {
        move || Ok(vec![v; 4])
    }

    #[test]
    fn dirty_tables_stay_and_clean_ones_make_room() {
        let mut c = TableCache::new(2);
        c.get_mut(0, load(1)).unwrap()[0] = 9;
        c.get(100, load(2)).unwrap();
        assert!(c.wants_flush(), "one dirty table of two");
        // Full: the clean table at 100 goes, the dirty one at 0 stays.
        c.get(200, load(3)).unwrap();
        assert_eq!(c.get(0, || panic!("evicted a dirty table")).unwrap()[0], 9);
        assert_eq!(c.get(100, load(7)).unwrap()[0], 7, "100 was read again");
        let mut written = Vec::new();
        assert!(c
            .write_dirty(|off, t| {
                written.push((off, t[0]));
                Ok(())
            })
            .unwrap());
        assert_eq!(written, vec![(0, 9)]);
        assert!(!c.wants_flush());
        assert!(!c.write_dirty(|_, _| panic!("nothing is dirty")).unwrap());
    }

    #[test]
    fn replacing_a_dirty_table_counts_it_once() {
        let mut c = TableCache::new(4);
        c.insert(0, vec![1u8], true);
        c.insert(0, vec![2u8], true);
        assert!(!c.wants_flush(), "one dirty table of four");
        c.insert(8, vec![3u8], true);
        assert!(c.wants_flush());
        let mut n = 0;
        c.write_dirty(|_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
    }
}
