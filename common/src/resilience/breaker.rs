//! Circuit breaker: stop calling a peer that keeps failing, probe it again after a while.
//!
//! - `Closed`: calls pass; `failure_threshold` consecutive failures open the breaker.
//! - `Open { until }`: calls are rejected until `until`; the first [`CircuitBreaker::check`]
//!   at or after `until` moves to `HalfOpen`.
//! - `HalfOpen`: at most `half_open_max_calls` probe calls in flight. Any failure reopens;
//!   `success_threshold` successes close.
//!
//! A probe whose outcome is never reported (a lost reply, a restart with persisted state)
//! would block `HalfOpen` forever; so when all probe slots are busy and `open_ms` has passed
//! since the slots were last granted, they are presumed lost and freed.
//!
//! [`Breakers`] keeps one breaker per node, bounded in size.

use super::capped::CappedMap;
use crate::ids::NodeId;
use crate::service::Millis;
use serde::{Deserialize, Serialize};

/// Breaker settings. Counts below 1 act as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an open breaker rejects calls.
    pub open_ms: Millis,
    /// Probe calls allowed in flight while half-open.
    pub half_open_max_calls: u32,
    /// Successful probes needed to close.
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    /// 5 failures, 30 s open, 1 probe, 1 success.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 30_000,
            half_open_max_calls: 1,
            success_threshold: 1,
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Millis,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
        /// When the probe slots were last granted from empty; see the module docs.
        since: Millis,
    },
}

/// A call refused by a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("circuit open; retry in {retry_after_ms} ms")]
pub struct Rejected {
    /// How long until the breaker might admit a call.
    pub retry_after_ms: Millis,
}

/// One circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(BreakerConfig::default())
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn failure_threshold(&self) -> u32 {
        self.config.failure_threshold.max(1)
    }
    fn max_probes(&self) -> u32 {
        self.config.half_open_max_calls.max(1)
    }
    fn success_threshold(&self) -> u32 {
        self.config.success_threshold.max(1)
    }

    fn open(&mut self, now: Millis) {
        self.state = BreakerState::Open {
            until: now.saturating_add(self.config.open_ms),
        };
    }

    /// May a call go out now? Call once per call, then report its outcome with
    /// [`on_success`](Self::on_success) or [`on_failure`](Self::on_failure).
    pub fn check(&mut self, now: Millis) -> Result<(), Rejected> {
        match self.state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } if now < until => Err(Rejected {
                retry_after_ms: until - now,
            }),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                    since: now,
                };
                Ok(())
            }
            BreakerState::HalfOpen {
                in_flight,
                successes,
                since,
            } => {
                let lease_end = since.saturating_add(self.config.open_ms);
                if in_flight < self.max_probes() {
                    let since = if in_flight == 0 { now } else { since };
                    self.state = BreakerState::HalfOpen {
                        in_flight: in_flight + 1,
                        successes,
                        since,
                    };
                    Ok(())
                } else if now >= lease_end {
                    // The probes in flight are presumed lost: free their slots.
                    self.state = BreakerState::HalfOpen {
                        in_flight: 1,
                        successes,
                        since: now,
                    };
                    Ok(())
                } else {
                    Err(Rejected {
                        retry_after_ms: lease_end.saturating_sub(now),
                    })
                }
            }
        }
    }

    /// Like [`check`](Self::check), except that an open breaker admits one call at once, as
    /// if its open period were over (it goes half-open with that call as its probe). For a
    /// call made on direct evidence that the callee is back (it has just spoken to us); the
    /// caller bounds how often it does this, or the breaker would protect nothing.
    pub fn check_now(&mut self, now: Millis) -> Result<(), Rejected> {
        if let BreakerState::Open { .. } = self.state {
            self.state = BreakerState::HalfOpen {
                in_flight: 1,
                successes: 0,
                since: now,
            };
            return Ok(());
        }
        self.check(now)
    }

    /// A call succeeded.
    pub fn on_success(&mut self, _now: Millis) {
        match self.state {
            BreakerState::Closed { .. } => {
                self.state = BreakerState::Closed {
                    consecutive_failures: 0,
                }
            }
            // A late answer to a call made before the breaker opened: ignored.
            BreakerState::Open { .. } => {}
            BreakerState::HalfOpen {
                in_flight,
                successes,
                since,
            } => {
                let successes = successes.saturating_add(1);
                self.state = if successes >= self.success_threshold() {
                    BreakerState::Closed {
                        consecutive_failures: 0,
                    }
                } else {
                    BreakerState::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        successes,
                        since,
                    }
                };
            }
        }
    }

    /// A call failed.
    pub fn on_failure(&mut self, now: Millis) {
        match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let n = consecutive_failures.saturating_add(1);
                if n >= self.failure_threshold() {
                    self.open(now);
                } else {
                    self.state = BreakerState::Closed {
                        consecutive_failures: n,
                    };
                }
            }
            // Already open: a late failure does not extend the wait.
            BreakerState::Open { .. } => {}
            BreakerState::HalfOpen { .. } => self.open(now),
        }
    }

    /// Closed with no failures: behaves exactly like a new breaker.
    pub fn is_pristine(&self) -> bool {
        self.state
            == BreakerState::Closed {
                consecutive_failures: 0,
            }
    }
}

