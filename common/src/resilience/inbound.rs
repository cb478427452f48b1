//! Inbound budgets: remote input must cost bounded work.
//!
//! - [`SenderBudgets`]: a token bucket per sending node, in a bounded map (the least
//!   recently seen sender is evicted first), so one node's flood costs a fixed rate of work.
//! - [`take_capped`]: at most N items taken from one message; the rest are counted, not
//!   processed.
//! - [`members_only`]: expensive requests are served to members only.
//!
//! Hyperware authenticates the sending *node*; everything else in a message is a claim.

use crate::api::ApiError;
use crate::ids::NodeId;
use crate::service::Millis;
use std::collections::BTreeMap;

/// Rate and burst of one sender's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Tokens added per second.
    pub per_second: u32,
    /// Bucket size (largest burst).
    pub burst: u32,
    /// Senders tracked at once.
    pub max_senders: usize,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// Thousandths of a token.
    milli: u64,
    updated: Millis,
}

/// A token bucket per sending node.
#[derive(Debug, Clone)]
pub struct SenderBudgets {
    config: BudgetConfig,
    buckets: BTreeMap<NodeId, Bucket>,
    /// Requests refused for want of tokens.
    pub refused: u64,
}

impl SenderBudgets {
    pub fn new(config: BudgetConfig) -> Self {
        SenderBudgets {
            config,
            buckets: BTreeMap::new(),
            refused: 0,
        }
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Senders tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Take `cost` tokens from `sender`'s bucket at `now` (monotonic); false if it has not
    /// enough (nothing is taken then).
    pub fn allow(&mut self, sender: &NodeId, cost: u32, now: Millis) -> bool {
        let cap = u64::from(self.config.burst) * 1000;
        if !self.buckets.contains_key(sender) {
            while self.buckets.len() >= self.config.max_senders.max(1) {
                let oldest = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, b)| b.updated)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => self.buckets.remove(&k),
                    None => break,
                };
            }
            self.buckets.insert(
                sender.clone(),
                Bucket {
                    milli: cap,
                    updated: now,
                },
            );
        }
        let b = self.buckets.get_mut(sender).expect("inserted");
        let elapsed = now.saturating_sub(b.updated);
        b.milli = b
            .milli
            .saturating_add(elapsed.saturating_mul(u64::from(self.config.per_second)))
            .min(cap);
        b.updated = b.updated.max(now);
        let want = u64::from(cost) * 1000;
        if b.milli >= want {
            b.milli -= want;
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

/// The first `max` items; the number left out.
pub fn take_capped<T>(mut items: Vec<T>, max: usize) -> (Vec<T>, usize) {
    let dropped = items.len().saturating_sub(max);
    items.truncate(max);
    (items, dropped)
}

/// `Forbidden` for a non-member asking for `what` (an expensive operation).
pub fn members_only(is_member: bool, what: &str) -> Result<(), ApiError> {
    if is_member {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{what} is served to members only; join first"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(i: usize) -> NodeId {
        NodeId::parse(&format!("n{i}.os")).unwrap()
    }

    #[test]
    fn a_flood_gets_the_burst_then_the_rate() {
        let mut b = SenderBudgets::new(BudgetConfig {
            per_second: 10,
            burst: 20,
            max_senders: 8,
        });
        let a = node(1);
        let granted = (0..1000).filter(|_| b.allow(&a, 1, 0)).count();
        assert_eq!(granted, 20);
        // One second later: ten more.
        let granted = (0..1000).filter(|_| b.allow(&a, 1, 1_000)).count();
        assert_eq!(granted, 10);
        assert_eq!(b.refused, 980 + 990);
        // Another sender is not affected.
        assert!(b.allow(&node(2), 5, 1_000));
    }

    #[test]
    fn take_capped_counts_what_it_leaves() {
        assert_eq!(take_capped(vec![1, 2, 3, 4], 3), (vec![1, 2, 3], 1));
        assert_eq!(take_capped(vec![1], 3), (vec![1], 0));
    }

    #[test]
    fn members_only_names_the_operation() {
        assert!(members_only(true, "PushPull").is_ok());
        let e = members_only(false, "PushPull").unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Forbidden);
        assert!(e.message.contains("PushPull"));
    }

    proptest! {
        /// Whatever the request pattern, a sender (never evicted here) gets at most
        /// burst + rate × elapsed time, and the map never exceeds its cap.
        #[test]
        fn bounded(steps in proptest::collection::vec((0usize..20, 0u64..500, 1u32..4), 1..300)) {
            let cfg = BudgetConfig { per_second: 5, burst: 10, max_senders: 32 };
            let mut b = SenderBudgets::new(cfg);
            let mut now = 0;
            let mut granted: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
            for (s, dt, cost) in steps {
                now += dt;
                let first = granted.entry(s).or_insert((0, now)).1;
                if b.allow(&node(s), cost, now) {
                    granted.get_mut(&s).unwrap().0 += u64::from(cost);
                }
                let (g, since) = granted[&s];
                prop_assert!(g <= 10 + (now - since.min(first)) * 5 / 1000,
                    "sender {s} got {g} tokens by {now}");
                prop_assert!(b.len() <= 32);
            }
        }

        #[test]
        fn the_map_stays_bounded(senders in proptest::collection::vec(0usize..1000, 1..400)) {
            let mut b = SenderBudgets::new(BudgetConfig { per_second: 1, burst: 1, max_senders: 16 });
            for (t, s) in senders.into_iter().enumerate() {
                b.allow(&node(s), 1, t as u64);
                prop_assert!(b.len() <= 16);
            }
        }
    }
}
