//! Network health as one service sees it: the answer to the local `Health` request of
//! presence, notify and sync, built here once for all three.
//!
//! Per known peer: its reachability from our own sends ([`Reachability`]), the circuit
//! breaker of our outbox to it (notify's and sync's; presence has none), and the messages
//! between us since the process started ([`Traffic`]). An answer lists at most
//! [`MAX_HEALTH_PEERS`] peers, the busiest first chosen, sorted by node; `more` counts the
//! ones left out. Everything is bounded: [`Traffic`] tracks at most [`TRAFFIC_CAP`] peers (the
//! least recently active dropped), reachability and breakers have their own caps.

use super::{BreakerState, Breakers, CappedMap, Reachability, Status};
use crate::ids::NodeId;
use crate::service::{Effect, Input, Millis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most peers in one `Health` answer.
pub const MAX_HEALTH_PEERS: usize = 64;
/// Most peers whose message counts a [`Traffic`] keeps.
pub const TRAFFIC_CAP: usize = 1024;

/// Where our outbox's circuit breaker to a peer is. JSON: `"Closed"`, `"Open"`, `"HalfOpen"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerStatus {
    /// Sends pass.
    Closed,
    /// Sends are held back until it half-opens.
    Open,
    /// A probe send is allowed to find out whether the peer is back.
    HalfOpen,
}

impl From<BreakerState> for BreakerStatus {
    fn from(s: BreakerState) -> Self {
        match s {
            BreakerState::Closed { .. } => BreakerStatus::Closed,
            BreakerState::Open { .. } => BreakerStatus::Open,
            BreakerState::HalfOpen { .. } => BreakerStatus::HalfOpen,
        }
    }
}

/// One peer's entry in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHealth {
    pub node: NodeId,
    /// What our own sends to it found (`Unknown` when nothing recent).
    pub status: Status,
    /// Failed sends since the last success.
    pub consecutive_failures: u32,
    /// Smoothed round-trip time of our requests to it, once measured.
    pub srtt_ms: Option<Millis>,
    /// Our outbox's breaker to it; `null` for a service without one (presence).
    pub breaker: Option<BreakerStatus>,
    /// Failures the breaker counts towards opening (0 unless closed with failures).
    pub breaker_failures: u32,
    /// Requests we sent it since this process started.
    pub sent: u64,
    /// Requests and answers that came from it since this process started.
    pub received: u64,
}

/// The answer to `Health`: the network as this process on this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub node: NodeId,
    /// Failures now are presumed ours, not the peers' (just started, or others reach the
    /// peers we fail to reach): no breaker opens and no peer is blamed meanwhile.
    pub own_trouble: bool,
    /// At most [`MAX_HEALTH_PEERS`], sorted by node.
    pub peers: Vec<PeerHealth>,
    /// Known peers left out of `peers` (the least busy).
    pub more: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counts {
    sent: u64,
    received: u64,
}

/// Messages exchanged with each other node since start, for at most [`TRAFFIC_CAP`] nodes.
/// Feed it every input and the effects that came out of it ([`Traffic::observe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    map: CappedMap<Counts>,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic::new(TRAFFIC_CAP)
    }
}

