//! Wire types of the `presence` process: bootstrap registry, membership with failure
//! detection, discovery and events. JSON examples for every request are in docs/api.md.
//!
//! Local apps use [`Request`] variants marked *local*; remote `presence` processes use the
//! *protocol* variants. Anything else is answered `Forbidden`.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn yes() -> bool {
    true
}

/// Process name on every node.
pub const PROCESS: &str = "presence";
/// Most capabilities one NodeInfo may list.
pub const MAX_CAPABILITIES: usize = 32;
/// Most metadata entries one NodeInfo may carry.
pub const MAX_METADATA: usize = 32;
/// Longest capability name, metadata key, or app version.
pub const MAX_SHORT_STRING: usize = 64;
/// Longest metadata value.
pub const MAX_METADATA_VALUE: usize = 512;
/// Largest page a list request may ask for.
pub const MAX_PAGE: u32 = 500;
/// Most members a node keeps (the largest `max_members`).
pub const MAX_MEMBERS: u32 = 10_000;
/// Page size when a list request names none.
pub const DEFAULT_PAGE: u32 = 100;

/// What a node says about itself (the guide's NodeInfo, with free-form metadata added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    #[serde(default)]
    pub app_version: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// When the answering node last had direct evidence that this node is up (Unix ms by
    /// the answering node's clock; 0 = never). Ignored when a node sends its own info.
    #[serde(default)]
    pub last_seen: u64,
}

impl NodeInfo {
    pub fn new(node_id: NodeId) -> Self {
        NodeInfo {
            node_id,
            app_version: String::new(),
            capabilities: Vec::new(),
            metadata: BTreeMap::new(),
            last_seen: 0,
        }
    }

    /// Check the size limits; the error says which one.
    pub fn validate(&self) -> Result<(), String> {
        if self.app_version.len() > MAX_SHORT_STRING {
            return Err(format!(
                "app_version is longer than {MAX_SHORT_STRING} bytes"
            ));
        }
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(format!("more than {MAX_CAPABILITIES} capabilities"));
        }
        if let Some(c) = self
            .capabilities
            .iter()
            .find(|c| c.is_empty() || c.len() > MAX_SHORT_STRING)
        {
            return Err(format!(
                "capability {c:?} must be 1..={MAX_SHORT_STRING} bytes"
            ));
        }
        if self.metadata.len() > MAX_METADATA {
            return Err(format!("more than {MAX_METADATA} metadata entries"));
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.len() > MAX_SHORT_STRING {
                return Err(format!(
                    "metadata key {k:?} must be 1..={MAX_SHORT_STRING} bytes"
                ));
            }
            if v.len() > MAX_METADATA_VALUE {
                return Err(format!(
                    "metadata value of {k:?} is longer than {MAX_METADATA_VALUE} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// A member's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberStatus {
    Alive,
    Suspect,
    Dead,
    Left,
}

/// One node as this node sees it (discovery answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub info: NodeInfo,
    pub status: MemberStatus,
    pub incarnation: u64,
    /// When this node entered its current status (Unix ms, our clock).
    pub status_since: u64,
    /// True for our own entry.
    pub is_self: bool,
}

/// A membership fact spread by gossip: `node` is `status` at `incarnation`.
/// Alive facts carry the node's info; `origin` is the node that first stated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub node: NodeId,
    pub status: MemberStatus,
    pub incarnation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<NodeInfo>,
    pub origin: NodeId,
}

/// Presence events delivered to subscribers, as requests `{"PresenceEvent": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    NodeJoined,
    NodeSuspect,
    NodeAlive,
    NodeDead,
    NodeLeft,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub kind: EventKind,
    pub node: NodeId,
    pub incarnation: u64,
    /// Unix ms (the reporting node's clock).
    pub at: u64,
    /// Sequence number per subscription, so a subscriber can spot gaps (dropped events).
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<NodeInfo>,
}

/// What an event subscriber receives: a request expecting an answer (any body) within 5 s;
/// three unanswered in a row end the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriberMessage {
    PresenceEvent(PresenceEvent),
    /// The first message of a subscription, before `Subscribe` is answered: it proves we can
    /// reach the app (the kernel checks capabilities). `seq` is the event sequence it starts
    /// after.
    Welcome {
        node: NodeId,
        seq: u64,
    },
}

