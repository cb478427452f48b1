//! The bootstrap registry: registrations with a TTL that their nodes renew, a size cap, a
//! per-source rate limit, and paged answers.

use p2p_common::api::presence::NodeInfo;
use p2p_common::{Millis, NodeId};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Registration {
    pub info: NodeInfo,
    pub incarnation: u64,
    pub expires: Millis,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    RateLimited,
    Full,
}

/// Token bucket per source node: `burst` tokens, refilled at `burst` per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens_milli: u64,
    last: Millis,
}

#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<NodeId, Registration>,
    buckets: BTreeMap<NodeId, Bucket>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop expired registrations and idle rate buckets.
    pub fn expire(&mut self, now: Millis) {
        self.entries.retain(|_, r| r.expires > now);
        self.buckets
            .retain(|_, b| now.saturating_sub(b.last) < 60_000);
    }

    /// Register or renew `info`.
    pub fn register(
        &mut self,
        info: NodeInfo,
        incarnation: u64,
        now: Millis,
        ttl: Millis,
        capacity: usize,
        rate_per_min: u32,
    ) -> Result<(), RegisterError> {
        self.expire(now);
        let burst = u64::from(rate_per_min.max(1)) * 1000;
        // The bucket map is bounded like the registry: a full map refuses new sources.
        if !self.buckets.contains_key(&info.node_id) && self.buckets.len() >= capacity {
            return Err(RegisterError::Full);
        }
        let b = self.buckets.entry(info.node_id.clone()).or_insert(Bucket {
            tokens_milli: burst,
            last: now,
        });
        let refill = now.saturating_sub(b.last) * burst / 60_000;
        b.tokens_milli = (b.tokens_milli + refill).min(burst);
        b.last = now;
        if b.tokens_milli < 1000 {
            return Err(RegisterError::RateLimited);
        }
        if !self.entries.contains_key(&info.node_id) && self.entries.len() >= capacity {
            return Err(RegisterError::Full);
        }
        b.tokens_milli -= 1000;
        self.entries.insert(
            info.node_id.clone(),
            Registration {
                info,
                incarnation,
                expires: now + ttl,
            },
        );
        Ok(())
    }

    pub fn remove(&mut self, node: &NodeId) {
        self.entries.remove(node);
    }

    /// A page of live registrations after `cursor`, without `except`; and the next cursor.
    pub fn page(
        &self,
        now: Millis,
        cursor: Option<&NodeId>,
        limit: usize,
        except: Option<&NodeId>,
    ) -> (Vec<&Registration>, Option<NodeId>) {
        let from = match cursor {
            Some(c) => std::ops::Bound::Excluded(c.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let mut it = self
            .entries
            .range((from, std::ops::Bound::Unbounded))
            .filter(|(n, r)| r.expires > now && Some(*n) != except)
            .map(|(_, r)| r);
        let page: Vec<&Registration> = it.by_ref().take(limit).collect();
        let next = if it.next().is_some() {
            page.last().map(|r| r.info.node_id.clone())
        } else {
            None
        };
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: &str) -> NodeInfo {
        NodeInfo::new(NodeId::parse(n).unwrap())
    }

    #[test]
    fn ttl_expiry_and_renewal() {
        let mut r = Registry::default();
        r.register(info("a.os"), 1, 0, 1_000, 10, 100).unwrap();
        r.register(info("b.os"), 1, 0, 1_000, 10, 100).unwrap();
        r.register(info("a.os"), 1, 900, 1_000, 10, 100).unwrap(); // renewed
        r.expire(1_500);
        let (p, _) = r.page(1_500, None, 10, None);
        assert_eq!(
            p.iter()
                .map(|x| x.info.node_id.as_str())
                .collect::<Vec<_>>(),
            vec!["a.os"]
        );
        r.expire(2_000);
        assert!(r.is_empty());
    }

    #[test]
    fn paging_covers_everything_once() {
        let mut r = Registry::default();
        for i in 0..25 {
            r.register(info(&format!("n{i:02}.os")), 1, 0, 10_000, 100, 100)
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (p, next) = r.page(
                0,
                cursor.as_ref(),
                10,
                Some(&NodeId::parse("n03.os").unwrap()),
            );
            assert!(p.len() <= 10);
            seen.extend(p.iter().map(|x| x.info.node_id.to_string()));
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 24);
        assert!(!seen.contains(&"n03.os".to_string()));
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 24);
    }

    #[test]
    fn capacity_and_rate_limit() {
        let mut r = Registry::default();
        r.register(info("a.os"), 1, 0, 10_000, 1, 2).unwrap();
        assert_eq!(
            r.register(info("b.os"), 1, 0, 10_000, 1, 2),
            Err(RegisterError::Full)
        );
        r.register(info("a.os"), 1, 1, 10_000, 1, 2).unwrap();
        assert_eq!(
            r.register(info("a.os"), 1, 2, 10_000, 1, 2),
            Err(RegisterError::RateLimited)
        );
        // Half a minute refills one token at 2 per minute.
        r.register(info("a.os"), 1, 30_002, 10_000, 1, 2).unwrap();
    }
}
