//! Wire types of the `presence` process: bootstrap registry, membership with failure
//! detection, discovery and events. JSON examples for every request are in docs/api.md.
//!
//! Local apps use [`Request`] variants marked *local*; remote `presence` processes use the
//! *protocol* variants. Anything else is answered `Forbidden`.
//!
//! The JSON is the one of the types generated from `api/*.wit` ([`super::wire`]). Local
//! requests are strict (an unknown field is a `BadRequest` naming it); protocol messages and
//! responses ignore unknown fields, so nodes of a newer version can add some.

use super::wire::{self, wire_enum};
use super::ApiError;
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
/// Most a digest exchange (`PushPull`) costs against its sender's message budget, whatever
/// its size: a quarter of the burst (200), so one sender has at most 20 / 50 = 0.4 full
/// digests a second handled, and an honest one is always served once its budget refills.
pub const PUSH_PULL_MAX_COST: u32 = 50;
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
    /// On the wire a list of `{"key": .., "value": ..}` records ([`wire::metadata`]).
    #[serde(default, with = "wire::metadata")]
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
    #[serde(default)]
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
    /// This node's event sequence number: one per event, the same for every subscriber,
    /// rising by one from event to event. A jump means events were missed (a full queue, a
    /// restart of presence); the subscriber resyncs with `ListNodes`, whose answer carries
    /// the `seq` it reflects (docs/api.md, "Events").
    pub seq: u64,
    #[serde(default)]
    pub info: Option<NodeInfo>,
}

/// What an event subscriber receives: a request expecting an answer (any body) within 5 s;
/// three unanswered in a row end the subscription, with a final `Dropped` message.
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
    /// The last message of a subscription presence ended (its deliveries failed): no event
    /// after `seq` is sent. Subscribe again, then resync with `ListNodes`.
    Dropped {
        node: NodeId,
        seq: u64,
        reason: String,
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
    /// Reject settings that would break the detector or overflow its arithmetic; the error
    /// names the setting and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        const HOUR: u64 = 3_600_000;
        fn within<T: PartialOrd + std::fmt::Display>(
            name: &str,
            v: T,
            lo: T,
            hi: T,
        ) -> Result<(), String> {
            // Written so that NaN is out of range.
            let inside = lo <= v && v <= hi;
            if !inside {
                return Err(format!("{name} must be {lo}..={hi} (got {v})"));
            }
            Ok(())
        }
        within("probe_interval_ms", self.probe_interval_ms, 1_000, 600_000)?;
        if self.probe_timeout_ms < 1_000 {
            return Err(format!(
                "probe_timeout_ms must be at least 1000 (Hyperware timeouts are whole seconds) \
                 and at most probe_interval_ms (got {})",
                self.probe_timeout_ms
            ));
        }
        if self.probe_timeout_ms > self.probe_interval_ms {
            return Err(format!(
                "probe_timeout_ms must be 1000..=probe_interval_ms ({}) (got {})",
                self.probe_interval_ms, self.probe_timeout_ms
            ));
        }
        within("indirect_probes", self.indirect_probes, 0, 16)?;
        if !(self.suspicion_mult > 0.0 && self.suspicion_mult <= 100.0) {
            return Err(format!(
                "suspicion_mult must be in (0, 100] (got {})",
                self.suspicion_mult
            ));
        }
        within("suspicion_max_mult", self.suspicion_max_mult, 1.0, 100.0)?;
        within(
            "suspicion_confirmations",
            self.suspicion_confirmations,
            0,
            16,
        )?;
        within("gossip_interval_ms", self.gossip_interval_ms, 100, 60_000)?;
        within("gossip_fanout", self.gossip_fanout, 1, 32)?;
        within(
            "max_updates_per_message",
            self.max_updates_per_message,
            1,
            1_024,
        )?;
        within("retransmit_mult", self.retransmit_mult, 1, 32)?;
        within(
            "push_pull_interval_ms",
            self.push_pull_interval_ms,
            1_000,
            HOUR,
        )?;
        within("max_local_health", self.max_local_health, 0, 32)?;
        within("registry_ttl_ms", self.registry_ttl_ms, 3_000, 24 * HOUR)?;
        within("registry_capacity", self.registry_capacity, 1, 100_000)?;
        within(
            "registry_rate_per_min",
            self.registry_rate_per_min,
            1,
            10_000,
        )?;
        within("max_members", self.max_members, 1, MAX_MEMBERS)?;
        within("subscriber_queue", self.subscriber_queue, 1, 10_000)?;
        within(
            "dead_retention_ms",
            self.dead_retention_ms,
            0,
            30 * 24 * HOUR,
        )?;
        Ok(())
    }
}

