//! Sorting with one instantiation of std's sort for the whole build.
//!
//! `slice::sort_unstable` is instantiated for every element type and comparison it is
//! called with, 2-4 KB of wasm each (issue 12: sync.wasm has a size limit). These helpers
//! sort a vector of indices with std's sort through a `dyn` comparison, so every call
//! shares that one instantiation, then move the elements into their sorted places. Meant
//! for the small vectors (members, peers, log entries) the cores sort; the order is std's
//! unstable order of the same comparison.

use std::cmp::Ordering;

/// `v.sort_unstable()`.
pub fn sort_unstable<T: Ord>(v: &mut [T]) {
    sort_unstable_by(v, T::cmp)
}

/// `v.sort_unstable_by(cmp)`.
pub fn sort_unstable_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    sort_indices(&mut order, &mut |a, b| cmp(&v[a], &v[b]));
    permute(v, &mut order);
}

/// The one instantiation of std's sort.
fn sort_indices(order: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_unstable_by(|a, b| cmp(*a, *b));
}

/// Rearranges `v` so that its element `i` is the old element `order[i]`, following each
/// cycle of the permutation with swaps; `order` is used up.
fn permute<T>(v: &mut [T], order: &mut [usize]) {
    for start in 0..v.len() {
        let mut at = start;
        while order[at] != usize::MAX {
            let from = std::mem::replace(&mut order[at], usize::MAX);
            if from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_std(mut v in proptest::collection::vec(any::<(u8, u16)>(), 0..60)) {
            let mut want = v.clone();
            want.sort_unstable();
            sort_unstable(&mut v);
            prop_assert_eq!(v, want);
        }

        #[test]
        fn sorts_by_a_key_like_std(mut v in proptest::collection::vec(any::<(u8, u16)>(), 0..60)) {
            // Equal keys may come in any order; compare the keys and the elements as a set.
            let mut want = v.clone();
            want.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            sort_unstable_by(&mut v, |a, b| b.0.cmp(&a.0));
            prop_assert_eq!(
                v.iter().map(|e| e.0).collect::<Vec<_>>(),
                want.iter().map(|e| e.0).collect::<Vec<_>>()
            );
            let (mut got, mut all) = (v.clone(), want.clone());
            got.sort_unstable();
            all.sort_unstable();
            prop_assert_eq!(got, all);
        }
    }

    #[test]
    fn strings_and_permutations() {
        let mut v: Vec<String> = ["d", "a", "c", "b", "a"].map(String::from).to_vec();
        sort_unstable(&mut v);
        assert_eq!(v, ["a", "a", "b", "c", "d"]);
        // A permutation that is one long cycle, and one of many short ones.
        let mut v: Vec<u32> = (1..50).chain([0]).collect();
        sort_unstable(&mut v);
        assert_eq!(v, (0..50).collect::<Vec<_>>());
        let mut v: Vec<u32> = (0..50).map(|i| i ^ 1).collect();
        sort_unstable(&mut v);
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }
}
