//! The per-peer outbox: what each member node is owed (changes of a document, an ACL, an
//! invitation, a notice), one message in flight per peer, retries with jittered exponential
//! backoff, a circuit breaker per peer, and a bound on what is queued. Items name *what* is
//! owed, never carry bytes: a delta is built when it is sent, from what the peer is known
//! to have, so edits made while a send is in flight go out together in the next one.

use crate::vecmap::VecMap;
use litemap::LiteMap;
use p2p_common::api::sync::DocId;
use p2p_common::resilience::{Backoff, BreakerConfig, Breakers, Jitter};
use p2p_common::{Millis, NodeId};
use rand::RngCore;
use std::collections::BTreeSet;

/// What a peer is owed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// The changes of a document it lacks.
    Delta(DocId),
    /// The creator's current ACL.
    Acl(DocId),
    /// An invitation to a document.
    Invite(DocId),
    /// We no longer hold the document (to its creator).
    Leave(DocId),
    /// The document was deleted (from its creator).
    Deleted(DocId),
}

/// Items queued per peer at most (an item per document and kind, so this bounds documents
/// times kinds).
pub const MAX_ITEMS_PER_PEER: usize = 4096;
/// Peers with a queue at most.
pub const MAX_PEERS: usize = 1024;
/// Attempts of one item before it is dropped (anti-entropy repairs deltas; notices give up).
pub const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug, Default)]
struct PeerQ {
    pending: BTreeSet<Item>,
    in_flight: Option<Item>,
    /// Consecutive failures (backoff exponent).
    failures: u32,
    attempts: VecMap<Item, u32>,
    /// A retry timer is armed: nothing is sent before it fires.
    waiting: bool,
}

/// What to do after a send failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Arm the peer's retry timer this far out.
    RetryIn(Millis),
    /// The item used up its attempts and was dropped.
    Dropped(Item),
}

pub struct Outbox {
    peers: LiteMap<NodeId, PeerQ>,
    pub breakers: Breakers,
    backoff: Backoff,
    /// Items refused for a full queue.
    pub refused: u64,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new()
    }
}

impl Outbox {
    pub fn new() -> Self {
        Outbox {
            peers: LiteMap::new(),
            breakers: Breakers::new(
                BreakerConfig {
                    failure_threshold: 5,
                    open_ms: 20_000,
                    half_open_max_calls: 1,
                    success_threshold: 1,
                },
                MAX_PEERS,
            ),
            backoff: Backoff {
                base_ms: 500,
                max_ms: 30_000,
                factor: 2,
                jitter: Jitter::Equal,
            },
            refused: 0,
        }
    }

    /// Queue `item` for `peer`; false if the queue is full (the item is dropped and
    /// counted; anti-entropy repairs a dropped delta).
    pub fn push(&mut self, peer: &NodeId, item: Item) -> bool {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_PEERS {
            self.refused += 1;
            return false;
        }
        let q = self.peers.entry(peer.clone()).or_default();
        if q.pending.contains(&item) {
            return true;
        }
        if q.pending.len() >= MAX_ITEMS_PER_PEER {
            self.refused += 1;
            return false;
        }
        q.pending.insert(item);
        true
    }

    /// Forget what is owed to `peer` about `doc` (it left, was removed, the doc is gone),
    /// except the notices `keep` says to keep.
    pub fn forget_doc(&mut self, doc: &DocId, keep: impl Fn(&Item) -> bool) {
        for (_, q) in self.peers.iter_mut() {
            q.pending.retain(|i| item_doc(i) != doc || keep(i));
            q.attempts.retain(|i, _| item_doc(i) != doc || keep(i));
        }
    }

    /// The next item to send to `peer` now, if any: nothing in flight, no retry pending,
    /// the breaker closed (or letting a probe through). Marks it in flight.
    /// `Err(ms)`: the breaker is open for that long.
    pub fn next(&mut self, peer: &NodeId, now: Millis) -> Result<Option<Item>, Millis> {
        let Some(q) = self.peers.get_mut(peer) else {
            return Ok(None);
        };
        if q.in_flight.is_some() || q.waiting || q.pending.is_empty() {
            return Ok(None);
        }
        if let Err(r) = self.breakers.check(peer, now) {
            return Err(r.retry_after_ms.max(1));
        }
        let item = q.pending.pop_first().expect("non-empty");
        q.in_flight = Some(item.clone());
        Ok(Some(item))
    }

    /// The item in flight needed no message after all (nothing owed).
    pub fn skip(&mut self, peer: &NodeId) {
        if let Some(q) = self.peers.get_mut(peer) {
            q.in_flight = None;
        }
    }

