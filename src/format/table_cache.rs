//! A bounded cache of metadata tables (qcow2 L2 tables and refcount blocks,
//! QED L2 tables), by host offset, with dirty tracking. When it is full,
//! the oldest clean table makes room; dirty tables stay until written, and
//! [`TableCache::wants_flush`] tells the writer when half the cache is dirty,
//! which bounds memory between flushes.

use crate::error::Result;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Memory that several table caches spend together: every image of a
/// backing chain draws on one budget, so a deep chain does not hold a full
/// cache per layer. A cache over the budget makes room by dropping its own
/// oldest clean tables (it keeps [`MIN_KEPT`] at least, and dirty ones until
/// they are written), so the total stays within the budget plus those.
#[derive(Debug)]
pub struct CacheBudget {
    limit: u64,
    used: AtomicU64,
}

impl CacheBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(CacheBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes cached now, by every cache drawing on the budget.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn over_with(&self, extra: u64) -> bool {
        self.used() + extra > self.limit
    }

    fn charge(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn refund(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Clean tables a cache keeps whatever the budget says (a lookup must be
/// able to hold the table it reads).
pub const MIN_KEPT: usize = 2;

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
    /// Counts the moments a copy read from the disk before then could be
    /// stale: tables written out (then evictable) or forgotten.
    generation: u64,
    /// The shared budget drawn on, and what one table costs in it.
    budget: Option<(Arc<CacheBudget>, u64)>,
}

impl<T> Drop for TableCache<T> {
    fn drop(&mut self) {
        if let Some((budget, bytes)) = &self.budget {
            budget.refund(self.tables.len() as u64 * bytes);
        }
    }
}

impl<T> TableCache<T> {
    /// A cache of at most `capacity` clean tables (at least 2).
    pub fn new(capacity: usize) -> Self {
        TableCache {
            tables: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(2),
            dirty: 0,
            generation: 0,
            budget: None,
        }
    }

    /// The same cache drawing on `budget` too, each table costing
    /// `table_bytes` (its size in memory). Only for an empty cache.
    pub fn with_budget(mut self, budget: Arc<CacheBudget>, table_bytes: u64) -> Self {
        debug_assert!(self.tables.is_empty(), "budget given to a filled cache");
        self.budget = Some((budget, table_bytes));
        self
    }

    /// The table at `offset`, read with `load` when it is not cached.
    pub fn get(&mut self, offset: u64, load: impl FnOnce() -> Result<Vec<T>>) -> Result<&[T]> {
        self.load_if_missing(offset, load)?;
        Ok(&self.tables[&offset].entries)
    }

    /// Moves the cache onto `budget` (from the one it drew on), with what
    /// it holds now; a cache without a budget is left as it is.
    pub fn move_to_budget(&mut self, budget: &Arc<CacheBudget>) {
        if let Some((old, bytes)) = &mut self.budget {
            let held = self.tables.len() as u64 * *bytes;
            old.refund(held);
            budget.charge(held);
            *old = budget.clone();
        }
        self.evict_clean();
    }

    /// The table at `offset` if it is cached (for readers under a shared lock).
    pub fn peek(&self, offset: u64) -> Option<&[T]> {
        self.tables.get(&offset).map(|t| t.entries.as_slice())
    }

    /// The current generation: a table read from the disk while it is
    /// unchanged may be cached with [`TableCache::insert_read`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Caches `entries`, read from the disk at `offset` without the lock
    /// held, as a clean table: only if no table is cached there and no
    /// table was written out or forgotten since `generation` (else the
    /// copy may be older than what the cache knew). Returns whether it was
    /// cached.
    pub fn insert_read(&mut self, offset: u64, entries: Vec<T>, generation: u64) -> bool {
        if self.generation != generation || self.tables.contains_key(&offset) {
            return false;
        }
        self.insert(offset, entries, false);
        true
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
            None => {
                self.order.push_back(offset);
                if let Some((budget, bytes)) = &self.budget {
                    budget.charge(*bytes);
                }
            }
        }
        if dirty {
            self.dirty += 1;
        }
    }

    /// Whether a new table must make room first: the cache is full, or
    /// the shared budget would be exceeded (and this cache has tables to give).
    fn needs_room(&self) -> bool {
        self.tables.len() >= self.capacity
            || self.budget.as_ref().is_some_and(|(budget, bytes)| {
                self.tables.len() >= MIN_KEPT && budget.over_with(*bytes)
            })
    }

    /// Makes room by dropping the oldest clean tables while needed.
    fn evict_clean(&mut self) {
        let mut scanned = 0;
        while self.needs_room() && scanned < self.order.len() {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.tables.get(&oldest).is_some_and(|t| t.dirty) {
                self.order.push_back(oldest);
                scanned += 1;
            } else {
                self.tables.remove(&oldest);
                if let Some((budget, bytes)) = &self.budget {
                    budget.refund(*bytes);
                }
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
        if wrote {
            self.generation += 1;
        }
        Ok(wrote)
    }

    /// Forgets every table (none may be dirty: their changes would be lost).
    pub fn clear(&mut self) {
        debug_assert_eq!(self.dirty, 0, "clearing dirty tables");
        if let Some((budget, bytes)) = &self.budget {
            budget.refund(self.tables.len() as u64 * bytes);
        }
        self.tables.clear();
        self.order.clear();
        self.generation += 1;
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
    fn a_table_read_without_the_lock_is_cached_only_if_nothing_changed() {
        let mut c = TableCache::new(4);
        let g = c.generation();
        assert!(c.insert_read(0, vec![1u8], g));
        assert_eq!(c.peek(0), Some(&[1u8][..]));
        // Already cached (perhaps changed since): the copy from disk is dropped.
        c.get_mut(0, load(0)).unwrap()[0] = 5;
        assert!(!c.insert_read(0, vec![1u8], c.generation()));
        assert_eq!(c.peek(0), Some(&[5u8][..]));
        // Written out meanwhile (and evictable): a copy read before is stale.
        let before = c.generation();
        c.write_dirty(|_, _| Ok(())).unwrap();
        assert!(!c.insert_read(8, vec![1u8], before));
        assert!(c.peek(8).is_none());
        assert!(c.insert_read(8, vec![1u8], c.generation()));
    }

    #[test]
    fn caches_sharing_a_budget_stay_within_it() {
        // Room for 4 tables of 100 bytes between two caches.
        let budget = CacheBudget::new(400);
        let mut a = TableCache::new(100).with_budget(budget.clone(), 100);
        let mut b = TableCache::new(100).with_budget(budget.clone(), 100);
        for i in 0..10 {
            a.get(i * 8, load(1)).unwrap();
            b.get(i * 8, load(2)).unwrap();
            assert!(budget.used() <= 400 + 2 * MIN_KEPT as u64 * 100);
        }
        assert!(budget.used() <= 400, "used {}", budget.used());
        // Dirty tables are never dropped for the budget.
        for i in 100..104 {
            a.get_mut(i * 8, load(3)).unwrap();
        }
        assert_eq!(
            a.get(800, || panic!("a dirty table was dropped")).unwrap()[0],
            3
        );
        // A cache moved to a smaller budget gives up clean tables.
        let small = CacheBudget::new(300);
        b.move_to_budget(&small);
        assert!(small.used() <= 300, "used {}", small.used());
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0, "dropped caches give their memory back");
        assert_eq!(small.used(), 0);
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
