//! Bounded idempotency windows: "have I seen this message id recently?" without a set
//! that grows forever.
//!
//! - [`DedupWindow`] answers seen / not seen;
//! - [`DedupCache`] also keeps a value, to give a retried request the same answer as the
//!   first time (idempotent replies).
//!
//! An entry lives for `ttl_ms` from its insertion (a duplicate does not extend it), and at
//! most `capacity` entries are kept: the oldest go first. Both operations are O(1)
//! amortized: a queue in insertion order plus a hash map.
//!
//! Serialized form: `{"capacity": .., "ttl_ms": .., "entries": [..]}`, oldest first.

use crate::service::Millis;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Shared machinery: insertion-ordered queue + map of live entries.
#[derive(Debug, Clone)]
struct Core<K, V> {
    capacity: usize,
    ttl_ms: Millis,
    /// (key, inserted_at, seq), oldest first. A key may appear more than once after it was
    /// re-inserted; only the entry whose `seq` matches the map is current.
    order: VecDeque<(K, Millis, u64)>,
    live: HashMap<K, (V, Millis, u64)>,
    next_seq: u64,
}

impl<K: Eq + Hash + Clone, V> Core<K, V> {
    fn new(capacity: usize, ttl_ms: Millis) -> Self {
        Core {
            capacity: capacity.max(1),
            ttl_ms,
            order: VecDeque::new(),
            live: HashMap::new(),
            next_seq: 0,
        }
    }

    fn is_fresh(&self, at: Millis, now: Millis) -> bool {
        now < at.saturating_add(self.ttl_ms)
    }

    fn pop_front(&mut self) {
        if let Some((k, _, seq)) = self.order.pop_front() {
            if self.live.get(&k).is_some_and(|e| e.2 == seq) {
                self.live.remove(&k);
            }
        }
    }

    /// Drop expired entries from the front.
    fn expire(&mut self, now: Millis) {
        while let Some(&(_, at, _)) = self.order.front() {
            if self.is_fresh(at, now) {
                break;
            }
            self.pop_front();
        }
    }

    fn get(&self, k: &K, now: Millis) -> Option<&V> {
        self.live
            .get(k)
            .filter(|e| self.is_fresh(e.1, now))
            .map(|e| &e.0)
    }

    fn insert(&mut self, k: K, v: V, now: Millis) {
        self.expire(now);
        while self.order.len() >= self.capacity {
            self.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.order.push_back((k.clone(), now, seq));
        self.live.insert(k, (v, now, seq));
    }

    fn len(&self) -> usize {
        self.live.len()
    }

    /// Current entries, oldest first.
    fn entries(&self) -> impl Iterator<Item = (&K, &V, Millis)> {
        self.order.iter().filter_map(|(k, _, seq)| {
            self.live
                .get(k)
                .filter(|e| e.2 == *seq)
                .map(|e| (k, &e.0, e.1))
        })
    }
}

/// Seen-before window over keys `K`; see the module docs.
#[derive(Debug, Clone)]
pub struct DedupWindow<K> {
    core: Core<K, ()>,
}

impl<K: Eq + Hash + Clone> DedupWindow<K> {
    /// At most `capacity` keys (at least 1), each remembered for `ttl_ms`.
    pub fn new(capacity: usize, ttl_ms: Millis) -> Self {
        DedupWindow {
            core: Core::new(capacity, ttl_ms),
        }
    }

    /// `true` the first time `key` is seen within the window (and records it), `false` for
    /// a duplicate.
    pub fn check_and_insert(&mut self, key: K, now: Millis) -> bool {
        self.core.expire(now);
        if self.core.get(&key, now).is_some() {
            return false;
        }
        self.core.insert(key, (), now);
        true
    }

    /// Whether `key` is in the window at `now`.
    pub fn contains(&self, key: &K, now: Millis) -> bool {
        self.core.get(key, now).is_some()
    }

    /// Keys stored (expired ones may linger until the next insertion); `<= capacity`.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.core.capacity
    }

    pub fn ttl_ms(&self) -> Millis {
        self.core.ttl_ms
    }
}

/// Window that remembers a value per key, e.g. the reply to a request id; see the module
/// docs.
#[derive(Debug, Clone)]
pub struct DedupCache<K, V> {
    core: Core<K, V>,
}