/// Failure detector and registry settings. Every field has a default; `SetConfig` may send
/// any subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Protocol period: one probe per period (Lifeguard stretches it by the local health).
    pub probe_interval_ms: u64,
    /// Shortest direct-probe timeout (Hyperware counts timeouts in whole seconds).
    pub probe_timeout_ms: u64,
    /// Helpers asked to probe a member that missed a direct probe.
    pub indirect_probes: u32,
    /// Suspicion timeout floor = suspicion_mult × log10(members) × gossip_interval (the time
    /// a refutation needs to spread), at least two probe timeouts.
    pub suspicion_mult: f64,
    /// Suspicion timeout ceiling = floor × this; it falls to the floor as independent
    /// confirmations arrive.
    pub suspicion_max_mult: f64,
    /// Independent confirmations that bring the suspicion timeout down to its floor.
    pub suspicion_confirmations: u32,
    /// How often pending updates are pushed to `gossip_fanout` random members.
    pub gossip_interval_ms: u64,
    pub gossip_fanout: u32,
    /// Each update is sent retransmit_mult × log10(members + 1) times (at least once).
    pub retransmit_mult: u32,
    /// Most updates in one message.
    pub max_updates_per_message: u32,
    /// How often a full-state exchange with a random member repairs missed gossip.
    pub push_pull_interval_ms: u64,
    /// Highest local health multiplier (Lifeguard): timeouts stretch up to (max + 1)×.
    pub max_local_health: u32,
    /// Bootstrap registrations live this long unless renewed; nodes renew at a third of it.
    pub registry_ttl_ms: u64,
    /// Most registrations one bootstrap keeps.
    pub registry_capacity: u32,
    /// Registrations each source node may make per minute (burst = this, refill per minute).
    pub registry_rate_per_min: u32,
    /// Most members kept; further unknown nodes are ignored.
    pub max_members: u32,
    /// Dead and left members are forgotten after this long.
    pub dead_retention_ms: u64,
    /// Events queued per subscriber before the oldest are dropped.
    pub subscriber_queue: u32,
}

impl Config {
    /// One protocol period. Six seconds leaves room for the longest probe round (1 s direct
    /// probe, then a 2 s second attempt alongside the indirect probes, plus travel) with
    /// headroom, at Hyperware's whole-second timeouts (see docs/presence.md).
    pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 6_000;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            probe_interval_ms: Self::DEFAULT_PROBE_INTERVAL_MS,
            probe_timeout_ms: 1_000,
            indirect_probes: 3,
            suspicion_mult: 3.0,
            suspicion_max_mult: 6.0,
            suspicion_confirmations: 3,
            gossip_interval_ms: 500,
            gossip_fanout: 3,
            retransmit_mult: 4,
            max_updates_per_message: 32,
            push_pull_interval_ms: 60_000,
            max_local_health: 8,
            registry_ttl_ms: 300_000,
            registry_capacity: 10_000,
            registry_rate_per_min: 12,
            max_members: 10_000,
            dead_retention_ms: 24 * 3_600_000,
            subscriber_queue: 256,
        }
    }
}

