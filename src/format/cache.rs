//! A small bounded cache of metadata tables (L2 tables), keyed by host offset.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A bounded map from table offset to decoded table. When full, the table
/// loaded longest ago is evicted, so memory stays bounded whatever the image size.
#[derive(Debug)]
pub struct TableCache<T> {
    inner: Mutex<CacheInner<T>>,
    capacity: usize,
}

#[derive(Debug)]
struct CacheInner<T> {
    tables: HashMap<u64, Arc<T>>,
    order: VecDeque<u64>,
}

impl<T> TableCache<T> {
    /// A cache holding at most `capacity` tables (at least one).
    pub fn new(capacity: usize) -> Self {
        TableCache {
            inner: Mutex::new(CacheInner {
                tables: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// The table at `offset`, loading it with `load` when it is not cached.
    pub fn get_or_load<E>(
        &self,
        offset: u64,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(t) = self.lock().tables.get(&offset) {
            return Ok(t.clone());
        }
        let table = Arc::new(load()?);
        let mut inner = self.lock();
        if !inner.tables.contains_key(&offset) {
            while inner.tables.len() >= self.capacity {
                match inner.order.pop_front() {
                    Some(old) => {
                        inner.tables.remove(&old);
                    }
                    None => break,
                }
            }
            inner.order.push_back(offset);
            inner.tables.insert(offset, table.clone());
        }
        Ok(table)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner<T>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every mutation is a single insert/remove), so poison is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
