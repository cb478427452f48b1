//! Per-node reachability from the outcomes of our own requests.
//!
//! Hyperware reports a failed send as `Offline` (the node is unknown or could not be
//! reached: strong evidence) or `Timeout` (no answer in time: maybe slow, maybe gone).
//! Feed every outcome in; ask [`Reachability::status`] before choosing peers and
//! [`Reachability::suggested_timeout_ms`] when sending.
//!
//! Round-trip times are smoothed as TCP does (RFC 6298: `SRTT`, `RTTVAR`, gains 1/8 and
//! 1/4), in integer math. Only pass an RTT for requests that were not retried (Karn's
//! rule), since a reply to a retried request cannot be matched to one send.

use super::capped::CappedMap;
use crate::ids::NodeId;
use crate::service::{Millis, SendErrorKind};
use serde::{Deserialize, Serialize};

/// What we believe about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Never heard of it, or all evidence is older than `stale_after_ms`.
    Unknown,
    /// The latest outcome was a success.
    Reachable,
    /// Recent timeouts, fewer than `unreachable_after`.
    Degraded,
    /// An `Offline` since the last success, or `unreachable_after` timeouts in a row.
    Unreachable,
}

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachabilityConfig {
    /// Consecutive failures that make a node `Unreachable` (at least 1).
    pub unreachable_after: u32,
    /// Lower bound of [`Reachability::suggested_timeout_ms`].
    pub min_timeout_ms: Millis,
    /// Upper bound of [`Reachability::suggested_timeout_ms`] (wins over the lower one).
    pub max_timeout_ms: Millis,
    /// Suggested timeout for a node without RTT samples (then clamped).
    pub default_timeout_ms: Millis,
    /// Evidence older than this turns the status back to `Unknown`; `None` keeps it forever.
    pub stale_after_ms: Option<Millis>,
    /// Most nodes tracked (at least 1); the least recently updated is dropped beyond it.
    pub cap: usize,
    /// After consecutive failures the suggested timeout doubles once per failure, up to this
    /// many times (TCP's retransmission-timeout backoff): a peer slower than its estimate,
    /// which yields no RTT sample while every try times out, still gets a chance to answer.
    pub max_backoff_doublings: u32,
}

impl Default for ReachabilityConfig {
    /// 3 timeouts, timeouts 1 s..60 s (5 s unmeasured), stale after 10 min, 1024 nodes,
    /// backoff up to 8× the estimate.
    fn default() -> Self {
        ReachabilityConfig {
            unreachable_after: 3,
            min_timeout_ms: 1_000,
            max_timeout_ms: 60_000,
            default_timeout_ms: 5_000,
            stale_after_ms: Some(600_000),
            cap: 1024,
            max_backoff_doublings: 3,
        }
    }
}

/// What is known about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    pub last_success: Option<Millis>,
    pub last_failure: Option<Millis>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Whether those failures include an `Offline`.
    pub offline: bool,
    /// 8 × SRTT, once sampled.
    srtt_x8: Option<u64>,
    /// 4 × RTTVAR.
    rttvar_x4: u64,
}

impl PeerStats {
    fn new() -> Self {
        PeerStats {
            last_success: None,
            last_failure: None,
            consecutive_failures: 0,
            offline: false,
            srtt_x8: None,
            rttvar_x4: 0,
        }
    }

    /// Smoothed round-trip time, once sampled.
    pub fn srtt_ms(&self) -> Option<Millis> {
        self.srtt_x8.map(|s| s / 8)
    }

    /// Round-trip time variation (0 before any sample).
    pub fn rttvar_ms(&self) -> Millis {
        self.rttvar_x4 / 4
    }

    fn sample_rtt(&mut self, r: Millis) {
        match self.srtt_x8 {
            None => {
                self.srtt_x8 = Some(r.saturating_mul(8));
                self.rttvar_x4 = r.saturating_mul(2); // RTTVAR = R/2
            }
            Some(s8) => {
                let delta = (s8 / 8).abs_diff(r);
                self.rttvar_x4 = (self.rttvar_x4 - self.rttvar_x4 / 4).saturating_add(delta);
                self.srtt_x8 = Some((s8 - s8 / 8).saturating_add(r));
            }
        }
    }

    fn latest(&self) -> Option<Millis> {
        self.last_success.max(self.last_failure)
    }
}

/// Reachability of many nodes, at most `config.cap` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    config: ReachabilityConfig,
    peers: CappedMap<PeerStats>,
    /// Our own network health: while the trouble is ours, failures are not held against
    /// peers (no Unreachable verdicts, no timeout back-off).
    #[serde(default)]
    health: super::NetHealth,
}

impl Default for Reachability {
    fn default() -> Self {
        Reachability::new(ReachabilityConfig::default())
    }
}

