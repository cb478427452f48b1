//! Version vectors: one counter per node, to tell whether one replica's history contains
//! another's, and what to send for delta sync.
//!
//! A missing node counts as 0, and zero counters are never stored, so two vectors are equal
//! exactly when they are equal as maps. JSON form is a plain object: `{"alice.os": 3}`.
//! The size grows with the number of writers; bound the input size where vectors arrive.

use crate::ids::NodeId;
use serde::{Deserialize, Deserializer, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// How two histories relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Causality {
    Equal,
    /// `self` happened before `other` (`other` has seen everything `self` has, and more).
    Before,
    /// `self` happened after `other`.
    After,
    /// Each has something the other lacks.
    Concurrent,
}

impl Causality {
    /// The relation seen from the other side.
    pub fn mirror(self) -> Self {
        match self {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            c => c,
        }
    }
}

/// A version vector; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct VersionVector(BTreeMap<NodeId, u64>);

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = BTreeMap::<NodeId, u64>::deserialize(d)?;
        map.retain(|_, c| *c > 0);
        Ok(VersionVector(map))
    }
}

impl VersionVector {
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// `node`'s counter (0 if absent).
    pub fn get(&self, node: &NodeId) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Count one more event by `node`; returns the new counter (saturates at `u64::MAX`).
    pub fn increment(&mut self, node: &NodeId) -> u64 {
        let c = self.0.entry(node.clone()).or_insert(0);
        *c = c.saturating_add(1);
        *c
    }

    /// Set `node`'s counter (0 removes it). May move it backwards; prefer
    /// [`observe`](Self::observe).
    pub fn set(&mut self, node: &NodeId, counter: u64) {
        if counter == 0 {
            self.0.remove(node);
        } else {
            self.0.insert(node.clone(), counter);
        }
    }

    /// Raise `node`'s counter to at least `counter`.
    pub fn observe(&mut self, node: &NodeId, counter: u64) {
        if counter > self.get(node) {
            self.0.insert(node.clone(), counter);
        }
    }

    /// Pointwise maximum: afterwards `self` dominates both inputs.
    pub fn merge(&mut self, other: &VersionVector) {
        for (node, &c) in &other.0 {
            self.observe(node, c);
        }
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut less = false; // some counter of self is below other's
        let mut greater = false;
        for node in self.0.keys().chain(other.0.keys()) {
            match self.get(node).cmp(&other.get(node)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
            if less && greater {
                return Causality::Concurrent;
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Whether `self` has seen everything `other` has (`>=` on every node).
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(node, &c)| self.get(node) >= c)
    }

    /// What `other` has that `self` lacks: `(node, have, want)` meaning events
    /// `have + 1 ..= want` of `node`, in node order.
    pub fn missing_from(&self, other: &VersionVector) -> Vec<(NodeId, u64, u64)> {
        other
            .0
            .iter()
            .filter_map(|(node, &want)| {
                let have = self.get(node);
                (want > have).then(|| (node.clone(), have, want))
            })
            .collect()
    }

    /// Nodes with a non-zero counter, in node order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.0.iter().map(|(n, &c)| (n, c))
    }

    /// Nodes with a non-zero counter.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    /// Small node pool and counters, so equal and dominating pairs are common.
    fn vv() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec((0..4usize, 0..4u64), 0..6).prop_map(|v| {
            let mut out = VersionVector::new();
            for (i, c) in v {
                out.set(&n(["a.os", "b.os", "c.os", "d.os"][i]), c);
            }
            out
        })
    }