impl Config {
    /// Reject settings that would break the detector or overflow its arithmetic.
    pub fn validate(&self) -> Result<(), String> {
        const HOUR: u64 = 3_600_000;
        let checks: [(bool, &str); 14] = [
            (
                (1_000..=600_000).contains(&self.probe_interval_ms),
                "probe_interval_ms must be 1000..=600000",
            ),
            (
                self.probe_timeout_ms >= 1_000,
                "probe_timeout_ms must be at least 1000 (Hyperware timeouts are whole seconds)",
            ),
            (
                self.probe_timeout_ms <= self.probe_interval_ms,
                "probe_timeout_ms must not exceed probe_interval_ms",
            ),
            (
                self.indirect_probes <= 16,
                "indirect_probes must be at most 16",
            ),
            (
                self.suspicion_mult > 0.0
                    && self.suspicion_mult <= 100.0
                    && (1.0..=100.0).contains(&self.suspicion_max_mult),
                "suspicion_mult must be in (0, 100] and suspicion_max_mult in [1, 100]",
            ),
            (
                self.suspicion_confirmations <= 16,
                "suspicion_confirmations must be at most 16",
            ),
            (
                (100..=60_000).contains(&self.gossip_interval_ms)
                    && (1..=32).contains(&self.gossip_fanout),
                "gossip_interval_ms must be 100..=60000 and gossip_fanout 1..=32",
            ),
            (
                (1..=1_024).contains(&self.max_updates_per_message)
                    && (1..=32).contains(&self.retransmit_mult),
                "max_updates_per_message must be 1..=1024 and retransmit_mult 1..=32",
            ),
            (
                (1_000..=HOUR).contains(&self.push_pull_interval_ms),
                "push_pull_interval_ms must be 1000..=3600000",
            ),
            (
                self.max_local_health <= 32,
                "max_local_health must be at most 32",
            ),
            (
                (3_000..=24 * HOUR).contains(&self.registry_ttl_ms),
                "registry_ttl_ms must be 3000..=86400000",
            ),
            (
                (1..=100_000).contains(&self.registry_capacity)
                    && (1..=10_000).contains(&self.registry_rate_per_min),
                "registry_capacity must be 1..=100000 and registry_rate_per_min 1..=10000",
            ),
            (
                (1..=MAX_MEMBERS).contains(&self.max_members)
                    && (1..=10_000).contains(&self.subscriber_queue),
                "max_members must be 1..=10000 and subscriber_queue 1..=10000",
            ),
            (
                self.dead_retention_ms <= 30 * 24 * HOUR,
                "dead_retention_ms must be at most 30 days",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }
}

/// A filter for [`Request::ListNodes`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListFilter {
    pub status: Option<MemberStatus>,
    pub capability: Option<String>,
    /// Start after this node id (from a previous page's `next_cursor`).
    pub cursor: Option<NodeId>,
    pub limit: Option<u32>,
}

/// Counters of this node's presence process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceStats {
    pub probes_sent: u64,
    pub probes_failed: u64,
    pub indirect_probes_sent: u64,
    pub suspicions_started: u64,
    pub refutations: u64,
    pub dead_declared: u64,
    pub gossip_sent: u64,
    pub push_pulls: u64,
    /// Registrations at a bootstrap that failed (unreachable, refused).
    pub register_failures: u64,
    pub events_sent: u64,
    pub events_dropped: u64,
    pub local_health: u32,
    pub incarnation: u64,
    pub members: u64,
    pub registrations: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    // ----- any caller -----
    Ping {},
    Info {},
    // ----- local apps only -----
    /// Join the cluster through these bootstrap nodes (kept across restarts). An empty list
    /// (re)joins through the ones given before.
    Join {
        bootstrap: Vec<NodeId>,
    },
    /// Leave gracefully: others mark us Left, not Dead. Join again to come back.
    Leave {},
    /// Set our own NodeInfo (app version, capabilities, metadata); node_id must be ours.
    SetInfo {
        #[serde(default)]
        app_version: String,
        #[serde(default)]
        capabilities: Vec<String>,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    },
    /// List members (ourselves included), filtered and paged by node id.
    ListNodes(ListFilter),
    GetNode {
        node: NodeId,
    },
    /// Receive PresenceEvents at the calling address.
    Subscribe {},
    Unsubscribe {},
    GetConfig {},
    /// Change settings; fields left out keep their current value.
    SetConfig(serde_json::Value),
    Stats {},
    // ----- protocol, from other nodes' presence only -----
    /// Register at a bootstrap; answered with other registered nodes (first page).
    RegisterNode {
        info: NodeInfo,
        incarnation: u64,
        protocol_version: u32,
        /// Send the first page of other nodes back (joins); renewals say false.
        #[serde(default = "yes")]
        list: bool,
    },
    /// Further pages of a bootstrap's registrations.
    ListRegistry {
        cursor: Option<NodeId>,
        limit: Option<u32>,
    },
    /// Remove our registration (graceful leave).
    Deregister {},
    /// Direct probe; answered with Ack.
    Probe {
        seq: u64,
        updates: Vec<Update>,
    },
    /// Ask a helper to probe `target` for us; it answers later with IndirectAck/IndirectNack.
    ProbeRequest {
        seq: u64,
        target: NodeId,
        updates: Vec<Update>,
        /// Probe with at most this timeout (seconds), so the answer arrives in time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    IndirectAck {
        seq: u64,
        target: NodeId,
    },
    IndirectNack {
        seq: u64,
        target: NodeId,
    },
    /// Pushed updates (no response expected).
    Gossip {
        updates: Vec<Update>,
    },
    /// Anti-entropy: a digest of our view (no infos) and the nodes whose info we lack;
    /// answered with what we lack or have older.
    PushPull {
        members: Vec<Update>,
        #[serde(default)]
        want_info: Vec<NodeId>,
    },
}

