//! What the tests, the simulator and `Stats` read of presence: every machine's state and
//! counters, read-only.

use super::Presence;
use crate::candidates::CandidateStats;
use crate::members::Member;
use p2p_common::api::presence::{Config, MemberStatus, PresenceStats};
use p2p_common::resilience::Reachability;
use p2p_common::NodeId;

impl Presence {
    /// Registration attempts we sent to bootstraps since start.
    pub fn registration_attempts(&self) -> u64 {
        self.reg.attempts
    }
    /// The `Health` answer: reachability from our probes, messages per peer (no breakers).
    pub fn health(&self, now: p2p_common::Millis) -> p2p_common::resilience::HealthReport {
        p2p_common::resilience::health::report(
            &self.node.me,
            now,
            &self.reach,
            None,
            &self.traffic,
            p2p_common::resilience::health::MAX_HEALTH_PEERS,
        )
    }
    /// Our reachability of peers, with our own network health in it.
    pub fn reachability(&self) -> &Reachability {
        &self.reach
    }
    pub fn incarnation(&self) -> u64 {
        self.node.incarnation
    }
    pub fn config(&self) -> &Config {
        &self.node.cfg
    }
    /// Probes of candidates, admissions on their answers, nominations refused.
    pub fn candidate_stats(&self) -> &CandidateStats {
        &self.candidates.stats
    }
    /// Candidates held now (bounded by [`crate::candidates::CAPACITY`]).
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }
    pub fn local_health(&self) -> u32 {
        self.detector.local_health()
    }
    /// Probe rounds not concluded because the trouble was ours (just started, contradicted).
    pub fn spared_verdicts(&self) -> u64 {
        self.detector.stats.spared_verdicts
    }
    pub fn has_left(&self) -> bool {
        self.node.left
    }
    pub fn status_of(&self, n: &NodeId) -> Option<MemberStatus> {
        self.members.get(n).map(|m| m.status)
    }
    pub fn member(&self, n: &NodeId) -> Option<&Member> {
        self.members.get(n)
    }
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.members.iter()
    }
    /// Every machine's counters.
    pub fn stats(&self) -> PresenceStats {
        let d = &self.detector.stats;
        PresenceStats {
            probes_sent: d.probes_sent,
            probes_failed: d.probes_failed,
            indirect_probes_sent: d.indirect_probes_sent,
            suspicions_started: d.suspicions_started,
            refutations: self.node.refutations,
            dead_declared: d.dead_declared,
            gossip_sent: self.diss.gossip_sent,
            push_pulls: self.diss.push_pulls,
            register_failures: self.reg.failed,
            events_sent: self.events.sent,
            events_dropped: self.events.dropped,
            local_health: self.detector.local_health(),
            incarnation: self.node.incarnation,
            members: self.members.len() as u64,
            registrations: self.registry.len() as u64,
        }
    }
}