impl Reachability {
    pub fn new(config: ReachabilityConfig) -> Self {
        Reachability {
            peers: CappedMap::new(config.cap),
            config,
            health: super::NetHealth::default(),
        }
    }

    /// Our process (re)started at `now` (monotonic): our networking must prove itself.
    pub fn restart(&mut self, now: Millis) {
        self.health.restart(now);
    }

    /// Our own network health.
    pub fn health(&self) -> &super::NetHealth {
        &self.health
    }
    pub fn health_mut(&mut self) -> &mut super::NetHealth {
        &mut self.health
    }
    pub fn set_health(&mut self, h: super::NetHealth) {
        self.health = h;
    }

    /// Whether failures at `now` are ours rather than the peers' (see
    /// [`super::NetHealth`]). Breakers and failure verdicts must not open while it is.
    pub fn own_trouble(&self, now: Millis) -> bool {
        self.health.own_trouble(now)
    }

    /// Someone else reached a peer we could not (an indirect-probe ack, a peer's report).
    pub fn on_contradicted(&mut self, now: Millis) {
        self.health.on_contradicted(now);
    }

    pub fn config(&self) -> &ReachabilityConfig {
        &self.config
    }

    /// Nodes tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// What is known about `node`.
    pub fn peer(&self, node: &NodeId) -> Option<&PeerStats> {
        self.peers.get(node)
    }

    /// Every node tracked, by node id.
    pub fn peers(&self) -> impl Iterator<Item = (&NodeId, &PeerStats)> {
        self.peers.iter()
    }

    /// Forget `node`.
    pub fn forget(&mut self, node: &NodeId) {
        self.peers.remove(node);
    }

    fn entry(&mut self, node: &NodeId) -> &mut PeerStats {
        self.peers.touch_or_insert(node, PeerStats::new, |_| ())
    }

    /// `node` answered one of our requests; `rtt_ms` is the round trip of a request that
    /// was not retried. It also proves our own networking.
    pub fn on_success(&mut self, node: &NodeId, now: Millis, rtt_ms: Option<Millis>) {
        self.health.on_success(now);
        self.on_peer_reached(node, now, rtt_ms);
    }

    /// `node` is reachable (by someone: it spoke to us, or a helper reached it), without
    /// saying anything about our own networking.
    pub fn on_peer_reached(&mut self, node: &NodeId, now: Millis, rtt_ms: Option<Millis>) {
        let p = self.entry(node);
        p.last_success = Some(now);
        p.consecutive_failures = 0;
        p.offline = false;
        if let Some(r) = rtt_ms {
            p.sample_rtt(r);
        }
    }

    /// A send to `node` failed with `Offline`.
    pub fn on_offline(&mut self, node: &NodeId, now: Millis) {
        if self.own_trouble(now) {
            return;
        }
        let p = self.entry(node);
        p.last_failure = Some(now);
        p.consecutive_failures = p.consecutive_failures.saturating_add(1);
        p.offline = true;
    }

    /// A send to `node` timed out.
    pub fn on_timeout(&mut self, node: &NodeId, now: Millis) {
        if self.own_trouble(now) {
            return;
        }
        let p = self.entry(node);
        p.last_failure = Some(now);
        p.consecutive_failures = p.consecutive_failures.saturating_add(1);
    }

    /// [`on_offline`](Self::on_offline) or [`on_timeout`](Self::on_timeout) by `kind`.
    pub fn on_send_failed(&mut self, node: &NodeId, kind: SendErrorKind, now: Millis) {
        match kind {
            SendErrorKind::Offline => self.on_offline(node, now),
            SendErrorKind::Timeout => self.on_timeout(node, now),
        }
    }

    /// What we believe about `node` at `now`.
    pub fn status(&self, node: &NodeId, now: Millis) -> Status {
        let Some(p) = self.peers.get(node) else {
            return Status::Unknown;
        };
        if let (Some(stale), Some(latest)) = (self.config.stale_after_ms, p.latest()) {
            if now.saturating_sub(latest) >= stale {
                return Status::Unknown;
            }
        }
        if p.consecutive_failures == 0 {
            if p.last_success.is_some() {
                Status::Reachable
            } else {
                Status::Unknown
            }
        } else if p.offline || p.consecutive_failures >= self.config.unreachable_after.max(1) {
            Status::Unreachable
        } else {
            Status::Degraded
        }
    }