impl Request {
    /// Protocol messages are for other nodes' presence processes; the rest for local apps.
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            Request::RegisterNode { .. }
                | Request::ListRegistry { .. }
                | Request::Deregister {}
                | Request::Probe { .. }
                | Request::ProbeRequest { .. }
                | Request::IndirectAck { .. }
                | Request::IndirectNack { .. }
                | Request::Gossip { .. }
                | Request::PushPull { .. }
        )
    }
    pub fn is_open(&self) -> bool {
        matches!(self, Request::Ping {} | Request::Info {})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong(crate::api::Pong),
    Info(crate::api::ServiceInfo),
    /// Join accepted: registration requests are on their way to the bootstraps.
    Joining {
        bootstrap: Vec<NodeId>,
    },
    Left {},
    InfoSet(NodeInfo),
    Nodes {
        nodes: Vec<NodeView>,
        next_cursor: Option<NodeId>,
    },
    Node(NodeView),
    Subscribed {},
    Unsubscribed {},
    Config(Config),
    Stats(PresenceStats),
    Registered {
        nodes: Vec<Update>,
        next_cursor: Option<NodeId>,
        ttl_ms: u64,
    },
    Registry {
        nodes: Vec<Update>,
        next_cursor: Option<NodeId>,
    },
    Deregistered {},
    Ack {
        seq: u64,
        updates: Vec<Update>,
    },
    PushPull {
        members: Vec<Update>,
    },
    /// For one-way protocol messages sent with a timeout anyway.
    Accepted {},
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiResult;

    /// Every `→` / `←` line of docs/api.md's presence section decodes into our types, so the
    /// reference cannot drift from the code.
    #[test]
    fn documented_examples_decode() {
        let doc = include_str!("../../../docs/api.md");
        let section = &doc[doc.find("## presence").expect("presence section")..];
        let (mut requests, mut responses) = (0, 0);
        for line in section.lines() {
            if let Some(body) = line.strip_prefix("→ ") {
                let ok = serde_json::from_str::<Request>(body).is_ok()
                    || serde_json::from_str::<SubscriberMessage>(body).is_ok();
                assert!(ok, "documented request does not decode: {body}");
                requests += 1;
            } else if let Some(body) = line.strip_prefix("← ") {
                match serde_json::from_str::<ApiResult<Response>>(body) {
                    Err(e) => panic!("documented response does not decode ({e}): {body}"),
                    Ok(Ok(Response::Config(c))) => assert_eq!(
                        c,
                        Config::default(),
                        "documented defaults are the real ones"
                    ),
                    Ok(_) => {}
                }
                responses += 1;
            }
        }
        assert!(
            requests >= 20 && responses >= 12,
            "{requests} requests, {responses} responses"
        );
    }

    #[test]
    fn defaults_are_valid_and_documented_limits_hold() {
        Config::default().validate().unwrap();
        let c = Config {
            probe_timeout_ms: 10,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("probe_timeout_ms"));
        let mut info = NodeInfo::new(NodeId::parse("a.os").unwrap());
        info.capabilities = vec!["x".into(); MAX_CAPABILITIES + 1];
        assert!(info.validate().is_err());
        info.capabilities = vec!["x".repeat(MAX_SHORT_STRING + 1)];
        assert!(info.validate().is_err());
        info.capabilities = vec!["chat".into()];
        info.metadata
            .insert("k".into(), "v".repeat(MAX_METADATA_VALUE + 1));
        assert!(info.validate().is_err());
    }
}