impl<K: Eq + Hash + Clone, V> DedupCache<K, V> {
    /// At most `capacity` entries (at least 1), each kept for `ttl_ms`.
    pub fn new(capacity: usize, ttl_ms: Millis) -> Self {
        DedupCache {
            core: Core::new(capacity, ttl_ms),
        }
    }

    /// The value stored for `key`, if still in the window.
    pub fn get(&self, key: &K, now: Millis) -> Option<&V> {
        self.core.get(key, now)
    }

    /// Store `value` for `key`, replacing any previous value and restarting its ttl.
    pub fn insert(&mut self, key: K, value: V, now: Millis) {
        self.core.insert(key, value, now);
    }

    /// Entries stored (expired ones may linger until the next insertion); `<= capacity`.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.core.capacity
    }

    pub fn ttl_ms(&self) -> Millis {
        self.core.ttl_ms
    }
}

#[derive(serde::Serialize)]
struct ReprOut<E> {
    capacity: usize,
    ttl_ms: Millis,
    entries: Vec<E>,
}

#[derive(serde::Deserialize)]
struct ReprIn<E> {
    capacity: usize,
    ttl_ms: Millis,
    entries: Vec<E>,
}

/// One entry of a serialized [`DedupCache`].
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry<K, V> {
    key: K,
    value: V,
    at: Millis,
}

impl<K: Eq + Hash + Clone + Serialize> Serialize for DedupWindow<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReprOut {
            capacity: self.core.capacity,
            ttl_ms: self.core.ttl_ms,
            entries: self.core.entries().map(|(k, _, at)| (k, at)).collect(),
        }
        .serialize(s)
    }
}

impl<'de, K: Eq + Hash + Clone + Deserialize<'de>> Deserialize<'de> for DedupWindow<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ReprIn::<(K, Millis)>::deserialize(d)?;
        let mut w = DedupWindow::new(r.capacity, r.ttl_ms);
        for (k, at) in r.entries {
            w.core.insert(k, (), at);
        }
        Ok(w)
    }
}

