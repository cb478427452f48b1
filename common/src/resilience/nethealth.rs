//! Our own network health: is a failure to reach a peer the peer's trouble, or ours?
//!
//! Two situations make it ours, and then no breaker may open and no peer be blamed:
//! - **just started**: for the first seconds after a node (re)starts, Hyperware's networking
//!   answers Offline for every remote target (platform notes §6.1). Until one remote exchange
//!   has succeeded since start — or `startup_ms` has passed without any, in which case the
//!   others may really be gone — failures are ours.
//! - **contradicted**: we failed to reach targets that others (indirect-probe helpers, peers'
//!   reports) reached at about the same time. `contradictions_needed` such targets within
//!   `window_ms`, with no success of our own in between, make it ours until we succeed again.
//!
//! Clustered crashes and partitions also fail many targets at once, but nobody contradicts
//! those failures, so they are still blamed on the targets at the normal speed.

use crate::service::Millis;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetHealthConfig {
    /// Longest time after start during which failures are ours until something succeeds.
    pub startup_ms: Millis,
    /// How far back contradicted failures count.
    pub window_ms: Millis,
    /// Contradicted failures (distinct events) within the window that make the trouble ours.
    pub contradictions_needed: usize,
}

impl Default for NetHealthConfig {
    fn default() -> Self {
        NetHealthConfig {
            // Hyperware 1.9.2: 15–20 s of Offline after a start; keep a margin.
            startup_ms: 45_000,
            window_ms: 30_000,
            contradictions_needed: 2,
        }
    }
}

/// See the module docs. Time is monotonic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetHealth {
    config: NetHealthConfig,
    started_at: Millis,
    /// A remote exchange succeeded since start.
    proven: bool,
    last_success: Option<Millis>,
    /// When our failures were contradicted by others reaching the same target.
    contradicted: VecDeque<Millis>,
}

impl Default for NetHealth {
    /// Settled: no start in progress (call [`NetHealth::restart`] when the process starts).
    fn default() -> Self {
        let mut h = NetHealth::new(NetHealthConfig::default(), 0);
        h.proven = true;
        h
    }
}

impl NetHealth {
    pub fn new(config: NetHealthConfig, now: Millis) -> Self {
        NetHealth {
            config,
            started_at: now,
            proven: false,
            last_success: None,
            contradicted: VecDeque::new(),
        }
    }

    /// The process (re)started at `now`: networking has to prove itself again.
    pub fn restart(&mut self, now: Millis) {
        *self = NetHealth::new(self.config.clone(), now);
    }

    pub fn config(&self) -> &NetHealthConfig {
        &self.config
    }

    /// A remote peer answered us.
    pub fn on_success(&mut self, now: Millis) {
        self.proven = true;
        self.last_success = Some(now);
        self.contradicted.clear();
    }

    /// Someone else reached a target we just failed to reach (an indirect-probe helper's ack
    /// for a target our direct probe missed, a peer's fresh report of it).
    pub fn on_contradicted(&mut self, now: Millis) {
        self.contradicted.push_back(now);
        while self.contradicted.len() > self.config.contradictions_needed.max(1) * 4 {
            self.contradicted.pop_front();
        }
    }

    /// Whether failures at `now` are ours rather than the targets'.
    pub fn own_trouble(&self, now: Millis) -> bool {
        if !self.proven && now < self.started_at.saturating_add(self.config.startup_ms) {
            return true;
        }
        let since = now.saturating_sub(self.config.window_ms);
        let recent = self
            .contradicted
            .iter()
            .filter(|&&t| t >= since && self.last_success.is_none_or(|s| t > s))
            .count();
        recent >= self.config.contradictions_needed.max(1)
    }

    /// Whether a remote exchange has succeeded since start.
    pub fn proven(&self) -> bool {
        self.proven
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_right_after_start_are_ours_until_something_succeeds() {
        let mut h = NetHealth::new(NetHealthConfig::default(), 1_000);
        assert!(h.own_trouble(1_000));
        assert!(h.own_trouble(20_000));
        h.on_success(21_000);
        assert!(!h.own_trouble(21_001));
        // A restart has to prove itself again.
        h.restart(100_000);
        assert!(h.own_trouble(100_001));
    }

    #[test]
    fn with_nobody_answering_for_long_the_others_may_really_be_gone() {
        let h = NetHealth::new(NetHealthConfig::default(), 0);
        assert!(h.own_trouble(44_999));
        assert!(!h.own_trouble(45_000));
    }

    #[test]
    fn failures_others_contradict_are_ours_until_we_succeed() {
        let mut h = NetHealth::new(NetHealthConfig::default(), 0);
        h.on_success(50_000);
        h.on_contradicted(60_000);
        assert!(
            !h.own_trouble(60_000),
            "one contradiction is the target's link, not us"
        );
        h.on_contradicted(61_000);
        assert!(h.own_trouble(61_000));
        // It ages out of the window...
        assert!(!h.own_trouble(91_500));
        // ...and a success of ours ends it at once.
        h.on_contradicted(92_000);
        h.on_contradicted(92_500);
        assert!(h.own_trouble(92_600));
        h.on_success(93_000);
        assert!(!h.own_trouble(93_000));
    }
}