/// The settings [`Request::SetConfig`] changes: a field left out (or null) keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigPatch {
    pub probe_interval_ms: Option<u64>,
    pub probe_timeout_ms: Option<u64>,
    pub indirect_probes: Option<u32>,
    pub suspicion_mult: Option<f64>,
    pub suspicion_max_mult: Option<f64>,
    pub suspicion_confirmations: Option<u32>,
    pub gossip_interval_ms: Option<u64>,
    pub gossip_fanout: Option<u32>,
    pub retransmit_mult: Option<u32>,
    pub max_updates_per_message: Option<u32>,
    pub push_pull_interval_ms: Option<u64>,
    pub max_local_health: Option<u32>,
    pub registry_ttl_ms: Option<u64>,
    pub registry_capacity: Option<u32>,
    pub registry_rate_per_min: Option<u32>,
    pub max_members: Option<u32>,
    pub dead_retention_ms: Option<u64>,
    pub subscriber_queue: Option<u32>,
}

impl ConfigPatch {
    /// `cfg` with the named fields changed (not validated: see [`Config::validate`]).
    pub fn apply(&self, cfg: &Config) -> Config {
        // Destructured without `..`: a field added to Config or ConfigPatch alone does not
        // compile.
        let ConfigPatch {
            probe_interval_ms,
            probe_timeout_ms,
            indirect_probes,
            suspicion_mult,
            suspicion_max_mult,
            suspicion_confirmations,
            gossip_interval_ms,
            gossip_fanout,
            retransmit_mult,
            max_updates_per_message,
            push_pull_interval_ms,
            max_local_health,
            registry_ttl_ms,
            registry_capacity,
            registry_rate_per_min,
            max_members,
            dead_retention_ms,
            subscriber_queue,
        } = self.clone();
        let c = cfg.clone();
        Config {
            probe_interval_ms: probe_interval_ms.unwrap_or(c.probe_interval_ms),
            probe_timeout_ms: probe_timeout_ms.unwrap_or(c.probe_timeout_ms),
            indirect_probes: indirect_probes.unwrap_or(c.indirect_probes),
            suspicion_mult: suspicion_mult.unwrap_or(c.suspicion_mult),
            suspicion_max_mult: suspicion_max_mult.unwrap_or(c.suspicion_max_mult),
            suspicion_confirmations: suspicion_confirmations.unwrap_or(c.suspicion_confirmations),
            gossip_interval_ms: gossip_interval_ms.unwrap_or(c.gossip_interval_ms),
            gossip_fanout: gossip_fanout.unwrap_or(c.gossip_fanout),
            retransmit_mult: retransmit_mult.unwrap_or(c.retransmit_mult),
            max_updates_per_message: max_updates_per_message.unwrap_or(c.max_updates_per_message),
            push_pull_interval_ms: push_pull_interval_ms.unwrap_or(c.push_pull_interval_ms),
            max_local_health: max_local_health.unwrap_or(c.max_local_health),
            registry_ttl_ms: registry_ttl_ms.unwrap_or(c.registry_ttl_ms),
            registry_capacity: registry_capacity.unwrap_or(c.registry_capacity),
            registry_rate_per_min: registry_rate_per_min.unwrap_or(c.registry_rate_per_min),
            max_members: max_members.unwrap_or(c.max_members),
            dead_retention_ms: dead_retention_ms.unwrap_or(c.dead_retention_ms),
            subscriber_queue: subscriber_queue.unwrap_or(c.subscriber_queue),
        }
    }
}

