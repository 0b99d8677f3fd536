//! A memory of the names this process archived recently, in front of any [`Archive`].
//!
//! Graph redelivers whole batches (after a timeout, and with retries for up to 4 hours), so the
//! receiver asks [`Archive::exist_all`] for a batch's event names before it spends a
//! private-key operation on each item. The filesystem answers that with a stat per name; Blob
//! Storage with a `HEAD` per name. A resend that comes soon after the first delivery is answered
//! from here instead, without a request to the storage; an older one (or one after a restart)
//! falls through to the backend, which stays the authority.
//!
//! Only names the backend confirmed (created, or found existing) are remembered, so a name here
//! is an object that exists, unless someone deletes objects by hand behind the process's back
//! (the archive is append-only: nothing in the handler deletes).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{Archive, ArchiveError, Kind, ObjectName, Written};

/// Names kept by default: about 2 MB, the events of several hundred 100-item batches.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// The names, oldest first out.
struct Names {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl Names {
    fn insert(&mut self, name: &ObjectName) {
        if self.capacity == 0 || self.set.contains(name.as_str()) {
            return;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        let name: Arc<str> = Arc::from(name.as_str());
        self.set.insert(name.clone());
        self.order.push_back(name);
    }
}

/// An [`Archive`] that remembers the last `capacity` names it stored or found.
pub struct RecentlyArchived {
    inner: Arc<dyn Archive>,
    names: Mutex<Names>,
}

impl RecentlyArchived {
    pub fn new(inner: Arc<dyn Archive>, capacity: usize) -> Self {
        RecentlyArchived {
            inner,
            names: Mutex::new(Names {
                set: HashSet::with_capacity(capacity.min(DEFAULT_CAPACITY)),
                order: VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY)),
                capacity,
            }),
        }
    }

    fn remember<'a>(&self, names: impl IntoIterator<Item = &'a ObjectName>) {
        let mut known = self
            .names
            .lock()
            .expect("the name memory is never poisoned");
        for name in names {
            known.insert(name);
        }
    }

    fn known(&self, name: &ObjectName) -> bool {
        self.names
            .lock()
            .expect("the name memory is never poisoned")
            .set
            .contains(name.as_str())
    }
}

#[async_trait::async_trait]
impl Archive for RecentlyArchived {
    async fn put_if_absent(&self, name: &ObjectName, body: Bytes) -> Result<Written, ArchiveError> {
        let written = self.inner.put_if_absent(name, body).await?;
        self.remember([name]);
        Ok(written)
    }

    async fn put_all_if_absent(
        &self,
        objects: Vec<(ObjectName, Bytes)>,
    ) -> Result<Vec<Written>, ArchiveError> {
        let names: Vec<ObjectName> = objects.iter().map(|(n, _)| n.clone()).collect();
        let written = self.inner.put_all_if_absent(objects).await?;
        self.remember(&names);
        Ok(written)
    }

    async fn exist_all(&self, names: &[ObjectName]) -> Result<Vec<bool>, ArchiveError> {
        let mut answers: Vec<bool> = names.iter().map(|n| self.known(n)).collect();
        let ask: Vec<ObjectName> = names
            .iter()
            .zip(&answers)
            .filter(|(_, known)| !**known)
            .map(|(n, _)| n.clone())
            .collect();
        if ask.is_empty() {
            return Ok(answers);
        }
        let found = self.inner.exist_all(&ask).await?;
        self.remember(ask.iter().zip(&found).filter(|(_, f)| **f).map(|(n, _)| n));
        let mut found = found.into_iter();
        for answer in answers.iter_mut().filter(|a| !**a) {
            *answer = found.next().unwrap_or(false);
        }
        Ok(answers)
    }

    async fn get(&self, name: &ObjectName) -> Result<Option<Bytes>, ArchiveError> {
        self.inner.get(name).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectName>, ArchiveError> {
        self.inner.list(kind).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the names the backend is asked about; "exists" = the name ends in `a.json`.
    #[derive(Default)]
    struct Counting {
        asked: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Archive for Counting {
        async fn put_if_absent(&self, _: &ObjectName, _: Bytes) -> Result<Written, ArchiveError> {
            Ok(Written::Created)
        }
        async fn exist_all(&self, names: &[ObjectName]) -> Result<Vec<bool>, ArchiveError> {
            self.asked.fetch_add(names.len(), Ordering::SeqCst);
            Ok(names
                .iter()
                .map(|n| n.as_str().ends_with("a.json"))
                .collect())
        }
        async fn get(&self, _: &ObjectName) -> Result<Option<Bytes>, ArchiveError> {
            Ok(None)
        }
        async fn list(&self, _: Kind) -> Result<Vec<ObjectName>, ArchiveError> {
            Ok(Vec::new())
        }
        fn location(&self) -> String {
            "counting".into()
        }
    }

    fn name(digest: &str) -> ObjectName {
        ObjectName::new(Kind::Events, None, "s", digest)
    }

    #[tokio::test]
    async fn written_and_found_names_are_answered_from_memory_and_the_rest_from_the_backend() {
        let backend = Arc::new(Counting::default());
        let recent = RecentlyArchived::new(backend.clone(), 3);
        recent
            .put_all_if_absent(vec![(name("1"), Bytes::new()), (name("2"), Bytes::new())])
            .await
            .unwrap();
        let answers = recent
            .exist_all(&[name("1"), name("x"), name("2"), name("a")])
            .await
            .unwrap();
        assert_eq!(answers, [true, false, true, true]);
        assert_eq!(
            backend.asked.load(Ordering::SeqCst),
            2,
            "only x and a asked"
        );
        // `a` was found, so it is remembered; `x` was not, so it is asked again.
        recent.exist_all(&[name("a"), name("x")]).await.unwrap();
        assert_eq!(backend.asked.load(Ordering::SeqCst), 3);
        // Capacity 3: 1, 2, a are known; writing 3 forgets the oldest (1).
        recent
            .put_if_absent(&name("3"), Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            recent.exist_all(&[name("1"), name("3")]).await.unwrap(),
            [false, true]
        );
        assert_eq!(backend.asked.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failed_write_is_not_remembered() {
        struct Failing;
        #[async_trait::async_trait]
        impl Archive for Failing {
            async fn put_if_absent(
                &self,
                name: &ObjectName,
                _: Bytes,
            ) -> Result<Written, ArchiveError> {
                Err(ArchiveError::backend(name.to_string(), "down"))
            }
            async fn exist_all(&self, names: &[ObjectName]) -> Result<Vec<bool>, ArchiveError> {
                Ok(vec![false; names.len()])
            }
            async fn get(&self, _: &ObjectName) -> Result<Option<Bytes>, ArchiveError> {
                Ok(None)
            }
            async fn list(&self, _: Kind) -> Result<Vec<ObjectName>, ArchiveError> {
                Ok(Vec::new())
            }
            fn location(&self) -> String {
                "failing".into()
            }
        }
        let recent = RecentlyArchived::new(Arc::new(Failing), 8);
        assert!(
            recent
                .put_all_if_absent(vec![(name("1"), Bytes::new())])
                .await
                .is_err()
        );
        assert_eq!(recent.exist_all(&[name("1")]).await.unwrap(), [false]);
    }
}
