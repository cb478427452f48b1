//! A per-node map with a size cap, for what a service keeps about every node it talks to
//! (breakers, reachability, message counts): a remote cannot grow it past the cap by
//! sending from many names. Adding a node at the cap evicts the entry that ranks lowest by
//! the caller's `rank`, the least recently touched first among equals.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Slot<V> {
    value: V,
    touched: u64,
}

/// At most `cap` entries, one per node, each stamped with when it was last touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CappedMap<V> {
    cap: usize,
    map: BTreeMap<NodeId, Slot<V>>,
    tick: u64,
}

impl<V> CappedMap<V> {
    /// `cap` is at least 1.
    pub fn new(cap: usize) -> Self {
        CappedMap {
            cap: cap.max(1),
            map: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, node: &NodeId) -> Option<&V> {
        self.map.get(node).map(|s| &s.value)
    }

    /// Every entry, by node id.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.map.keys()
    }

    pub fn remove(&mut self, node: &NodeId) -> Option<V> {
        self.map.remove(node).map(|s| s.value)
    }

    fn stamp(&mut self) -> u64 {
        self.tick = self.tick.saturating_add(1);
        self.tick
    }

    /// `node`'s entry, touched, if one is kept.
    pub fn touch(&mut self, node: &NodeId) -> Option<&mut V> {
        let tick = self.stamp();
        let slot = self.map.get_mut(node)?;
        slot.touched = tick;
        Some(&mut slot.value)
    }

    /// `node`'s entry, touched. A missing one is made by `make`; at the cap, the entry with
    /// the smallest `(rank(value), last touched)` is evicted first.
    pub fn touch_or_insert<R: Ord>(
        &mut self,
        node: &NodeId,
        make: impl FnOnce() -> V,
        rank: impl Fn(&V) -> R,
    ) -> &mut V {
        let tick = self.stamp();
        if !self.map.contains_key(node) {
            while self.map.len() >= self.cap {
                let victim = self
                    .map
                    .iter()
                    .min_by_key(|(_, s)| (rank(&s.value), s.touched))
                    .map(|(k, _)| k.clone());
                match victim {
                    Some(k) => self.map.remove(&k),
                    None => break,
                };
            }
        }
        let slot = self.map.entry(node.clone()).or_insert_with(|| Slot {
            value: make(),
            touched: 0,
        });
        slot.touched = tick;
        &mut slot.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(i: usize) -> NodeId {
        NodeId::parse(&format!("n{i}.os")).expect("node")
    }

    #[test]
    fn the_least_recently_touched_is_evicted_among_equal_ranks() {
        let mut m: CappedMap<u32> = CappedMap::new(2);
        *m.touch_or_insert(&n(1), || 0, |_| ()) += 1;
        *m.touch_or_insert(&n(2), || 0, |_| ()) += 1;
        m.touch(&n(1)); // n2 is now the oldest
        m.touch_or_insert(&n(3), || 7, |_| ());
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), vec![n(1), n(3)]);
        assert_eq!(m.get(&n(3)), Some(&7));
        assert_eq!(m.get(&n(1)), Some(&1));
    }

    #[test]
    fn a_lower_rank_is_evicted_before_an_older_entry() {
        let mut m: CappedMap<u32> = CappedMap::new(2);
        m.touch_or_insert(&n(1), || 5, |v| *v);
        m.touch_or_insert(&n(2), || 1, |v| *v);
        m.touch_or_insert(&n(3), || 9, |v| *v);
        assert!(
            m.get(&n(2)).is_none(),
            "rank 1 goes before the older rank 5"
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn touching_a_missing_node_adds_nothing() {
        let mut m: CappedMap<u32> = CappedMap::new(0);
        assert_eq!(m.cap(), 1);
        assert!(m.touch(&n(1)).is_none());
        assert!(m.is_empty());
        m.touch_or_insert(&n(1), || 1, |_| ());
        m.touch_or_insert(&n(2), || 2, |_| ());
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(&n(2)), Some(2));
        assert!(m.is_empty());
    }

    proptest! {
        #[test]
        fn never_exceeds_its_cap(cap in 0..6usize, ops in proptest::collection::vec((0..20usize, any::<bool>()), 0..200)) {
            let mut m: CappedMap<usize> = CappedMap::new(cap);
            for (i, insert) in ops {
                if insert {
                    m.touch_or_insert(&n(i), || i, |v| *v % 3);
                    prop_assert_eq!(m.get(&n(i)), Some(&i));
                } else {
                    m.touch(&n(i));
                }
                prop_assert!(m.len() <= cap.max(1));
            }
        }
    }
}
