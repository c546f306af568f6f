//! A thin layer over moka's async cache: TTL or byte-weighted, single-flight loads (concurrent
//! callers of one key wait for one load), no caching of misses, and "disabled" as a real mode
//! (a zero TTL) rather than a one-nanosecond cache.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use super::error::StoreError;

/// Why a load produced no value.
enum LoadError {
    /// The object does not exist (not cached: it may appear at any time).
    Missing,
    /// The load failed.
    Failed(StoreError),
}

/// A cache of `K → V`, or a pass-through when disabled.
pub(crate) struct Cache<K, V> {
    inner: Option<moka::future::Cache<K, V>>,
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(c) => write!(f, "Cache({} entries)", c.entry_count()),
            None => f.write_str("Cache(disabled)"),
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Up to `entries` entries, each valid for `ttl`; disabled when `ttl` is zero.
    pub(crate) fn with_ttl(ttl: Duration, entries: u64) -> Self {
        let inner = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(entries)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build()
        });
        Cache { inner }
    }

    /// Entries weighed by `weigh` (bytes), `capacity` in total, no expiry (keys carry the
    /// content version); disabled when `capacity` is zero.
    pub(crate) fn weighted(
        capacity: u64,
        weigh: impl Fn(&V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        let inner = (capacity > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(move |_k: &K, v: &V| weigh(v))
                .support_invalidation_closures()
                .build()
        });
        Cache { inner }
    }

    /// The cached value, if any.
    pub(crate) async fn get(&self, key: &K) -> Option<V> {
        self.inner.as_ref()?.get(key).await
    }

    /// Caches a value.
    pub(crate) async fn insert(&self, key: K, value: V) {
        if let Some(c) = &self.inner {
            c.insert(key, value).await;
        }
    }

    /// Drops one key.
    pub(crate) async fn invalidate(&self, key: &K) {
        if let Some(c) = &self.inner {
            c.invalidate(key).await;
        }
    }

    /// Drops every entry whose key matches.
    pub(crate) fn invalidate_if(&self, predicate: impl Fn(&K) -> bool + Send + Sync + 'static) {
        if let Some(c) = &self.inner {
            // Only fails when closures are not enabled, which `with_ttl`/`weighted` always do.
            if c.invalidate_entries_if(move |k, _| predicate(k)).is_err() {
                c.invalidate_all();
            }
        }
    }

    /// The cached value, or the result of `load` (cached when it is `Some`). Concurrent calls
    /// for one key share one load.
    pub(crate) async fn get_or_load<F>(&self, key: K, load: F) -> Result<Option<V>, StoreError>
    where
        F: Future<Output = Result<Option<V>, StoreError>>,
    {
        let Some(cache) = &self.inner else {
            return load.await;
        };
        let init = async move {
            match load.await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(LoadError::Missing),
                Err(e) => Err(LoadError::Failed(e)),
            }
        };
        match cache.try_get_with(key, init).await {
            Ok(v) => Ok(Some(v)),
            Err(e) => match Arc::as_ref(&e) {
                LoadError::Missing => Ok(None),
                LoadError::Failed(err) => Err(err.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn loads_once_and_does_not_cache_misses() {
        let cache: Cache<u32, Arc<String>> = Cache::with_ttl(Duration::from_secs(60), 10);
        let loads = AtomicU32::new(0);
        let load = |v: Option<&'static str>| {
            let loads = &loads;
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(v.map(|s| Arc::new(s.to_owned())))
            }
        };
        let get = |k, v| cache.get_or_load(k, load(v));
        assert_eq!(get(1, Some("a")).await.unwrap().unwrap().as_str(), "a");
        assert_eq!(get(1, Some("b")).await.unwrap().unwrap().as_str(), "a");
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the second get was served from cache"
        );
        assert!(get(2, None).await.unwrap().is_none());
        assert_eq!(get(2, Some("c")).await.unwrap().unwrap().as_str(), "c");
        assert_eq!(loads.load(Ordering::SeqCst), 3, "a miss is not cached");
        cache.invalidate_if(|k| *k == 1);
        assert!(cache.get(&1).await.is_none());
        assert!(cache.get(&2).await.is_some());
    }

    #[tokio::test]
    async fn concurrent_loads_of_one_key_share_one_load() {
        let cache: Cache<u32, u32> = Cache::with_ttl(Duration::from_secs(60), 10);
        let loads = AtomicU32::new(0);
        let one = || {
            cache.get_or_load(7, async {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Some(42))
            })
        };
        let (a, b, c) = tokio::join!(one(), one(), one());
        assert_eq!(
            (a.unwrap(), b.unwrap(), c.unwrap()),
            (Some(42), Some(42), Some(42))
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn disabled_cache_always_loads() {
        let cache: Cache<u32, u32> = Cache::with_ttl(Duration::ZERO, 10);
        cache.insert(1, 1).await;
        assert!(cache.get(&1).await.is_none());
        let v = cache.get_or_load(1, async { Ok(Some(7)) }).await.unwrap();
        assert_eq!(v, Some(7));
        let err = cache
            .get_or_load(1, async { Err(StoreError::not_found("x", "y")) })
            .await
            .unwrap_err();
        assert!(err.is_not_found());
    }
}