impl<K: Eq + Hash + Clone + Serialize, V: Serialize> Serialize for DedupCache<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReprOut {
            capacity: self.core.capacity,
            ttl_ms: self.core.ttl_ms,
            entries: self
                .core
                .entries()
                .map(|(key, value, at)| CacheEntry { key, value, at })
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de, K, V> Deserialize<'de> for DedupCache<K, V>
where
    K: Eq + Hash + Clone + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ReprIn::<CacheEntry<K, V>>::deserialize(d)?;
        let mut c = DedupCache::new(r.capacity, r.ttl_ms);
        for e in r.entries {
            c.core.insert(e.key, e.value, e.at);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_within_ttl_then_new_again() {
        let mut w = DedupWindow::new(10, 100);
        assert!(w.check_and_insert("a", 0));
        assert!(!w.check_and_insert("a", 50));
        assert!(
            !w.check_and_insert("a", 99),
            "a duplicate does not extend the ttl"
        );
        assert!(w.check_and_insert("a", 100));
        assert!(w.contains(&"a", 199));
        assert!(!w.contains(&"a", 200));
    }

    #[test]
    fn capacity_evicts_oldest() {
        let mut w = DedupWindow::new(2, 1_000);
        assert!(w.check_and_insert(1, 0));
        assert!(w.check_and_insert(2, 1));
        assert!(w.check_and_insert(3, 2));
        assert_eq!(w.len(), 2);
        assert!(!w.contains(&1, 2));
        assert!(w.contains(&2, 2) && w.contains(&3, 2));
    }

    #[test]
    fn cache_returns_the_same_answer() {
        let mut c: DedupCache<u64, String> = DedupCache::new(4, 1_000);
        assert_eq!(c.get(&7, 0), None);
        c.insert(7, "reply".into(), 0);
        assert_eq!(c.get(&7, 999).map(String::as_str), Some("reply"));
        assert_eq!(c.get(&7, 1_000), None);
        // Replacing at the same instant keeps the new value alive through evictions of
        // the old queue entry.
        c.insert(8, "x".into(), 5);
        c.insert(8, "y".into(), 5);
        for k in 0..3 {
            c.insert(100 + k, String::new(), 5);
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.get(&8, 6).map(String::as_str), Some("y"));
        c.insert(103, String::new(), 5);
        assert_eq!(c.get(&8, 6), None, "now 8 was the oldest and got evicted");
    }

    #[test]
    fn unique_stream_stays_bounded() {
        let mut w = DedupWindow::new(64, u64::MAX);
        for i in 0..100_000u64 {
            assert!(w.check_and_insert(i, i));
            assert!(w.len() <= 64);
            assert!(w.core.order.len() <= 64);
        }
    }

    #[test]
    fn serde_roundtrip() {
        let mut w = DedupWindow::new(3, 50);
        w.check_and_insert("m1".to_string(), 0);
        w.check_and_insert("m2".to_string(), 10);
        let j = serde_json::to_string(&w).unwrap();
        assert_eq!(
            j,
            r#"{"capacity":3,"ttl_ms":50,"entries":[["m1",0],["m2",10]]}"#
        );
        let w2: DedupWindow<String> = serde_json::from_str(&j).unwrap();
        assert!(w2.contains(&"m2".to_string(), 20));
        assert!(!w2.contains(&"m1".to_string(), 50));

        let mut c = DedupCache::new(3, 50);
        c.insert(1u32, vec![1u8, 2], 0);
        c.insert(1u32, vec![3u8], 1);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"capacity":3,"ttl_ms":50,"entries":[{"key":1,"value":[3],"at":1}]}"#
        );
        let c2: DedupCache<u32, Vec<u8>> = serde_json::from_str(&j).unwrap();
        assert_eq!(c2.get(&1, 2), Some(&vec![3u8]));
        // A hostile blob cannot exceed the capacity it names.
        let big = r#"{"capacity":0,"ttl_ms":5,"entries":[["a",0],["b",0],["c",0]]}"#;
        let w3: DedupWindow<String> = serde_json::from_str(big).unwrap();
        assert_eq!(w3.len(), 1);
    }

    fn ops() -> impl Strategy<Value = Vec<(u8, Millis)>> {
        proptest::collection::vec((0..30u8, 0..40u64), 0..300)
    }

    proptest! {
        #[test]
        fn matches_a_reference_model(ttl in 0..200u64, ops in ops()) {
            // Capacity larger than the number of operations: only the ttl matters.
            let mut w = DedupWindow::new(1_000, ttl);
            let mut first_seen: HashMap<u8, Millis> = HashMap::new();
            let mut now = 0;
            for (k, dt) in ops {
                now += dt;
                let dup = first_seen.get(&k).is_some_and(|&t| now < t + ttl);
                prop_assert_eq!(w.contains(&k, now), dup);
                prop_assert_eq!(w.check_and_insert(k, now), !dup);
                if !dup {
                    first_seen.insert(k, now);
                }
                prop_assert!(w.contains(&k, now) == (ttl > 0));
            }
        }

        #[test]
        fn len_never_exceeds_capacity(cap in 0..20usize, ttl in 0..500u64,
                                      ops in ops(), back in any::<bool>()) {
            let mut w = DedupWindow::new(cap, ttl);
            let mut c = DedupCache::new(cap, ttl);
            let mut now: Millis = 10_000;
            for (i, (k, dt)) in ops.into_iter().enumerate() {
                // Sometimes let the clock go backwards.
                now = if back && i % 5 == 0 { now.saturating_sub(dt) } else { now + dt };
                w.check_and_insert(k, now);
                c.insert(k, i, now);
                prop_assert!(w.len() <= cap.max(1));
                prop_assert!(c.len() <= cap.max(1));
                prop_assert!(w.core.order.len() <= cap.max(1));
                prop_assert!(c.core.order.len() <= cap.max(1));
                if ttl > 0 {
                    prop_assert_eq!(c.get(&k, now), Some(&i));
                }
            }
        }

        #[test]
        fn cache_serde_roundtrip_preserves_answers(ttl in 1..200u64, ops in ops()) {
            let mut c = DedupCache::new(16, ttl);
            let mut now = 0;
            for (i, (k, dt)) in ops.iter().enumerate() {
                now += dt;
                c.insert(*k, i as u32, now);
            }
            let j = serde_json::to_string(&c).unwrap();
            let c2: DedupCache<u8, u32> = serde_json::from_str(&j).unwrap();
            for k in 0..30u8 {
                prop_assert_eq!(c.get(&k, now), c2.get(&k, now));
            }
        }
    }
}