    fn merged(a: &VersionVector, b: &VersionVector) -> VersionVector {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    #[test]
    fn basics() {
        let (a, b) = (n("alice.os"), n("bob.os"));
        let mut x = VersionVector::new();
        assert_eq!(x.increment(&a), 1);
        assert_eq!(x.increment(&a), 2);
        let mut y = x.clone();
        y.increment(&b);
        assert_eq!(x.compare(&y), Causality::Before);
        assert_eq!(y.compare(&x), Causality::After);
        x.increment(&a);
        assert_eq!(x.compare(&y), Causality::Concurrent);
        assert_eq!(x.missing_from(&y), vec![(b.clone(), 0, 1)]);
        assert_eq!(y.missing_from(&x), vec![(a.clone(), 2, 3)]);
        x.merge(&y);
        assert!(x.dominates(&y));
        assert_eq!(x.get(&a), 3);
        x.observe(&a, 1);
        assert_eq!(x.get(&a), 3);
        x.set(&a, u64::MAX);
        assert_eq!(x.increment(&a), u64::MAX);
    }

    #[test]
    fn json_is_a_plain_object_and_drops_zeros() {
        let mut x = VersionVector::new();
        x.set(&n("alice.os"), 3);
        assert_eq!(serde_json::to_string(&x).unwrap(), r#"{"alice.os":3}"#);
        let y: VersionVector = serde_json::from_str(r#"{"alice.os":3,"bob.os":0}"#).unwrap();
        assert_eq!(x, y);
        assert_eq!(x.compare(&y), Causality::Equal);
        assert!(serde_json::from_str::<VersionVector>(r#"{"BAD":1}"#).is_err());
    }

    proptest! {
        #[test]
        fn merge_is_a_semilattice(a in vv(), b in vv(), c in vv()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a.clone());
            let m = merged(&a, &b);
            prop_assert!(m.dominates(&a) && m.dominates(&b));
            // And it is the least such vector: every node's counter comes from an input.
            for (node, cnt) in m.iter() {
                prop_assert_eq!(cnt, a.get(node).max(b.get(node)));
            }
        }

        #[test]
        fn compare_is_consistent(a in vv(), b in vv()) {
            let ab = a.compare(&b);
            prop_assert_eq!(ab, b.compare(&a).mirror());
            prop_assert_eq!(ab == Causality::Equal, a == b);
            prop_assert_eq!(a.dominates(&b), matches!(ab, Causality::Equal | Causality::After));
            prop_assert_eq!(a.missing_from(&b).is_empty(), a.dominates(&b));
            // Applying the missing ranges brings a up to b on those nodes.
            let mut a2 = a.clone();
            for (node, have, want) in a.missing_from(&b) {
                prop_assert_eq!(have, a.get(&node));
                prop_assert!(have < want);
                a2.observe(&node, want);
            }
            prop_assert_eq!(a2, merged(&a, &b));
        }

        #[test]
        fn increment_moves_forward(a in vv(), i in 0..4usize) {
            let node = n(["a.os", "b.os", "c.os", "d.os"][i]);
            let mut later = a.clone();
            let c = later.increment(&node);
            prop_assert_eq!(c, a.get(&node) + 1);
            prop_assert_eq!(a.compare(&later), Causality::Before);
            prop_assert_eq!(later.compare(&a), Causality::After);
        }

        #[test]
        fn equal_iff_same_nonzero_counters(
            xs in proptest::collection::vec((0..3usize, 0..3u64), 0..5),
            ys in proptest::collection::vec((0..3usize, 0..3u64), 0..5),
        ) {
            // Build raw maps (zeros included) and the vectors from their JSON.
            let raw = |v: &[(usize, u64)]| {
                let mut m = BTreeMap::new();
                for &(i, c) in v {
                    m.insert(["a.os", "b.os", "c.os"][i].to_string(), c);
                }
                m
            };
            let (rx, ry) = (raw(&xs), raw(&ys));
            let x: VersionVector = serde_json::from_value(serde_json::json!(rx)).unwrap();
            let y: VersionVector = serde_json::from_value(serde_json::json!(ry)).unwrap();
            let nonzero = |m: &BTreeMap<String, u64>| {
                m.iter().filter(|(_, &c)| c > 0).map(|(k, &c)| (k.clone(), c)).collect::<Vec<_>>()
            };
            prop_assert_eq!(x.compare(&y) == Causality::Equal, nonzero(&rx) == nonzero(&ry));
        }

        #[test]
        fn serde_roundtrip(a in vv()) {
            let j = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(serde_json::from_str::<VersionVector>(&j).unwrap(), a);
        }
    }
}
