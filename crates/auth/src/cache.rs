//! A small in-memory cache of facts read from the database (valid API tokens, current
//! users) that an invalidation always wins against.
//!
//! The race it closes: a request misses the cache and reads the database; before it
//! stores what it read, a revocation (token revoked, user deleted or changed) deletes the
//! row and clears the cache; the request then stores the stale fact, which a plain cache
//! would keep serving until restart. Here every invalidation bumps a **generation**
//! counter under the cache's write lock, after its database change committed. A loader
//! takes the generation before its database read, and stores what it read only if the
//! generation is unchanged, checked under the same write lock. If it changed, an
//! invalidation committed in between, so the loader reads the database once more and
//! answers with that, without caching it: the invalidation wins whatever the
//! interleaving, and even the request that raced it sees its effect.
//!
//! Only present values are cached (a random token cannot fill the cache); the size is
//! bounded (a full cache is cleared), and entries may expire after a time to live.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub(crate) struct Cache<K, V> {
    inner: RwLock<Inner<K, V>>,
    max_entries: usize,
    ttl: Option<Duration>,
    /// Test hook: pauses a loader between its database read and its insert.
    #[cfg(test)]
    pause: std::sync::Mutex<Option<Pause>>,
}

/// Tells the test that a loader has read the database (first), then waits for the test
/// to let it go on (second).
#[cfg(test)]
pub(crate) type Pause = (tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Receiver<()>);

struct Inner<K, V> {
    generation: u64,
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub(crate) fn new(max_entries: usize, ttl: Option<Duration>) -> Self {
        Self {
            inner: RwLock::new(Inner { generation: 0, entries: HashMap::new() }),
            max_entries,
            ttl,
            #[cfg(test)]
            pause: Default::default(),
        }
    }

    /// The cached value, or `load`'s answer (cached if present and no invalidation
    /// happened during the load; see the module documentation).
    pub(crate) async fn get_or_load<E, F, Fut>(&self, key: K, load: F) -> Result<Option<V>, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let generation = {
            let inner = self.inner.read().expect("cache lock");
            if let Some((v, at)) = inner.entries.get(&key)
                && self.ttl.is_none_or(|ttl| at.elapsed() < ttl)
            {
                return Ok(Some(v.clone()));
            }
            inner.generation
        };
        let Some(value) = load().await? else { return Ok(None) };
        #[cfg(test)]
        self.pause_if_asked().await;
        {
            let mut inner = self.inner.write().expect("cache lock");
            if inner.generation == generation {
                if inner.entries.len() >= self.max_entries {
                    inner.entries.clear();
                }
                inner.entries.insert(key, (value.clone(), Instant::now()));
                return Ok(Some(value));
            }
        }
        // An invalidation committed after our read: read again, and do not cache.
        load().await
    }

    /// Forgets every entry `stale` matches and makes loads that started before this call
    /// unable to cache. Call after the database change has committed.
    pub(crate) fn invalidate(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        let mut inner = self.inner.write().expect("cache lock");
        inner.generation += 1;
        inner.entries.retain(|k, (v, _)| !stale(k, v));
    }

    #[cfg(test)]
    pub(crate) fn pause_next_load(&self, pause: Pause) {
        *self.pause.lock().unwrap() = Some(pause);
    }

    #[cfg(test)]
    async fn pause_if_asked(&self) {
        let pause = self.pause.lock().unwrap().take();
        if let Some((reached, go_on)) = pause {
            let _ = reached.send(());
            let _ = go_on.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn an_invalidation_during_a_load_wins() {
        let cache = Arc::new(Cache::<&str, u32>::new(10, None));
        let exists = Arc::new(AtomicBool::new(true));
        let load = {
            let exists = exists.clone();
            move || {
                let exists = exists.load(Ordering::SeqCst);
                async move { Ok::<_, ()>(exists.then_some(7)) }
            }
        };
        let (reached_tx, reached) = tokio::sync::oneshot::channel();
        let (go_on, go_on_rx) = tokio::sync::oneshot::channel();
        cache.pause_next_load((reached_tx, go_on_rx));
        let racing = tokio::spawn({
            let (cache, load) = (cache.clone(), load.clone());
            async move { cache.get_or_load("k", load).await }
        });
        reached.await.unwrap();
        // The row goes away and the cache is invalidated while the loader holds what it read.
        exists.store(false, Ordering::SeqCst);
        cache.invalidate(|_, _| true);
        go_on.send(()).unwrap();
        assert_eq!(racing.await.unwrap(), Ok(None), "the racing load sees the invalidation");
        assert_eq!(cache.get_or_load("k", load).await, Ok(None), "nothing stale was cached");
    }

    #[tokio::test]
    async fn caches_present_values_within_bounds_and_ttl() {
        let cache = Cache::<u32, u32>::new(2, Some(Duration::from_millis(50)));
        let loads = std::sync::atomic::AtomicU32::new(0);
        let load = |v: Option<u32>| {
            let loads = &loads;
            move || {
                loads.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, ()>(v) }
            }
        };
        assert_eq!(cache.get_or_load(1, load(Some(10))).await, Ok(Some(10)));
        assert_eq!(cache.get_or_load(1, load(Some(11))).await, Ok(Some(10)), "cached");
        assert_eq!(cache.get_or_load(2, load(None)).await, Ok(None));
        assert_eq!(cache.get_or_load(2, load(Some(20))).await, Ok(Some(20)), "absence is not cached");
        assert_eq!(cache.get_or_load(3, load(Some(30))).await, Ok(Some(30)), "full: cleared, then stored");
        assert!(cache.inner.read().unwrap().entries.len() <= 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.get_or_load(3, load(Some(31))).await, Ok(Some(31)), "expired");
        assert_eq!(loads.load(Ordering::SeqCst), 5);
    }
}
