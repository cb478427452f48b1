//! The registry server (the bootstrap side): registrations with a TTL that their nodes
//! renew, a size cap, a per-source rate limit, and paged answers.
//!
//! It owns its table and the rate buckets, and serves `RegisterNode`, `ListRegistry` and
//! `Deregister`; it has no timers of its own (expired entries go on every registration and
//! on the core's digest-exchange tick) and sends nothing. A registration is its node
//! speaking for itself: [`Registry::on_register`] hands the core the registrant's own fact
//! to merge (admission on direct evidence), and [`Registry::registered`] answers after
//! that, with our own view of the listed nodes where it is newer.

use crate::members::Members;
use crate::node::Node;
use p2p_common::api::presence::{
    Config, MemberStatus, NodeInfo, Response, Update, DEFAULT_PAGE, MAX_PAGE,
};
use p2p_common::api::{ApiError, ApiResult, ErrorCode, OLDEST_PROTOCOL_VERSION};
use p2p_common::{Millis, NodeId};
use std::collections::BTreeMap;

/// Page size of the registry's answer to RegisterNode.
const REGISTER_PAGE: usize = 100;

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

    /// `RegisterNode` from `from` (the sender's node, as Hyperware authenticates it): checked
    /// and stored. The registrant's own fact, for the core to merge: it spoke for itself.
    pub fn on_register(
        &mut self,
        from: &NodeId,
        info: NodeInfo,
        incarnation: u64,
        protocol_version: u32,
        cfg: &Config,
        now: Millis,
    ) -> ApiResult<Update> {
        // A newer node registers through an older bootstrap during a rolling upgrade: only
        // a version older than any we speak is refused.
        if protocol_version < OLDEST_PROTOCOL_VERSION {
            return Err(ApiError::new(
                ErrorCode::VersionMismatch,
                format!(
                    "we speak presence protocol {OLDEST_PROTOCOL_VERSION} and later, you {protocol_version}"
                ),
            ));
        }
        if &info.node_id != from {
            return Err(ApiError::bad_request(
                "RegisterNode must carry the sender's own NodeInfo",
            ));
        }
        info.validate().map_err(ApiError::bad_request)?;
        match self.register(
            info.clone(),
            incarnation,
            now,
            cfg.registry_ttl_ms,
            cfg.registry_capacity as usize,
            cfg.registry_rate_per_min,
        ) {
            Err(RegisterError::RateLimited) => Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many registrations from this node; slow down",
            )),
            Err(RegisterError::Full) => Err(ApiError::new(ErrorCode::Overloaded, "registry full")),
            Ok(()) => Ok(Update {
                node: info.node_id.clone(),
                status: MemberStatus::Alive,
                incarnation,
                info: Some(info),
                origin: from.clone(),
            }),
        }
    }

    /// The answer to `from`'s registration: ourselves (a bootstrap is a member too, though
    /// not in its own registry), and with `list` the first page of the others.
    pub fn registered(
        &self,
        node: &Node,
        members: &Members,
        from: &NodeId,
        list: bool,
        now: Millis,
    ) -> Response {
        let (mut nodes, next_cursor) = if list {
            self.facts(node, members, now, None, REGISTER_PAGE, from)
        } else {
            (Vec::new(), None)
        };
        nodes.insert(0, node.self_update());
        Response::Registered {
            nodes,
            next_cursor,
            ttl_ms: node.cfg.registry_ttl_ms,
        }
    }

    /// `ListRegistry`: the page after `cursor` (without the asker).
    pub fn on_list(
        &self,
        node: &Node,
        members: &Members,
        from: &NodeId,
        cursor: Option<&NodeId>,
        limit: Option<u32>,
        now: Millis,
    ) -> Response {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
        let (nodes, next_cursor) = self.facts(node, members, now, cursor, limit, from);
        Response::Registry { nodes, next_cursor }
    }

    /// `Deregister`: `from` leaves the registry.
    pub fn on_deregister(&mut self, from: &NodeId) -> Response {
        self.remove(from);
        Response::Deregistered {}
    }

    /// A page of registrations as facts: our own view of a node, when newer, beats its
    /// registration.
    fn facts(
        &self,
        node: &Node,
        members: &Members,
        now: Millis,
        cursor: Option<&NodeId>,
        limit: usize,
        except: &NodeId,
    ) -> (Vec<Update>, Option<NodeId>) {
        let (page, next) = self.page(now, cursor, limit, Some(except));
        let nodes = page
            .into_iter()
            .map(|r| {
                let (status, incarnation) = match members.get(&r.info.node_id) {
                    Some(m) if m.incarnation >= r.incarnation => (m.status, m.incarnation),
                    _ => (MemberStatus::Alive, r.incarnation),
                };
                Update {
                    node: r.info.node_id.clone(),
                    status,
                    incarnation,
                    info: Some(r.info.clone()),
                    origin: members.origin_of(&r.info.node_id, status, &node.me),
                }
            })
            .collect();
        (nodes, next)
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