    /// Mark `item` in flight to `peer` (a message built from several items awaits its
    /// answer: one of them stands for it). False if something is in flight already.
    pub fn hold(&mut self, peer: &NodeId, item: Item) -> bool {
        let q = self.peers.entry(peer.clone()).or_default();
        if q.in_flight.is_some() {
            return false;
        }
        q.pending.remove(&item);
        q.in_flight = Some(item);
        true
    }

    /// The item in flight was delivered (or refused for good).
    pub fn delivered(&mut self, peer: &NodeId, now: Millis) {
        self.breakers.on_success(peer, now);
        if let Some(q) = self.peers.get_mut(peer) {
            if let Some(i) = q.in_flight.take() {
                q.attempts.remove(&i);
            }
            q.failures = 0;
            if q.pending.is_empty() && q.attempts.is_empty() && !q.waiting {
                self.peers.remove(peer);
            }
        }
    }

    /// The item in flight failed: back into the queue, with a jittered delay before the
    /// peer's next send, or dropped after [`MAX_ATTEMPTS`].
    pub fn failed(&mut self, peer: &NodeId, now: Millis, rng: &mut impl RngCore) -> AfterFailure {
        self.breakers.on_failure(peer, now);
        let q = self.peers.entry(peer.clone()).or_default();
        q.failures = q.failures.saturating_add(1);
        let delay = self.backoff.delay(q.failures - 1, rng).max(100);
        q.waiting = true;
        if let Some(i) = q.in_flight.take() {
            let n = q.attempts.get(&i).copied().unwrap_or(0) + 1;
            q.attempts.insert(i.clone(), n);
            if n >= MAX_ATTEMPTS {
                q.attempts.remove(&i);
                return AfterFailure::Dropped(i);
            }
            q.pending.insert(i);
        }
        AfterFailure::RetryIn(delay)
    }

    /// The peer's retry timer fired.
    pub fn retry_due(&mut self, peer: &NodeId) {
        if let Some(q) = self.peers.get_mut(peer) {
            q.waiting = false;
        }
    }

    pub fn in_flight(&self, peer: &NodeId) -> bool {
        self.peers.get(peer).is_some_and(|q| q.in_flight.is_some())
    }

    /// Items queued (all peers).
    pub fn queued(&self) -> usize {
        self.peers.values().map(|q| q.pending.len()).sum()
    }

    pub fn peers(&self) -> Vec<NodeId> {
        self.peers.keys().cloned().collect()
    }
}

pub fn item_doc(i: &Item) -> &DocId {
    match i {
        Item::Delta(d) | Item::Acl(d) | Item::Invite(d) | Item::Leave(d) | Item::Deleted(d) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn n(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }
    fn d(s: &str) -> DocId {
        s.parse().unwrap()
    }

    #[test]
    fn one_in_flight_per_peer_and_backoff_on_failure() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut o = Outbox::new();
        let bob = n("bob.os");
        assert!(o.push(&bob, Item::Delta(d("alice.os/x"))));
        assert!(
            o.push(&bob, Item::Delta(d("alice.os/x"))),
            "duplicate is merged"
        );
        assert!(o.push(&bob, Item::Acl(d("alice.os/x"))));
        assert_eq!(o.queued(), 2);
        let first = o.next(&bob, 0).unwrap().unwrap();
        assert_eq!(o.next(&bob, 0).unwrap(), None, "one in flight");
        match o.failed(&bob, 10, &mut rng) {
            AfterFailure::RetryIn(ms) => assert!((100..=500).contains(&ms), "{ms}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(o.next(&bob, 20).unwrap(), None, "waits for the retry timer");
        o.retry_due(&bob);
        assert_eq!(o.next(&bob, 600).unwrap(), Some(first));
        o.delivered(&bob, 700);
        assert!(o.next(&bob, 700).unwrap().is_some());
    }

    #[test]
    fn an_item_is_dropped_after_its_attempts_and_the_breaker_opens() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut o = Outbox::new();
        let bob = n("bob.os");
        o.push(&bob, Item::Invite(d("alice.os/x")));
        let mut t = 0;
        let mut dropped = false;
        for _ in 0..200 {
            t += 60_000;
            o.retry_due(&bob);
            match o.next(&bob, t) {
                Ok(Some(_)) => {
                    if let AfterFailure::Dropped(_) = o.failed(&bob, t, &mut rng) {
                        dropped = true;
                        break;
                    }
                }
                Ok(None) => panic!("the item is still owed"),
                Err(_) => {} // the breaker is open: wait
            }
        }
        assert!(dropped);
        assert_eq!(o.queued(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut o = Outbox::new();
        let bob = n("bob.os");
        for i in 0..MAX_ITEMS_PER_PEER {
            assert!(o.push(&bob, Item::Delta(d(&format!("alice.os/d{i}")))));
        }
        assert!(!o.push(&bob, Item::Delta(d("alice.os/one-more"))));
        assert_eq!(o.refused, 1);
    }
}