    /// Timeout for the next request to `node`: `SRTT + 4 × RTTVAR` (or
    /// `default_timeout_ms` without samples), clamped to `[min_timeout_ms, max_timeout_ms]`.
    pub fn suggested_timeout_ms(&self, node: &NodeId) -> Millis {
        let raw = self
            .peers
            .get(node)
            .and_then(|p| p.srtt_ms().map(|s| s.saturating_add(p.rttvar_x4)))
            .unwrap_or(self.config.default_timeout_ms);
        let doublings = self
            .peers
            .get(node)
            .map_or(0, |p| p.consecutive_failures)
            .min(self.config.max_backoff_doublings)
            .min(32);
        let raw = raw
            .max(self.config.min_timeout_ms)
            .saturating_mul(1 << doublings);
        raw.min(self.config.max_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn timeout_backs_off_on_consecutive_failures_and_resets_on_success() {
        let mut r = Reachability::new(ReachabilityConfig {
            default_timeout_ms: 1_000,
            ..no_stale()
        });
        let n = node(1);
        assert_eq!(r.suggested_timeout_ms(&n), 1_000);
        r.on_timeout(&n, 10);
        assert_eq!(r.suggested_timeout_ms(&n), 2_000);
        r.on_timeout(&n, 20);
        assert_eq!(r.suggested_timeout_ms(&n), 4_000);
        for t in 0..10 {
            r.on_timeout(&n, 30 + t);
        }
        assert_eq!(r.suggested_timeout_ms(&n), 8_000, "at most 3 doublings");
        r.on_success(&n, 100, Some(1_700));
        let t = r.suggested_timeout_ms(&n);
        assert!((1_700..8_000).contains(&t), "back to the measured RTT: {t}");
    }

    fn node(i: usize) -> NodeId {
        NodeId::parse(&format!("n{i}.os")).unwrap()
    }

    fn no_stale() -> ReachabilityConfig {
        ReachabilityConfig {
            stale_after_ms: None,
            ..ReachabilityConfig::default()
        }
    }

    #[test]
    fn timeouts_degrade_then_unreachable() {
        let mut r = Reachability::new(no_stale());
        let a = node(1);
        assert_eq!(r.status(&a, 0), Status::Unknown);
        r.on_timeout(&a, 1);
        assert_eq!(r.status(&a, 1), Status::Degraded);
        r.on_timeout(&a, 2);
        assert_eq!(r.status(&a, 2), Status::Degraded);
        r.on_timeout(&a, 3);
        assert_eq!(r.status(&a, 3), Status::Unreachable);
        r.on_success(&a, 4, None);
        assert_eq!(r.status(&a, 4), Status::Reachable);
    }

    #[test]
    fn one_offline_is_unreachable_until_a_success() {
        let mut r = Reachability::new(no_stale());
        let a = node(1);
        r.on_success(&a, 0, Some(100));
        r.on_send_failed(&a, SendErrorKind::Offline, 1);
        assert_eq!(r.status(&a, 1), Status::Unreachable);
        r.on_timeout(&a, 2);
        assert_eq!(r.status(&a, 2), Status::Unreachable);
        r.on_success(&a, 3, None);
        assert_eq!(r.status(&a, 3), Status::Reachable);
        assert_eq!(r.peer(&a).unwrap().srtt_ms(), Some(100));
    }

    #[test]
    fn evidence_goes_stale() {
        let mut r = Reachability::default();
        let a = node(1);
        r.on_offline(&a, 1_000);
        assert_eq!(r.status(&a, 600_999), Status::Unreachable);
        assert_eq!(r.status(&a, 601_000), Status::Unknown);
    }

    #[test]
    fn srtt_follows_rfc6298() {
        let mut r = Reachability::new(ReachabilityConfig {
            min_timeout_ms: 0,
            ..no_stale()
        });
        let a = node(1);
        assert_eq!(r.suggested_timeout_ms(&a), 5_000);
        r.on_success(&a, 0, Some(800));
        // SRTT = 800, RTTVAR = 400: RTO = 800 + 1600.
        assert_eq!(r.suggested_timeout_ms(&a), 2_400);
        r.on_success(&a, 1, Some(400));
        // RTTVAR = 3/4*400 + 1/4*400 = 400; SRTT = 7/8*800 + 1/8*400 = 750.
        let p = r.peer(&a).unwrap();
        assert_eq!((p.srtt_ms(), p.rttvar_ms()), (Some(750), 400));
        assert_eq!(r.suggested_timeout_ms(&a), 2_350);
        r.on_success(&a, 2, Some(u64::MAX));
        assert_eq!(r.suggested_timeout_ms(&a), 60_000);
    }

    #[test]
    fn serde_roundtrip() {
        let mut r = Reachability::default();
        r.on_success(&node(1), 5, Some(30));
        r.on_timeout(&node(2), 6);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Reachability>(&j).unwrap(), r);
    }

    #[test]
    fn evicts_least_recently_updated() {
        let mut r = Reachability::new(ReachabilityConfig {
            cap: 2,
            ..no_stale()
        });
        r.on_timeout(&node(1), 0);
        r.on_timeout(&node(2), 0);
        r.on_timeout(&node(1), 1);
        r.on_timeout(&node(3), 2);
        assert!(r.peer(&node(2)).is_none());
        assert!(r.peer(&node(1)).is_some() && r.peer(&node(3)).is_some());
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Success(Option<Millis>),
        Offline,
        Timeout,
    }

    fn events() -> impl Strategy<Value = Vec<(usize, Ev, Millis)>> {
        let ev = prop_oneof![
            proptest::option::of(prop_oneof![0..5_000u64, any::<u64>()]).prop_map(Ev::Success),
            Just(Ev::Offline),
            Just(Ev::Timeout),
        ];
        proptest::collection::vec((0..12usize, ev, 0..1_000u64), 0..200)
    }

    proptest! {
        #[test]
        fn statuses_follow_the_rules(cap in 0..8usize, after in 0..5u32, evs in events()) {
            let mut r = Reachability::new(ReachabilityConfig {
                cap, unreachable_after: after, ..no_stale()
            });
            let mut now = 0;
            // Model: per node, (failures since the last success, an Offline among them).
            let mut model: BTreeMap<usize, (u32, bool)> = BTreeMap::new();
            for (n, ev, dt) in evs {
                now += dt;
                let id = node(n);
                if r.peer(&id).is_none() {
                    model.remove(&n); // never seen, or evicted: starts afresh
                }
                let m = model.entry(n).or_insert((0, false));
                match ev {
                    Ev::Success(rtt) => {
                        r.on_success(&id, now, rtt);
                        *m = (0, false);
                    }
                    Ev::Offline => {
                        r.on_offline(&id, now);
                        *m = (m.0 + 1, true);
                    }
                    Ev::Timeout => {
                        r.on_timeout(&id, now);
                        m.0 += 1;
                    }
                }
                let want = match *m {
                    (0, _) => Status::Reachable,
                    (_, true) => Status::Unreachable,
                    (f, false) if f >= after.max(1) => Status::Unreachable,
                    _ => Status::Degraded,
                };
                prop_assert_eq!(r.status(&id, now), want);
                let p = r.peer(&id).unwrap();
                prop_assert_eq!((p.consecutive_failures, p.offline), *m);
                prop_assert!(r.len() <= cap.max(1));
                prop_assert_eq!(r.status(&node(99), now), Status::Unknown);
                let t = r.suggested_timeout_ms(&id);
                prop_assert!((1_000..=60_000).contains(&t));
            }
        }

        #[test]
        fn srtt_stays_within_the_samples(samples in proptest::collection::vec(0..100_000u64, 1..60)) {
            let mut r = Reachability::new(no_stale());
            let a = node(1);
            for (i, s) in samples.iter().enumerate() {
                r.on_success(&a, i as u64, Some(*s));
                let lo = *samples[..=i].iter().min().unwrap();
                let hi = *samples[..=i].iter().max().unwrap();
                let srtt = r.peer(&a).unwrap().srtt_ms().unwrap();
                prop_assert!(lo <= srtt && srtt <= hi, "{} not in [{}, {}]", srtt, lo, hi);
            }
        }

        #[test]
        fn constant_rtt_is_learned_exactly(rtt in 0..1_000_000u64, n in 1..40usize) {
            let mut r = Reachability::new(no_stale());
            let a = node(1);
            for i in 0..n {
                r.on_success(&a, i as u64, Some(rtt));
            }
            prop_assert_eq!(r.peer(&a).unwrap().srtt_ms(), Some(rtt));
        }
    }

    #[test]
    fn contradicted_failures_make_the_trouble_ours_and_peers_reached_by_others_do_not_end_it() {
        let mut r = Reachability::default();
        let (a, b) = (
            NodeId::parse("a.os").unwrap(),
            NodeId::parse("b.os").unwrap(),
        );
        r.on_success(&a, 1_000, Some(50));
        r.on_timeout(&b, 2_000);
        // A helper reached b: evidence against our network, and b is alive.
        r.on_contradicted(2_100);
        r.on_peer_reached(&b, 2_100, None);
        r.on_timeout(&a, 3_000);
        r.on_contradicted(3_100);
        r.on_peer_reached(&a, 3_100, None);
        assert!(
            r.own_trouble(3_200),
            "two contradictions, no success of ours between"
        );
        // While it is ours, failures are not held against peers.
        r.on_timeout(&a, 3_300);
        r.on_timeout(&a, 3_400);
        assert_eq!(r.peer(&a).unwrap().consecutive_failures, 0);
        r.on_success(&a, 4_000, None);
        assert!(!r.own_trouble(4_000));
    }
}
