//! What a controller's own writes returned, for the seconds until its watch cache catches up with them.
//!
//! The Workspace controller and the NodeClaim provisioner read objects from reflector caches. When the
//! apiserver is busy, a watch delivers our own writes seconds late; a reconcile in between reads the older
//! cached copy and redoes the write (the same status again, an Event twice for one transition, a 409 on a
//! precondition). [`Latest`] keeps the written copy and hands it out while the cache is behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube_core::Resource;

/// Objects as a controller's own writes returned them, kept until its watch cache has caught up.
///
/// resourceVersions are opaque by contract but etcd revisions in practice; one that does not parse as a
/// number, or an entry older than [`Latest::TTL`] (the write's watch event was lost, or the object was deleted
/// before the cache saw it), makes the cache the source of truth again.
pub struct Latest<K> {
    written: Mutex<HashMap<String, Written<K>>>,
}

/// resourceVersion, when it was written, the object.
type Written<K> = (u64, Instant, Arc<K>);

impl<K> Default for Latest<K> {
    fn default() -> Self {
        Latest { written: Mutex::new(HashMap::new()) }
    }
}

impl<K: Resource> Latest<K> {
    /// How long a written copy may stand in for the cache.
    pub const TTL: Duration = Duration::from_secs(30);

    fn key(namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", namespace.unwrap_or_default())
    }

    /// Remembers what a write returned.
    pub fn record(&self, written: K) {
        let meta = written.meta();
        let Some(version) = meta.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()) else { return };
        let key = Self::key(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default());
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (version, Instant::now(), Arc::new(written)));
    }

    /// The written copy of `namespace/name` when `cached` (the watch cache's copy, if any) is older than it.
    pub fn fresher(&self, namespace: Option<&str>, name: &str, cached: Option<&K>) -> Option<Arc<K>> {
        let key = Self::key(namespace, name);
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let (version, at, object) = written.get(&key)?;
        let cached_version = cached.map(|c| c.meta().resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()));
        let behind = match cached_version {
            None => true,
            Some(Some(cached)) => cached < *version,
            Some(None) => false,
        };
        if behind && at.elapsed() < Self::TTL {
            return Some(object.clone());
        }
        written.remove(&key);
        None
    }

    /// [`Latest::fresher`] for an object from the cache.
    pub fn fresher_than(&self, cached: &K) -> Option<Arc<K>> {
        let meta = cached.meta();
        self.fresher(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default(), Some(cached))
    }

    /// Forgets `namespace/name` (it is gone).
    pub fn forget(&self, namespace: Option<&str>, name: &str) {
        self.written.lock().unwrap_or_else(PoisonError::into_inner).remove(&Self::key(namespace, name));
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn a_written_copy_stands_in_until_the_cache_has_it() {
        let sts = |rv: &str| StatefulSet {
            metadata: ObjectMeta {
                name: Some("ws".into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let latest = Latest::<StatefulSet>::default();
        assert!(latest.fresher(Some("ns"), "ws", None).is_none(), "nothing written");
        latest.record(sts("20"));
        let got = |cached: Option<&StatefulSet>| {
            latest.fresher(Some("ns"), "ws", cached).and_then(|s| s.metadata.resource_version.clone())
        };
        assert_eq!(got(None).as_deref(), Some("20"), "not in the cache yet");
        assert_eq!(got(Some(&sts("19"))).as_deref(), Some("20"), "the cache is behind");
        assert_eq!(got(Some(&sts("20"))), None, "caught up");
        assert_eq!(got(None), None, "forgotten once the cache had it");
        latest.record(sts("20"));
        assert_eq!(got(Some(&sts("x"))), None, "an unparsable version: trust the cache");
    }
}