impl From<&Config> for ConfigPatch {
    /// A patch that sets every field to `cfg`'s value.
    fn from(cfg: &Config) -> Self {
        let Config {
            probe_interval_ms,
            probe_timeout_ms,
            indirect_probes,
            suspicion_mult,
            suspicion_max_mult,
            suspicion_confirmations,
            gossip_interval_ms,
            gossip_fanout,
            retransmit_mult,
            max_updates_per_message,
            push_pull_interval_ms,
            max_local_health,
            registry_ttl_ms,
            registry_capacity,
            registry_rate_per_min,
            max_members,
            dead_retention_ms,
            subscriber_queue,
        } = cfg.clone();
        ConfigPatch {
            probe_interval_ms: Some(probe_interval_ms),
            probe_timeout_ms: Some(probe_timeout_ms),
            indirect_probes: Some(indirect_probes),
            suspicion_mult: Some(suspicion_mult),
            suspicion_max_mult: Some(suspicion_max_mult),
            suspicion_confirmations: Some(suspicion_confirmations),
            gossip_interval_ms: Some(gossip_interval_ms),
            gossip_fanout: Some(gossip_fanout),
            retransmit_mult: Some(retransmit_mult),
            max_updates_per_message: Some(max_updates_per_message),
            push_pull_interval_ms: Some(push_pull_interval_ms),
            max_local_health: Some(max_local_health),
            registry_ttl_ms: Some(registry_ttl_ms),
            registry_capacity: Some(registry_capacity),
            registry_rate_per_min: Some(registry_rate_per_min),
            max_members: Some(max_members),
            dead_retention_ms: Some(dead_retention_ms),
            subscriber_queue: Some(subscriber_queue),
        }
    }
}

/// A filter for [`Request::ListNodes`]; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilter {
    pub status: Option<MemberStatus>,
    pub capability: Option<String>,
    /// Start after this node id (from a previous page's `next_cursor`).
    pub cursor: Option<NodeId>,
    /// Page size, 1..=[`MAX_PAGE`]; [`DEFAULT_PAGE`] if left out.
    pub limit: Option<u32>,
}

impl ListFilter {
    pub fn validate(&self) -> Result<(), String> {
        match self.limit {
            Some(l) if !(1..=MAX_PAGE).contains(&l) => Err(format!(
                "limit must be 1..={MAX_PAGE} (got {l}); leave it out for {DEFAULT_PAGE}"
            )),
            _ => Ok(()),
        }
    }
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

/// Tags of the protocol variants of [`Request`] (`is_protocol`): they ignore unknown fields.
pub const PROTOCOL_REQUESTS: [&str; 9] = [
    "RegisterNode",
    "ListRegistry",
    "Deregister",
    "Probe",
    "ProbeRequest",
    "IndirectAck",
    "IndirectNack",
    "Gossip",
    "PushPull",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
        #[serde(
            default,
            serialize_with = "wire::metadata::serialize",
            deserialize_with = "wire::metadata::deserialize_strict"
        )]
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
    SetConfig(ConfigPatch),
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
        #[serde(deserialize_with = "wire::lenient_facts")]
        updates: Vec<Update>,
        /// The sender's presence protocol version (0 from a peer that predates it). A
        /// higher one than ours is read as far as we understand it, never refused.
        #[serde(default)]
        protocol_version: u32,
    },
    /// Ask a helper to probe `target` for us; it answers later with IndirectAck/IndirectNack.
    ProbeRequest {
        seq: u64,
        target: NodeId,
        #[serde(deserialize_with = "wire::lenient_facts")]
        updates: Vec<Update>,
        /// Probe with at most this timeout (seconds), so the answer arrives in time.
        #[serde(default)]
        timeout_s: Option<u64>,
        /// The sender's presence protocol version (0 from a peer that predates it). A
        /// higher one than ours is read as far as we understand it, never refused.
        #[serde(default)]
        protocol_version: u32,
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
        #[serde(deserialize_with = "wire::lenient_facts")]
        updates: Vec<Update>,
    },
    /// Anti-entropy: a digest of our view (no infos) and the nodes whose info we lack;
    /// answered with what we lack or have older.
    PushPull {
        #[serde(deserialize_with = "wire::lenient_facts")]
        members: Vec<Update>,
        #[serde(default)]
        want_info: Vec<NodeId>,
        /// The sender's presence protocol version (0 from a peer that predates it). A
        /// higher one than ours is read as far as we understand it, never refused.
        #[serde(default)]
        protocol_version: u32,
    },
    // ----- local apps only (added later) -----
    /// Network health as this process sees it: per known peer, reachability, breaker and
    /// message counts (at most `MAX_HEALTH_PEERS`, see [`crate::resilience::health`]).
    Health {},
}

