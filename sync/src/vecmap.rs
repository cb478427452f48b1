//! A small map kept in a vector: for the few entries per document and per node the core
//! keeps (what each member has, exchanges in flight, subscribers, attempts per item). Linear
//! lookups over tens of entries, and far less wasm than a `BTreeMap` per key and value type
//! (each instantiation of the B-tree's insert, search and rebalancing is kilobytes, and
//! `sync.wasm` has a size limit).

/// Entries in insertion order; one per key.
#[derive(Debug, Clone)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: PartialEq, V> VecMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }
    fn position(&self, k: &K) -> Option<usize> {
        self.entries.iter().position(|(key, _)| key == k)
    }
    pub fn get(&self, k: &K) -> Option<&V> {
        self.position(k).map(|i| &self.entries[i].1)
    }
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.position(k).map(|i| &mut self.entries[i].1)
    }
    pub fn contains_key(&self, k: &K) -> bool {
        self.position(k).is_some()
    }
    /// Set `k` to `v`; the value it had.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.position(&k) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            None => {
                self.entries.push((k, v));
                None
            }
        }
    }
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.position(k).map(|i| self.entries.remove(i).1)
    }
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }
}

/// A set kept in a vector.
pub type VecSet<K> = VecMap<K, ()>;

impl<K: PartialEq> VecMap<K, ()> {
    /// Add `k`; whether it was new.
    pub fn add(&mut self, k: K) -> bool {
        self.insert(k, ()).is_none()
    }
    pub fn contains(&self, k: &K) -> bool {
        self.contains_key(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vec_map_is_a_map() {
        let mut m: VecMap<&str, u32> = VecMap::new();
        assert_eq!(m.insert("a", 1), None);
        assert_eq!(m.insert("b", 2), None);
        assert_eq!(m.insert("a", 3), Some(1));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&"a"), Some(&3));
        *m.get_mut(&"b").unwrap() += 1;
        assert_eq!(m.get(&"b"), Some(&3));
        m.retain(|k, _| *k != "a");
        assert!(!m.contains_key(&"a"));
        assert_eq!(m.remove(&"b"), Some(3));
        assert!(m.is_empty());
        let mut s: VecSet<u8> = VecSet::new();
        assert!(s.add(1));
        assert!(!s.add(1));
        assert!(s.contains(&1));
        assert_eq!(s.iter().count(), 1);
    }
}