/// One breaker per node, at most `cap` of them.
///
/// Nodes without a breaker act as a new (closed) one, so breakers that return to closed
/// with no failures are dropped. When a new node must be added at the cap, the evicted
/// breaker is the least recently touched closed one, else the least recently touched one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakers {
    config: BreakerConfig,
    map: CappedMap<CircuitBreaker>,
}

impl Breakers {
    /// `cap` is at least 1.
    pub fn new(config: BreakerConfig, cap: usize) -> Self {
        Breakers {
            config,
            map: CappedMap::new(cap),
        }
    }

    /// Breakers currently kept (nodes with failures or open/half-open).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.map.cap()
    }

    /// The state for `node` (`Closed { 0 }` when none is kept).
    pub fn state(&self, node: &NodeId) -> BreakerState {
        self.map.get(node).map_or(
            BreakerState::Closed {
                consecutive_failures: 0,
            },
            |b| b.state(),
        )
    }

    /// The nodes with a breaker kept (failures, open or half-open).
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.map.keys()
    }

    /// The breaker kept for `node`, if any.
    pub fn get(&self, node: &NodeId) -> Option<&CircuitBreaker> {
        self.map.get(node)
    }

    /// Forget `node`'s breaker.
    pub fn remove(&mut self, node: &NodeId) {
        self.map.remove(node);
    }

    /// [`CircuitBreaker::check`] for `node`.
    pub fn check(&mut self, node: &NodeId, now: Millis) -> Result<(), Rejected> {
        self.update(node, false, |b| b.check(now)).unwrap_or(Ok(()))
    }

    /// [`CircuitBreaker::check_now`] for `node`.
    pub fn check_now(&mut self, node: &NodeId, now: Millis) -> Result<(), Rejected> {
        self.update(node, false, |b| b.check_now(now))
            .unwrap_or(Ok(()))
    }

    /// [`CircuitBreaker::on_success`] for `node`.
    pub fn on_success(&mut self, node: &NodeId, now: Millis) {
        self.update(node, false, |b| b.on_success(now));
    }

    /// [`CircuitBreaker::on_failure`] for `node`.
    pub fn on_failure(&mut self, node: &NodeId, now: Millis) {
        self.update(node, true, |b| b.on_failure(now));
    }

    /// Apply `f` to `node`'s breaker. A missing breaker is only created when `create`
    /// (otherwise `None` is returned); pristine breakers are dropped afterwards.
    fn update<T>(
        &mut self,
        node: &NodeId,
        create: bool,
        f: impl FnOnce(&mut CircuitBreaker) -> T,
    ) -> Option<T> {
        let config = self.config;
        let breaker = if create {
            // Evicted first: pristine, then closed, then the rest (each oldest first).
            self.map.touch_or_insert(
                node,
                || CircuitBreaker::new(config),
                |b| {
                    let closed = matches!(b.state(), BreakerState::Closed { .. });
                    (!b.is_pristine(), !closed)
                },
            )
        } else {
            self.map.touch(node)?
        };
        let out = f(breaker);
        if breaker.is_pristine() {
            self.map.remove(node);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(failures: u32, open_ms: Millis, probes: u32, successes: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: failures,
            open_ms,
            half_open_max_calls: probes,
            success_threshold: successes,
        }
    }

    fn node(i: usize) -> NodeId {
        NodeId::parse(&format!("n{i}.os")).unwrap()
    }

    /// `check_now` lets one call through an open breaker at once (half-open, that call its
    /// probe), and no second one while it is in flight; a closed or half-open breaker
    /// answers as `check` does.
    #[test]
    fn check_now_admits_one_probe_through_an_open_breaker() {
        let mut b = CircuitBreaker::new(cfg(1, 30_000, 1, 1));
        b.on_failure(0);
        assert!(b.check(10).is_err());
        assert_eq!(b.check_now(10), Ok(()));
        assert!(matches!(
            b.state(),
            BreakerState::HalfOpen { in_flight: 1, .. }
        ));
        assert!(b.check_now(20).is_err(), "one probe in flight");
        assert!(b.check(20).is_err());
        b.on_failure(30);
        assert_eq!(b.state(), BreakerState::Open { until: 30_030 });
        assert_eq!(b.check_now(40), Ok(()));
        b.on_success(50);
        assert!(b.is_pristine());
        let mut m = Breakers::new(cfg(1, 30_000, 1, 1), 4);
        assert_eq!(m.check_now(&node(1), 0), Ok(()));
        m.on_failure(&node(1), 0);
        assert!(m.check(&node(1), 10).is_err());
        assert_eq!(m.check_now(&node(1), 10), Ok(()));
        assert!(m.check_now(&node(1), 20).is_err());
    }

    #[test]
    fn full_cycle() {
        let mut b = CircuitBreaker::default();
        for t in 0..4 {
            b.check(t).unwrap();
            b.on_failure(t);
        }
        assert_eq!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 4
            }
        );
        b.on_failure(10);
        assert_eq!(b.state(), BreakerState::Open { until: 30_010 });
        assert_eq!(
            b.check(10_010),
            Err(Rejected {
                retry_after_ms: 20_000
            })
        );
        assert_eq!(b.check(30_010), Ok(()));
        assert!(matches!(
            b.state(),
            BreakerState::HalfOpen { in_flight: 1, .. }
        ));
        assert!(b.check(30_011).is_err(), "one probe at a time");
        b.on_success(30_100);
        assert!(b.is_pristine());
    }

    #[test]
    fn half_open_failure_reopens() {
        let mut b = CircuitBreaker::new(cfg(1, 100, 2, 2));
        b.on_failure(0);
        assert!(b.check(100).is_ok());
        assert!(b.check(100).is_ok());
        assert!(b.check(100).is_err());
        b.on_success(110);
        assert!(matches!(
            b.state(),
            BreakerState::HalfOpen {
                in_flight: 1,
                successes: 1,
                ..
            }
        ));
        b.on_failure(120);
        assert_eq!(b.state(), BreakerState::Open { until: 220 });
    }

    #[test]
    fn lost_probes_are_freed_after_open_ms() {
        let mut b = CircuitBreaker::new(cfg(1, 1_000, 1, 1));
        b.on_failure(0);
        assert!(b.check(1_000).is_ok()); // the probe's outcome never comes back
        assert_eq!(
            b.check(1_500),
            Err(Rejected {
                retry_after_ms: 500
            })
        );
        assert_eq!(b.check(1_999), Err(Rejected { retry_after_ms: 1 }));
        assert!(b.check(2_000).is_ok());
        assert!(b.check(2_001).is_err());
    }

    #[test]
    fn zero_config_acts_as_one() {
        let mut b = CircuitBreaker::new(cfg(0, 0, 0, 0));
        b.on_failure(5);
        assert_eq!(b.state(), BreakerState::Open { until: 5 });
        assert!(b.check(5).is_ok());
        b.on_success(5);
        assert!(b.is_pristine());
        let mut b = CircuitBreaker::new(cfg(1, u64::MAX, 1, 1));
        b.on_failure(u64::MAX - 1);
        assert_eq!(b.state(), BreakerState::Open { until: u64::MAX });
        assert!(b.check(u64::MAX).is_ok());
    }

    #[test]
    fn state_serde_roundtrip() {
        let mut b = CircuitBreaker::default();
        b.on_failure(1);
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<CircuitBreaker>(&j).unwrap(), b);
        let mut m = Breakers::new(BreakerConfig::default(), 4);
        m.on_failure(&node(1), 3);
        let j = serde_json::to_string(&m).unwrap();
        assert!(j.contains("\"n1.os\""), "{j}");
        assert_eq!(serde_json::from_str::<Breakers>(&j).unwrap(), m);
    }

    #[test]
    fn breakers_are_per_node_and_drop_pristine_ones() {
        let mut m = Breakers::new(cfg(2, 1000, 1, 1), 10);
        let (a, b) = (node(1), node(2));
        m.on_failure(&a, 0);
        m.on_failure(&a, 1);
        assert!(m.check(&a, 2).is_err());
        assert!(m.check(&b, 2).is_ok());
        assert_eq!(m.len(), 1, "checks on unknown nodes store nothing");
        m.on_failure(&b, 3);
        m.on_success(&b, 4);
        assert_eq!(m.len(), 1, "b is pristine again and dropped");
    }

    #[test]
    fn eviction_prefers_closed_then_oldest() {
        let mut m = Breakers::new(cfg(2, 1000, 1, 1), 3);
        m.on_failure(&node(1), 0); // closed, 1 failure (oldest)
        m.on_failure(&node(2), 0);
        m.on_failure(&node(2), 0); // open
        m.on_failure(&node(3), 0);
        m.on_failure(&node(3), 0); // open
        m.on_failure(&node(4), 0); // evicts node 1: the only closed one
        assert!(m.get(&node(1)).is_none());
        m.on_failure(&node(4), 0); // node 4 opens
        m.on_failure(&node(5), 0); // all open: evicts the least recently touched, node 2
        assert!(m.get(&node(2)).is_none());
        assert!(m.get(&node(3)).is_some());
        assert_eq!(m.len(), 3);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Check,
        Success,
        Failure,
    }

    fn ops() -> impl Strategy<Value = Vec<(Op, Millis)>> {
        let op = prop_oneof![Just(Op::Check), Just(Op::Success), Just(Op::Failure)];
        let dt = prop_oneof![0..3u64, 0..400u64];
        proptest::collection::vec((op, dt), 0..300)
    }

    fn config() -> impl Strategy<Value = BreakerConfig> {
        (0..6u32, 0..2_000u64, 0..4u32, 0..4u32).prop_map(|(f, o, p, s)| cfg(f, o, p, s))
    }

    proptest! {
        #[test]
        fn threshold_consecutive_failures_open(c in config(), start in 0..1_000_000u64) {
            let mut b = CircuitBreaker::new(c);
            let n = c.failure_threshold.max(1);
            for i in 0..n - 1 {
                b.on_failure(start + u64::from(i));
                prop_assert_eq!(b.state(), BreakerState::Closed { consecutive_failures: i + 1 });
            }
            b.on_failure(start + 1_000);
            prop_assert_eq!(b.state(), BreakerState::Open { until: start + 1_000 + c.open_ms });
        }

        #[test]
        fn success_resets_failures(c in config(), fails in 0..10u32) {
            let mut b = CircuitBreaker::new(c);
            for _ in 0..fails.min(c.failure_threshold.max(1) - 1) {
                b.on_failure(0);
            }
            b.on_success(0);
            prop_assert!(b.is_pristine());
            // After a reset it again takes the full threshold to open.
            for _ in 0..c.failure_threshold.max(1) - 1 {
                b.on_failure(0);
            }
            let is_closed = matches!(b.state(), BreakerState::Closed { .. });
            prop_assert!(is_closed);
        }

        #[test]
        fn open_rejects_every_check_before_until(c in config(), start in 0..1_000u64,
                                                  probes in proptest::collection::vec(0..4_000u64, 1..30)) {
            let mut b = CircuitBreaker::new(cfg(1, c.open_ms, c.half_open_max_calls, c.success_threshold));
            b.on_failure(start);
            let until = start + c.open_ms;
            let mut probes = probes;
            probes.sort_unstable();
            for dt in probes {
                let t = start + dt;
                if t >= until { break; }
                prop_assert_eq!(b.check(t), Err(Rejected { retry_after_ms: until - t }));
                b.on_failure(t); // late failures do not extend the wait
                b.on_success(t); // nor do late successes close it
            }
            prop_assert!(b.check(until).is_ok());
        }

        /// Random sequences: never panics, in-flight probes never exceed the limit, and
        /// probes admitted since the last outcome or lease renewal stay within it.
        #[test]
        fn half_open_admits_at_most_max_calls(c in config(), ops in ops()) {
            let mut b = CircuitBreaker::new(c);
            let max = c.half_open_max_calls.max(1);
            let mut now = 0;
            let mut outstanding = 0u32; // probes admitted and not reported, per the model
            for (op, dt) in ops {
                now += dt;
                let before = b.state();
                match op {
                    Op::Check => {
                        let ok = b.check(now).is_ok();
                        match (before, b.state()) {
                            (BreakerState::Open { .. }, BreakerState::HalfOpen { .. }) => {
                                prop_assert!(ok);
                                outstanding = 1;
                            }
                            (BreakerState::HalfOpen { since: s0, .. }, after)
                                if ok && outstanding >= max => {
                                // Beyond the limit only when the lease expired.
                                prop_assert!(now >= s0.saturating_add(c.open_ms));
                                let renewed = matches!(after, BreakerState::HalfOpen { in_flight: 1, .. });
                                prop_assert!(renewed);
                                outstanding = 1;
                            }
                            (BreakerState::HalfOpen { .. }, _) if ok => outstanding += 1,
                            (BreakerState::Open { until }, _) => {
                                prop_assert!(!ok);
                                prop_assert!(now < until);
                            }
                            (BreakerState::Closed { .. }, _) => prop_assert!(ok),
                            _ => {}
                        }
                    }
                    Op::Success => {
                        b.on_success(now);
                        outstanding = outstanding.saturating_sub(1);
                    }
                    Op::Failure => b.on_failure(now),
                }
                match b.state() {
                    BreakerState::HalfOpen { in_flight, .. } => {
                        prop_assert!(in_flight <= max);
                        prop_assert!(outstanding <= max);
                    }
                    _ => outstanding = 0,
                }
            }
        }

        #[test]
        fn breakers_map_never_exceeds_cap(cap in 0..6usize, ops in proptest::collection::vec((0..20usize, 0..3u8, 0..500u64), 0..300)) {
            let mut m = Breakers::new(cfg(2, 1_000, 1, 1), cap);
            let mut now = 0;
            for (n, op, dt) in ops {
                now += dt;
                let id = node(n);
                match op {
                    0 => { let _ = m.check(&id, now); }
                    1 => m.on_success(&id, now),
                    _ => m.on_failure(&id, now),
                }
                prop_assert!(m.len() <= cap.max(1));
                prop_assert!(m.map.iter().all(|(_, b)| !b.is_pristine()));
            }
        }
    }
}