wire_enum!(Request, "presence request", |tag| !PROTOCOL_REQUESTS
    .contains(&tag));

impl Request {
    /// Range checks the types cannot express, for the local API (protocol messages are
    /// clamped instead); the error names the allowed range.
    pub fn validate(&self) -> Result<(), ApiError> {
        match self {
            Request::ListNodes(f) => f.validate().map_err(ApiError::bad_request),
            _ => Ok(()),
        }
    }
    /// The request if [`Request::validate`] passes (for `decode_request(..).and_then(..)`).
    pub fn validated(self) -> Result<Self, ApiError> {
        self.validate().map(|()| self)
    }
    /// What handling this costs against the sender's budget: one, plus one per 16 facts it
    /// carries — for a digest exchange at most [`PUSH_PULL_MAX_COST`] in all, so that an
    /// honest digest of the largest cluster ([`MAX_MEMBERS`] entries) fits the burst of a
    /// sender's budget (200) instead of being refused for good.
    pub fn cost(&self) -> u32 {
        let facts = match self {
            Request::Gossip { updates }
            | Request::Probe { updates, .. }
            | Request::ProbeRequest { updates, .. } => updates.len(),
            Request::PushPull { members, .. } => {
                return (1 + members.len() / 16).min(PUSH_PULL_MAX_COST as usize) as u32;
            }
            _ => 0,
        };
        1 + (facts / 16).min(u32::MAX as usize - 1) as u32
    }

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
#[serde(remote = "Self")]
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
        /// The event `seq` this page reflects: every event up to it is in the page, none
        /// after it (see [`PresenceEvent::seq`]).
        #[serde(default)]
        seq: u64,
    },
    Node(NodeView),
    Subscribed {},
    Unsubscribed {},
    Config(Config),
    Stats(PresenceStats),
    Registered {
        #[serde(deserialize_with = "wire::lenient_facts")]
        nodes: Vec<Update>,
        next_cursor: Option<NodeId>,
        ttl_ms: u64,
    },
    Registry {
        #[serde(deserialize_with = "wire::lenient_facts")]
        nodes: Vec<Update>,
        next_cursor: Option<NodeId>,
    },
    Deregistered {},
    Ack {
        seq: u64,
        #[serde(deserialize_with = "wire::lenient_facts")]
        updates: Vec<Update>,
        /// The sender's presence protocol version (0 from a peer that predates it). A
        /// higher one than ours is read as far as we understand it, never refused.
        #[serde(default)]
        protocol_version: u32,
    },
    PushPull {
        #[serde(deserialize_with = "wire::lenient_facts")]
        members: Vec<Update>,
        /// The sender's presence protocol version (0 from a peer that predates it). A
        /// higher one than ours is read as far as we understand it, never refused.
        #[serde(default)]
        protocol_version: u32,
    },
    /// For one-way protocol messages sent with a timeout anyway.
    Accepted {},
    Health(crate::resilience::HealthReport),
}
wire_enum!(Response, "presence response", |_tag| false);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{encode, ApiResult};
    use std::collections::BTreeSet;

    #[test]
    fn a_digest_of_the_largest_cluster_costs_a_bounded_amount() {
        let fact = |k: usize| Update {
            node: NodeId::parse(&format!("n{k}.os")).unwrap(),
            status: MemberStatus::Alive,
            incarnation: 1,
            info: None,
            origin: NodeId::parse(&format!("n{k}.os")).unwrap(),
        };
        let push_pull = |n: usize| Request::PushPull {
            members: (0..n).map(fact).collect(),
            want_info: vec![],
            protocol_version: crate::api::PROTOCOL_VERSION,
        };
        assert_eq!(push_pull(0).cost(), 1);
        assert_eq!(push_pull(160).cost(), 11);
        // 3,301 entries cost 207 by the per-fact rule: more than the burst of 200.
        assert_eq!(push_pull(3_301).cost(), PUSH_PULL_MAX_COST);
        assert_eq!(push_pull(MAX_MEMBERS as usize).cost(), PUSH_PULL_MAX_COST);
        // Gossip keeps the per-fact cost (its facts are capped per message instead).
        let gossip = Request::Gossip {
            updates: (0..3_301).map(fact).collect(),
        };
        assert_eq!(gossip.cost(), 1 + 3_301 / 16);
    }

    /// The JSON without null-valued fields (docs leave out nulls; both forms decode).
    fn without_nulls(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, without_nulls(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
            v => v,
        }
    }

    fn tag(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Every `→` / `←` line of docs/api.md's presence section decodes into our types and is
    /// written in the shape we send (nulls may be left out), every request and response
    /// variant has an example, so the reference cannot drift from the code. That each answer
    /// is what presence answers is checked by p2p-sim's `tests/doc_answers.rs`.
    #[test]
    fn documented_examples_decode() {
        let doc = include_str!("../../../docs/api.md");
        let section = &doc[doc.find("## presence").expect("presence section")..];
        // Up to the next service's section.
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        let (mut requests, mut responses) = (BTreeSet::new(), BTreeSet::new());
        let canonical = |body: &str, ours: serde_json::Value| {
            let documented: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                without_nulls(documented),
                without_nulls(ours.clone()),
                "documented body is not in the shape we send: {body}\nwe send {ours}"
            );
        };
        // A request presence refuses while decoding or checking it must be followed by the
        // exact error it gets.
        let mut refused: Option<ApiError> = None;
        for line in section.lines() {
            if let Some(body) = line.strip_prefix("→ ") {
                assert!(refused.is_none(), "no documented error before {body}");
                let ours = match decode(body) {
                    Ok(r) => {
                        let tag = tag(&serde_json::to_value(&r).unwrap());
                        assert_eq!(
                            r.is_protocol(),
                            PROTOCOL_REQUESTS.contains(&tag.as_str()),
                            "{tag}: is_protocol and PROTOCOL_REQUESTS disagree"
                        );
                        requests.insert(tag);
                        if let Request::SetConfig(p) = &r {
                            refused = p
                                .apply(&Config::default())
                                .validate()
                                .err()
                                .map(ApiError::bad_request);
                        }
                        serde_json::to_value(&r).unwrap()
                    }
                    Err(e) => match serde_json::from_str::<SubscriberMessage>(body) {
                        Ok(m) => serde_json::to_value(&m).unwrap(),
                        Err(_) => {
                            refused = Some(e);
                            serde_json::from_str(body).unwrap()
                        }
                    },
                };
                canonical(body, ours);
            } else if let Some(body) = line.strip_prefix("← ") {
                let r = match serde_json::from_str::<ApiResult<Response>>(body) {
                    Err(e) => panic!("documented response does not decode ({e}): {body}"),
                    Ok(r) => r,
                };
                if let Some(e) = refused.take() {
                    assert_eq!(r, Err(e), "documented error is not the real one");
                }
                if let Ok(resp) = &r {
                    responses.insert(tag(&serde_json::to_value(resp).unwrap()));
                }
                if let Ok(Response::Config(c)) = &r {
                    assert_eq!(
                        c,
                        &Config::default(),
                        "documented defaults are the real ones"
                    );
                }
                canonical(body, serde_json::to_value(&r).unwrap());
            }
        }
        assert!(
            refused.is_none(),
            "the last refused request has no documented error"
        );
        let all = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            requests,
            all(wire::variant_names::<Request>()),
            "documented requests"
        );
        assert_eq!(
            responses,
            all(wire::variant_names::<Response>()),
            "documented responses"
        );
    }

    fn decode(body: &str) -> Result<Request, ApiError> {
        crate::api::decode_request::<Request>(body.as_bytes(), "presence", 1 << 20)
            .and_then(Request::validated)
    }

    #[test]
    fn payload_less_variants_are_bare_strings_and_objects_are_read_too() {
        assert_eq!(encode(&Request::Leave {}), br#""Leave""#);
        assert_eq!(
            crate::api::encode_result(&Ok(Response::Left {})),
            br#"{"Ok":"Left"}"#
        );
        for body in [r#""Subscribe""#, r#"{"Subscribe": {}}"#] {
            assert_eq!(decode(body).unwrap(), Request::Subscribe {});
        }
        let e = decode(r#""Join""#).unwrap_err();
        assert!(e.message.contains("`Join` has a payload"), "{e}");
        let r: ApiResult<Response> = serde_json::from_str(r#"{"Ok": {"Accepted": {}}}"#).unwrap();
        assert_eq!(r, Ok(Response::Accepted {}));
    }

    #[test]
    fn local_requests_reject_unknown_fields_naming_them() {
        for (body, field) in [
            (r#"{"Ping": {"x": 1}}"#, "x"),
            (r#""Ping""#, ""),
            (r#"{"Leave": {"now": true}}"#, "now"),
            (
                r#"{"Join": {"bootstrap": ["a.os"], "boostrap": []}}"#,
                "boostrap",
            ),
            (r#"{"ListNodes": {"stauts": "Alive"}}"#, "stauts"),
            (r#"{"GetNode": {"node": "a.os", "full": true}}"#, "full"),
            (
                r#"{"SetConfig": {"probe_intervall_ms": 1}}"#,
                "probe_intervall_ms",
            ),
            (
                r#"{"SetInfo": {"metadata": [{"key": "k", "value": "v", "ttl": 1}]}}"#,
                "ttl",
            ),
            (
                r#"{"SetInfo": {"app_version": "1", "capability": []}}"#,
                "capability",
            ),
        ] {
            match decode(body) {
                Ok(_) if field.is_empty() => {}
                Ok(r) => panic!("{body} decoded as {r:?}"),
                Err(e) => {
                    assert_eq!(e.code, crate::api::ErrorCode::BadRequest);
                    assert!(
                        e.message.contains(&format!("unknown field `{field}`")),
                        "{body}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn protocol_messages_and_responses_ignore_unknown_fields() {
        // A newer peer adds fields at every level: the message, an update, a NodeInfo, a
        // metadata entry, and a payload-less variant.
        let probe = r#"{"Probe": {"seq": 7, "trace": "x", "updates": [{"node": "b.os",
            "status": "Alive", "incarnation": 2, "origin": "b.os", "signed": "..", "info":
            {"node_id": "b.os", "zone": 3, "metadata": [{"key": "k", "value": "v", "ttl": 9}]}}]}}"#;
        let Request::Probe {
            seq,
            updates,
            protocol_version,
        } = decode(probe).unwrap()
        else {
            panic!()
        };
        assert_eq!((seq, updates.len(), protocol_version), (7, 1, 0));
        // A newer protocol version is read, not refused.
        let newer = r#"{"Probe": {"seq": 8, "updates": [], "protocol_version": 9}}"#;
        assert!(matches!(
            decode(newer),
            Ok(Request::Probe {
                seq: 8,
                protocol_version: 9,
                ..
            })
        ));
        assert_eq!(updates[0].info.as_ref().unwrap().metadata["k"], "v");
        assert_eq!(
            decode(r#"{"Deregister": {"reason": "bye"}}"#).unwrap(),
            Request::Deregister {}
        );
        for body in [
            r#"{"RegisterNode": {"info": {"node_id": "b.os"}, "incarnation": 1, "protocol_version": 1, "x": 1}}"#,
            r#"{"ListRegistry": {"cursor": null, "limit": 0, "x": 1}}"#,
            r#"{"ProbeRequest": {"seq": 1, "target": "c.os", "updates": [], "x": 1}}"#,
            r#"{"IndirectAck": {"seq": 1, "target": "c.os", "x": 1}}"#,
            r#"{"IndirectNack": {"seq": 1, "target": "c.os", "x": 1}}"#,
            r#"{"Gossip": {"updates": [], "x": 1}}"#,
            r#"{"PushPull": {"members": [], "x": 1}}"#,
        ] {
            decode(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        }
        let r: ApiResult<Response> =
            serde_json::from_str(r#"{"Ok": {"Ack": {"seq": 1, "updates": [], "x": 1}}}"#).unwrap();
        assert!(matches!(r, Ok(Response::Ack { seq: 1, .. })));
    }

    #[test]
    fn bounded_numbers_are_refused_with_their_range() {
        for limit in [0, 501, u32::MAX] {
            let e = decode(&format!(r#"{{"ListNodes": {{"limit": {limit}}}}}"#)).unwrap_err();
            assert_eq!(e.code, crate::api::ErrorCode::BadRequest);
            assert!(e.message.contains("limit must be 1..=500"), "{e}");
        }
        for limit in [1, 500] {
            decode(&format!(r#"{{"ListNodes": {{"limit": {limit}}}}}"#)).unwrap();
        }
        let e = decode(r#"{"ListNodes": {"limit": -1}}"#).unwrap_err();
        assert!(e.message.contains("u32"), "{e}");
        // Settings: each one names its range.
        let d = Config::default();
        for (patch, range) in [
            (r#"{"gossip_fanout": 0}"#, "gossip_fanout must be 1..=32"),
            (
                r#"{"indirect_probes": 17}"#,
                "indirect_probes must be 0..=16",
            ),
            (r#"{"max_members": 10001}"#, "max_members must be 1..=10000"),
            (
                r#"{"suspicion_max_mult": 0.5}"#,
                "suspicion_max_mult must be 1..=100",
            ),
            (
                r#"{"probe_timeout_ms": 999}"#,
                "probe_timeout_ms must be at least 1000",
            ),
            (
                r#"{"probe_timeout_ms": 7000}"#,
                "probe_timeout_ms must be 1000..=probe_interval_ms",
            ),
        ] {
            let p: ConfigPatch = serde_json::from_str(patch).unwrap();
            let e = p.apply(&d).validate().unwrap_err();
            assert!(e.contains(range), "{patch}: {e}");
        }
    }

    #[test]
    fn metadata_is_a_sorted_list_of_records_and_the_old_object_is_read() {
        let mut info = NodeInfo::new(NodeId::parse("a.os").unwrap());
        info.metadata.insert("zone".into(), "b".into());
        info.metadata.insert("region".into(), "eu".into());
        let j = serde_json::to_value(&info).unwrap();
        assert_eq!(
            j["metadata"],
            serde_json::json!([{"key": "region", "value": "eu"}, {"key": "zone", "value": "b"}])
        );
        let mut old = j.clone();
        old["metadata"] = serde_json::json!({"zone": "b", "region": "eu"});
        assert_eq!(serde_json::from_value::<NodeInfo>(old).unwrap(), info);
        let mut dup = j;
        dup["metadata"] =
            serde_json::json!([{"key": "k", "value": "1"}, {"key": "k", "value": "2"}]);
        let e = serde_json::from_value::<NodeInfo>(dup).unwrap_err();
        assert!(
            e.to_string().contains("duplicate metadata key \"k\""),
            "{e}"
        );
    }

    #[test]
    fn config_patch_changes_only_what_it_names() {
        let d = Config::default();
        assert_eq!(ConfigPatch::default().apply(&d), d);
        assert_eq!(
            ConfigPatch::from(&d).apply(&Config {
                max_members: 5,
                ..d.clone()
            }),
            d
        );
        let p: ConfigPatch =
            serde_json::from_str(r#"{"gossip_fanout": 5, "max_members": null}"#).unwrap();
        assert_eq!(
            p.apply(&d),
            Config {
                gossip_fanout: 5,
                ..d
            }
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