impl Traffic {
    /// At most `cap` nodes (at least 1).
    pub fn new(cap: usize) -> Self {
        Traffic {
            map: CappedMap::new(cap),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn entry(&mut self, node: &NodeId) -> &mut Counts {
        self.map.touch_or_insert(node, Counts::default, |_| ())
    }

    /// A message from `node` reached us.
    pub fn on_received(&mut self, node: &NodeId) {
        let c = self.entry(node);
        c.received = c.received.saturating_add(1);
    }

    /// We sent `node` a request.
    pub fn on_sent(&mut self, node: &NodeId) {
        let c = self.entry(node);
        c.sent = c.sent.saturating_add(1);
    }

    /// Count what `input` brought from another node and what `effects` send to other
    /// nodes (`our`: our node; local traffic is not counted).
    pub fn observe<C, T>(&mut self, our: &NodeId, input: &Input<C, T>, effects: &[Effect<C, T>]) {
        self.observe_input(our, input);
        self.observe_effects(our, effects);
    }

    /// The input half of [`Traffic::observe`].
    pub fn observe_input<C, T>(&mut self, our: &NodeId, input: &Input<C, T>) {
        if let Input::Request { from, .. } | Input::Response { from, .. } = input {
            if &from.node != our {
                self.on_received(&from.node);
            }
        }
    }

    /// The effects half of [`Traffic::observe`].
    pub fn observe_effects<C, T>(&mut self, our: &NodeId, effects: &[Effect<C, T>]) {
        for e in effects {
            if let Effect::Send { to, .. } = e {
                if &to.node != our {
                    self.on_sent(&to.node);
                }
            }
        }
    }

    /// (sent, received) with `node`.
    pub fn counts(&self, node: &NodeId) -> (u64, u64) {
        self.map.get(node).map_or((0, 0), |c| (c.sent, c.received))
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.map.keys()
    }
}

/// One peer's entry: reachability from `reach`, breaker from `breakers` (if the service has
/// an outbox), counts from `traffic`.
pub fn peer_health(
    node: &NodeId,
    now: Millis,
    reach: &Reachability,
    breakers: Option<&Breakers>,
    traffic: &Traffic,
) -> PeerHealth {
    let p = reach.peer(node);
    let (sent, received) = traffic.counts(node);
    let state = breakers.map(|b| b.state(node));
    PeerHealth {
        node: node.clone(),
        status: reach.status(node, now),
        consecutive_failures: p.map_or(0, |p| p.consecutive_failures),
        srtt_ms: p.and_then(|p| p.srtt_ms()),
        breaker: state.map(BreakerStatus::from),
        breaker_failures: match state {
            Some(BreakerState::Closed {
                consecutive_failures,
            }) => consecutive_failures,
            _ => 0,
        },
        sent,
        received,
    }
}

/// The `Health` answer of `our` node: every peer `reach`, `breakers` or `traffic` knows,
/// at most `limit` of them (the busiest by messages both ways, then by name), sorted by node.
/// Costs O(k log k) for the k peers known, which the three caps bound.
pub fn report(
    our: &NodeId,
    now: Millis,
    reach: &Reachability,
    breakers: Option<&Breakers>,
    traffic: &Traffic,
    limit: usize,
) -> HealthReport {
    let mut known: BTreeSet<&NodeId> = reach.peers().map(|(n, _)| n).collect();
    if let Some(b) = breakers {
        known.extend(b.nodes());
    }
    known.extend(traffic.nodes());
    known.remove(our);
    let total = known.len();
    let mut busiest: Vec<(u64, &NodeId)> = known
        .into_iter()
        .map(|n| {
            let (s, r) = traffic.counts(n);
            (s.saturating_add(r), n)
        })
        .collect();
    // Nodes are distinct: the order is total, so an unstable sort is the stable one.
    crate::sort::sort_unstable_by(&mut busiest, |a, b| {
        b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
    });
    busiest.truncate(limit);
    let mut chosen: Vec<&NodeId> = busiest.into_iter().map(|(_, n)| n).collect();
    crate::sort::sort_unstable(&mut chosen);
    HealthReport {
        node: our.clone(),
        own_trouble: reach.own_trouble(now),
        peers: chosen
            .into_iter()
            .map(|n| peer_health(n, now, reach, breakers, traffic))
            .collect(),
        more: (total - total.min(limit)) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::{BreakerConfig, NetHealth, ReachabilityConfig};
    use crate::{Address, ProcessId};

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn settled() -> Reachability {
        let mut r = Reachability::new(ReachabilityConfig::default());
        r.set_health(NetHealth::default());
        r
    }

    #[test]
    fn an_entry_shows_reachability_breaker_and_counts() {
        let mut reach = settled();
        let bob = id("bob.os");
        reach.on_success(&bob, 1_000, Some(80));
        reach.on_timeout(&bob, 2_000);
        let mut breakers = Breakers::new(BreakerConfig::default(), 16);
        breakers.on_failure(&bob, 2_000);
        let mut t = Traffic::default();
        t.on_sent(&bob);
        t.on_sent(&bob);
        t.on_received(&bob);
        let h = peer_health(&bob, 2_001, &reach, Some(&breakers), &t);
        assert_eq!(
            h,
            PeerHealth {
                node: bob.clone(),
                status: Status::Degraded,
                consecutive_failures: 1,
                srtt_ms: Some(80),
                breaker: Some(BreakerStatus::Closed),
                breaker_failures: 1,
                sent: 2,
                received: 1,
            }
        );
        for _ in 0..4 {
            breakers.on_failure(&bob, 3_000);
        }
        let h = peer_health(&bob, 3_001, &reach, Some(&breakers), &t);
        assert_eq!(
            (h.breaker, h.breaker_failures),
            (Some(BreakerStatus::Open), 0)
        );
        // Presence has no outbox: no breaker.
        assert_eq!(peer_health(&bob, 3_001, &reach, None, &t).breaker, None);
        // A node nobody knows is Unknown with zero counts.
        let carol = peer_health(&id("carol.os"), 0, &reach, None, &t);
        assert_eq!(
            (carol.status, carol.sent, carol.received),
            (Status::Unknown, 0, 0)
        );
    }

    #[test]
    fn observe_counts_only_other_nodes_messages() {
        let our = id("alice.os");
        let mut t = Traffic::default();
        let addr = |n: &str| Address::new(id(n), ProcessId::ours("sync"));
        let req = |from: &str| Input::<(), ()>::Request {
            id: crate::service::RequestId(1),
            from: addr(from),
            body: vec![],
            blob: None,
            timeout_s: None,
        };
        let send = |to: &str| Effect::<(), ()>::Send {
            to: addr(to),
            body: vec![],
            blob: None,
            expect: None,
        };
        t.observe(
            &our,
            &req("bob.os"),
            &[send("bob.os"), send("carol.os"), send("alice.os")],
        );
        t.observe(&our, &req("alice.os"), &[]);
        t.observe(&our, &Input::Timer(()), &[send("bob.os")]);
        assert_eq!(t.counts(&id("bob.os")), (2, 1));
        assert_eq!(t.counts(&id("carol.os")), (1, 0));
        assert_eq!(t.counts(&our), (0, 0));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn traffic_is_bounded_dropping_the_least_recently_active() {
        let mut t = Traffic::new(3);
        for n in ["a.os", "b.os", "c.os"] {
            t.on_sent(&id(n));
        }
        t.on_received(&id("a.os"));
        t.on_sent(&id("d.os"));
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.counts(&id("b.os")),
            (0, 0),
            "b.os was the least recently active"
        );
        assert_eq!(t.counts(&id("a.os")), (1, 1));
        for k in 0..10_000 {
            t.on_sent(&id(&format!("n{k}.os")));
        }
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_report_is_bounded_keeps_the_busiest_and_counts_the_rest() {
        let our = id("alice.os");
        let mut reach = settled();
        let mut t = Traffic::default();
        for k in 0..200u64 {
            let n = id(&format!("n{k:03}.os"));
            reach.on_success(&n, 10, None);
            for _ in 0..k {
                t.on_sent(&n);
            }
        }
        // We are never our own peer.
        t.on_received(&our);
        let r = report(&our, 20, &reach, None, &t, MAX_HEALTH_PEERS);
        assert_eq!(r.peers.len(), MAX_HEALTH_PEERS);
        assert_eq!(r.more, 200 - MAX_HEALTH_PEERS as u64);
        assert!(
            r.peers.windows(2).all(|w| w[0].node < w[1].node),
            "sorted by node"
        );
        // The busiest 64: n136..n199.
        assert_eq!(r.peers[0].node, id("n136.os"));
        assert_eq!(r.peers[63].node, id("n199.os"));
        assert!(!r.own_trouble);
        // The answer's size is bounded whatever the number of peers.
        let bytes = serde_json::to_vec(&r).unwrap().len();
        assert!(bytes < 64 * 300, "{bytes} bytes");
        let small = report(&our, 20, &reach, None, &t, 1000);
        assert_eq!((small.peers.len(), small.more), (200, 0));
    }

    #[test]
    fn the_json_names_the_fields_as_documented() {
        let r = HealthReport {
            node: id("alice.os"),
            own_trouble: false,
            peers: vec![PeerHealth {
                node: id("bob.os"),
                status: Status::Reachable,
                consecutive_failures: 0,
                srtt_ms: None,
                breaker: Some(BreakerStatus::HalfOpen),
                breaker_failures: 0,
                sent: 3,
                received: 4,
            }],
            more: 0,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"node": "alice.os", "own_trouble": false, "peers": [{"node": "bob.os",
                "status": "Reachable", "consecutive_failures": 0, "srtt_ms": null,
                "breaker": "HalfOpen", "breaker_failures": 0, "sent": 3, "received": 4}], "more": 0})
        );
    }
}
