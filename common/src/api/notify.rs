//! Wire types of the `notify` process: topics of our node that local apps publish to,
//! subscriptions of local apps to topics on any node, durable delivery with acknowledgement,
//! and the messages between notify processes. JSON examples are in docs/api.md.
//!
//! A notification's payload never travels inside the JSON: it is the message's blob
//! (Hyperware's lazy_load_blob), and `kind` says whether it is JSON text or bytes. A batch of
//! notifications between nodes carries their payloads concatenated in one blob, in order,
//! each `size` bytes long.
//!
//! Local requests are strict (an unknown field is a `BadRequest` naming it); protocol
//! messages and responses ignore unknown fields, so nodes of a newer version can add some.

use super::wire::wire_enum;
use super::ApiError;
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

/// Process name on every node.
pub const PROCESS: &str = "notify";
/// Longest topic name (bytes).
pub const MAX_TOPIC: usize = 64;
/// Largest payload of one notification (bytes).
pub const MAX_PAYLOAD: usize = 64 << 10;
/// Most topics one node publishes.
pub const MAX_TOPICS: usize = 256;
/// Most names in an allow-list.
pub const MAX_ALLOW: usize = 1_000;
/// Most remote subscriber nodes of one topic.
pub const MAX_SUBSCRIBERS: usize = 1_000;
/// Most subscriptions of all local apps together.
pub const MAX_LOCAL_SUBSCRIPTIONS: usize = 1_024;
/// Most notifications in one `Deliver` batch.
pub const MAX_BATCH: usize = 32;
/// Largest request body notify accepts (a batch's headers; payloads are in the blob).
pub const MAX_BODY: usize = 256 << 10;
/// Largest fan-out of a relay tree a receiver accepts (children per node).
pub const MAX_FANOUT: u32 = 16;
/// Highest sequence number notify takes from another node (a JSON-safe integer): a larger
/// `lost.to` or `next_seq` is refused, so no `last + 1` can overflow.
pub const MAX_SEQ: u64 = (1 << 53) - 1;
/// A topic's retention by age (`SetRetention`'s `max_age_s`): the default and the bounds
/// (seconds).
pub const DEFAULT_MAX_AGE_S: u64 = 24 * 3_600;
pub const MIN_MAX_AGE_S: u64 = 60;
pub const MAX_MAX_AGE_S: u64 = 7 * 24 * 3_600;
/// A topic's retention by count (`SetRetention`'s `max_count`): the default and the bounds.
pub const DEFAULT_MAX_COUNT: u32 = 1_000;
pub const MAX_MAX_COUNT: u32 = 10_000;
/// Most topics in one `ListTopics` or `Stats` page, and the number when `limit` is left out.
pub const MAX_PAGE: u32 = 256;
pub const DEFAULT_PAGE: u32 = 32;
/// Most bytes of topics in one `ListTopics` or `Stats` answer (Hyperware refuses messages
/// over 10 MiB; one topic's stats with 1,000 subscriber nodes are at most about 0.5 MiB): a
/// page ends before the topic that would take it past this, and always holds one.
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// Longest `reason` of a `Revoke` notify passes on to apps (bytes; a longer one is cut).
pub const MAX_REASON: usize = 256;

/// Who may subscribe to a topic from another node. Apps on the publishing node may always
/// subscribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// Any node.
    Open,
    /// Only these nodes.
    AllowList(Vec<NodeId>),
    /// No other node: the topic is for apps on the publishing node only.
    OwnerOnly,
}

impl Policy {
    /// Whether `node` (not the publisher) may subscribe.
    pub fn admits(&self, node: &NodeId) -> bool {
        match self {
            Policy::Open => true,
            Policy::AllowList(l) => l.contains(node),
            Policy::OwnerOnly => false,
        }
    }
}

/// How to read a notification's payload (its blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadKind {
    /// UTF-8 JSON text (checked when published).
    Json,
    /// Any bytes.
    Blob,
}

/// One notification, without its payload (that is the message's blob, `size` bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique: `<publisher>/<topic>/<seq>` is unique too, and is what receivers dedup on.
    pub id: String,
    pub publisher: NodeId,
    pub topic: String,
    /// 1, 2, 3, ... per publisher and topic.
    pub seq: u64,
    /// When it was published (Unix ms, the publisher's clock).
    pub at: u64,
    pub kind: PayloadKind,
    /// Payload bytes.
    pub size: u32,
    /// The publisher's notify signed [`signed_message`] with its node's networking key
    /// (`sign:sign:sys` NetKeySign, 64 bytes); receivers check it with NetKeyVerify before
    /// delivering, so no relay can forge or alter a notification. In JSON, hex.
    #[serde(default, with = "hex_bytes")]
    pub signature: Vec<u8>,
}

/// Bytes as a lowercase hex string (also txcoord's signed decisions).
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(|e| serde::de::Error::custom(format!("signature: {e}")))
    }
}

impl Notification {
    /// The bytes the publisher signs: every field but the signature, then the payload.
    /// Changing any of them (seq included, so a replay under another number) breaks it.
    pub fn signed_message(&self, payload: &[u8]) -> Vec<u8> {
        let header = serde_json::json!([
            "p2p-patterns notify v1",
            self.id,
            self.publisher,
            self.topic,
            self.seq,
            self.at,
            self.kind,
            self.size
        ]);
        let mut v = serde_json::to_vec(&header).expect("serializes");
        v.push(b'\n');
        v.extend_from_slice(payload);
        v
    }
}

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub from: u64,
    pub to: u64,
}

/// The member list of a large topic's relay tree, signed by the publisher's notify like a
/// notification, so a relay that forwards it cannot change it. Every member derives the same
/// tree from it ([`Roster::parent`], [`Roster::children`], [`Roster::lazy_peers`]): a
/// `fanout`-ary heap with the publisher at the root and the members in the roster's order,
/// which the publisher chooses (the nodes its presence reports alive first, so they take
/// the interior positions; suspect and dead ones last, at the leaves). The order is not
/// sorted: [`Roster::well_formed`] checks for duplicates with a set, and lookups go through
/// an index built once per roster (not sent, not compared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    pub publisher: NodeId,
    pub topic: String,
    /// Grows with every change; a receiver takes only a newer one.
    pub epoch: u64,
    pub fanout: u32,
    /// Without duplicates, without the publisher, at most [`MAX_SUBSCRIBERS`]; in tree
    /// order (position `i` is heap position `i + 1`).
    pub members: Vec<NodeId>,
    #[serde(default, with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// Member -> place in `members`, built on first use.
    #[serde(skip)]
    pub index: RosterIndex,
}

/// A roster's member index: derived from `members`, so equal for every copy of a roster
/// (it takes no part in comparisons) and never on the wire. A clone starts empty (built
/// again on first use), so a copy whose members are then changed never uses a stale one.
#[derive(Default)]
pub struct RosterIndex(std::sync::OnceLock<std::collections::HashMap<NodeId, usize>>);

impl Clone for RosterIndex {
    fn clone(&self) -> Self {
        RosterIndex::default()
    }
}

impl PartialEq for RosterIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RosterIndex {}
impl std::fmt::Debug for RosterIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RosterIndex")
    }
}

impl Roster {
    /// A roster of `members` in tree order (not signed yet).
    pub fn new(
        publisher: NodeId,
        topic: String,
        epoch: u64,
        fanout: u32,
        members: Vec<NodeId>,
    ) -> Self {
        Roster {
            publisher,
            topic,
            epoch,
            fanout,
            members,
            signature: Vec::new(),
            index: RosterIndex::default(),
        }
    }
    /// The bytes the publisher signs: every field but the signature.
    pub fn signed_message(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!([
            "p2p-patterns notify roster v1",
            self.publisher,
            self.topic,
            self.epoch,
            self.fanout,
            self.members
        ]))
        .expect("serializes")
    }
    /// Whether the types' promises hold: at most [`MAX_SUBSCRIBERS`] members (checked
    /// first, so a huge list costs no set), no duplicates, the publisher not a member,
    /// fan-out 2..=[`MAX_FANOUT`]. The order is the publisher's choice.
    pub fn well_formed(&self) -> bool {
        (2..=MAX_FANOUT).contains(&self.fanout)
            && self.members.len() <= MAX_SUBSCRIBERS
            && !self.members.contains(&self.publisher)
            && {
                let mut seen = std::collections::HashSet::with_capacity(self.members.len());
                self.members.iter().all(|m| seen.insert(m))
            }
    }
    /// Place of `node` in `members` (the index, built once per roster).
    fn place(&self, node: &NodeId) -> Option<usize> {
        self.index
            .0
            .get_or_init(|| {
                let mut m = std::collections::HashMap::with_capacity(self.members.len());
                for (i, n) in self.members.iter().enumerate() {
                    // The first place of a duplicate (a roster that is not well formed is
                    // never taken; this only keeps lookups defined).
                    m.entry(n.clone()).or_insert(i);
                }
                m
            })
            .get(node)
            .copied()
    }
    /// Heap position: 0 the publisher, 1.. the members in order.
    fn position(&self, node: &NodeId) -> Option<usize> {
        if node == &self.publisher {
            return Some(0);
        }
        self.place(node).map(|i| i + 1)
    }
    fn at(&self, pos: usize) -> Option<&NodeId> {
        if pos == 0 {
            Some(&self.publisher)
        } else {
            self.members.get(pos - 1)
        }
    }
    pub fn contains(&self, node: &NodeId) -> bool {
        self.place(node).is_some()
    }
    /// How many members have children (the interior, relay positions): the first ones.
    pub fn interior(&self) -> usize {
        interior_count(self.members.len(), self.fanout)
    }
    /// The node that pushes to `node` (the publisher for the top level).
    pub fn parent(&self, node: &NodeId) -> Option<&NodeId> {
        let p = self.position(node).filter(|p| *p > 0)?;
        self.at((p - 1) / self.fanout as usize)
    }
    /// The nodes `node` pushes to (at most `fanout`).
    pub fn children(&self, node: &NodeId) -> Vec<NodeId> {
        let Some(p) = self.position(node) else {
            return Vec::new();
        };
        let f = self.fanout as usize;
        (p * f + 1..=p * f + f)
            .filter_map(|c| self.at(c).cloned())
            .collect()
    }
    /// The members `node` announces to (IHAVE): about a third and two thirds of the way
    /// round the member list (so mostly in other subtrees than its own), at offsets coprime
    /// with the member count, so that following announcements reaches every member (no
    /// closed group of members only announces to itself).
    pub fn lazy_peers(&self, node: &NodeId) -> Vec<NodeId> {
        let n = self.members.len();
        let Some(i) = self.place(node) else {
            return Vec::new();
        };
        fn gcd(a: usize, b: usize) -> usize {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let coprime_from = |start: usize| (start.max(1)..n).find(|o| gcd(*o, n) == 1);
        let first = coprime_from(n / 3);
        let second = coprime_from(2 * n / 3).filter(|o| Some(*o) != first);
        let mut v: Vec<NodeId> = [first, second]
            .into_iter()
            .flatten()
            .map(|off| self.members[(i + off) % n].clone())
            .filter(|m| m != node)
            .collect();
        v.dedup();
        v
    }
}

/// Members with children in a `fanout`-ary heap of `members` below the publisher: member
/// `i` (heap position `i + 1`) has children if `(i + 1) * fanout + 1 <= members`.
pub fn interior_count(members: usize, fanout: u32) -> usize {
    let f = fanout.max(1) as usize;
    if members == 0 {
        return 0;
    }
    // Positions 1..=p with p * f + 1 <= members.
    (members - 1) / f
}

/// What a subscribed app receives, as requests expecting an answer (any body) within
/// 30 s; unanswered ones are retried with backoff, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppMessage {
    /// The first message of a subscription, before `Subscribe` is answered: it proves notify
    /// can reach the app (the kernel checks capabilities).
    Welcome { publisher: NodeId, topic: String },
    /// One notification (the guide's name); the payload is the blob.
    HandleNotification(Notification),
    /// These notifications are gone (past the retention window) before this app got them.
    Lost {
        publisher: NodeId,
        topic: String,
        range: SeqRange,
    },
    /// The last message of a subscription: the publisher no longer sends this node the
    /// topic (its policy no longer admits the node, or it no longer knows the node as a
    /// subscriber). Everything this node received of it came before; the subscription is
    /// gone once the app answers. Subscribe again if the publisher admits the node again.
    Revoked {
        publisher: NodeId,
        topic: String,
        /// The publisher's words (at most [`MAX_REASON`] bytes).
        reason: String,
    },
}

/// How long, and how many of, a topic's notifications its node keeps for subscribers that
/// are behind (besides a fixed 8 MiB per topic). One behind that window is told exactly
/// which numbers it lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRetention {
    /// Seconds a notification is kept after it was published (by the publisher's clock).
    pub max_age_s: u64,
    /// Most notifications kept.
    pub max_count: u32,
}

impl Default for TopicRetention {
    /// A day, 1,000 notifications.
    fn default() -> Self {
        TopicRetention {
            max_age_s: DEFAULT_MAX_AGE_S,
            max_count: DEFAULT_MAX_COUNT,
        }
    }
}

impl TopicRetention {
    /// The settings of a `SetRetention` (`None`: the default), checked against the bounds.
    pub fn from_request(max_age_s: Option<u64>, max_count: Option<u32>) -> Result<Self, ApiError> {
        let d = TopicRetention::default();
        let r = TopicRetention {
            max_age_s: max_age_s.unwrap_or(d.max_age_s),
            max_count: max_count.unwrap_or(d.max_count),
        };
        r.check().map(|()| r)
    }
    /// Whether the settings are within the documented bounds; the error names them.
    pub fn check(&self) -> Result<(), ApiError> {
        if !(MIN_MAX_AGE_S..=MAX_MAX_AGE_S).contains(&self.max_age_s) {
            return Err(ApiError::bad_request(format!(
                "max_age_s must be {MIN_MAX_AGE_S}..={MAX_MAX_AGE_S} (got {})",
                self.max_age_s
            )));
        }
        if !(1..=MAX_MAX_COUNT).contains(&self.max_count) {
            return Err(ApiError::bad_request(format!(
                "max_count must be 1..={MAX_MAX_COUNT} (got {})",
                self.max_count
            )));
        }
        Ok(())
    }
}

/// A topic as `ListTopics` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub topic: String,
    /// The app that created it: the only one that publishes to it and sets its policy.
    pub owner: String,
    pub policy: Policy,
    /// Sequence number of the last notification (0: none yet).
    pub last_seq: u64,
    /// Oldest sequence number still retained (last_seq + 1 when none is).
    pub first_retained: u64,
    pub subscriber_nodes: u32,
    /// What the topic keeps (set with `SetRetention`; absent from an older node: the
    /// default).
    #[serde(default)]
    pub retention: TopicRetention,
}

/// A local app's subscription as `ListSubscriptions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    pub publisher: NodeId,
    pub topic: String,
    /// The last sequence number this app has received (or was told it lost).
    pub cursor: u64,
    /// Notifications received by this node and not yet delivered to the app.
    pub pending: u64,
}

/// Counters of one remote subscriber node of one topic (publisher side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberStats {
    pub node: NodeId,
    /// Last sequence number it acknowledged.
    pub acked: u64,
    /// Payload copies sent to it (retries included).
    pub sent: u64,
    /// Sends that failed (offline, timeout, refused).
    pub failed: u64,
    /// Notifications it acknowledged.
    pub delivered: u64,
    /// Retained notifications it has not acknowledged.
    pub pending: u64,
    /// Notifications it missed because they left the retention window first.
    pub dropped_by_retention: u64,
}

/// Counters of one topic of ours (publisher side).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicStats {
    pub topic: String,
    /// The topic's retention settings (as in [`TopicInfo`]).
    #[serde(default)]
    pub retention: TopicRetention,
    pub published: u64,
    pub sent: u64,
    pub failed: u64,
    pub delivered: u64,
    pub pending: u64,
    pub dropped_by_retention: u64,
    /// Payload copies the publisher pushed down the topic's relay tree as its root (to its
    /// tree children and grafted links; part of `sent`; 0 with direct fan-out). The
    /// relays' own copies are in their nodes' `relays` stats.
    pub relay_payloads: u64,
    /// Announcements (IHAVE) the publisher sent for the topic's tree (0 with direct
    /// fan-out; the root announces nothing, its members do).
    pub announcements: u64,
    /// Direct subscribers, and the tree members the publisher pushes to (its tree children
    /// and grafted links, with their acknowledgements); members deeper in the tree
    /// acknowledge to their tree parents and are not listed.
    pub subscribers: Vec<SubscriberStats>,
}

/// Counters of one subscription of a local app (receiver side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    pub app: String,
    pub publisher: NodeId,
    pub topic: String,
    /// Notifications the app answered.
    pub delivered: u64,
    /// Deliveries to the app that failed (retried).
    pub failed: u64,
    pub pending: u64,
    /// Notifications the app was told it lost.
    pub dropped_by_retention: u64,
}

/// What `Stats` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyStats {
    pub topics: Vec<TopicStats>,
    pub subscriptions: Vec<DeliveryStats>,
    /// Copies of notifications this node had already received (retries, duplicates).
    pub duplicates_suppressed: u64,
    /// Protocol messages refused (unsubscribed stream, bad batch, over budget).
    pub refused: u64,
    /// Per stream in a relay tree (large topics): this node's part in it.
    #[serde(default)]
    pub relays: Vec<RelayStats>,
    /// `topics` is one page: ask again with this `cursor` for the next (None: the last).
    /// The other fields are in full on every page.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// Deaths our node's presence reported of a subscriber node that answered our own
    /// `Ping` check (or sent us something meanwhile): the report was ignored.
    #[serde(default)]
    pub hearsay_ignored: u64,
    /// Deaths presence reported that our check confirmed (our `Ping`s failed and the node
    /// sent us nothing for the check's silence, docs/notify.md): taken.
    #[serde(default)]
    pub deaths_taken: u64,
    /// Subscriber nodes whose retries pause now (a death taken, not yet reported back).
    #[serde(default)]
    pub paused_nodes: u32,
    /// Early attempts a subscriber's `Resume` bought while we were backing off from it.
    #[serde(default)]
    pub early_sends: u64,
    /// How notify's subscription to its own node's presence events stands.
    #[serde(default)]
    pub presence: PresenceSubscription,
    /// Gaps seen in the numbering of presence's events (events missed).
    #[serde(default)]
    pub presence_gaps: u64,
    /// Relays of our topics' trees demoted to the leaves because their children kept
    /// lacking what they had acknowledged to us (they withheld pushes).
    #[serde(default)]
    pub demotions: u64,
}

/// How notify's subscription to its node's presence events stands (`Stats.presence`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceSubscription {
    /// Not asked yet (before start).
    #[default]
    Idle,
    /// A `Subscribe` to presence is out.
    Asking,
    /// Presence did not take it (not installed, not started yet): asking again after a
    /// backoff; until then rosters and retries ignore liveness.
    Waiting,
    /// Presence took it: its events come.
    Subscribed,
}

/// This node's part in the relay tree of one stream (ours as the root, or another node's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStats {
    pub publisher: NodeId,
    pub topic: String,
    pub epoch: u64,
    /// Nodes we push to: our tree children, plus the ones that grafted onto us.
    pub children: u32,
    pub grafted: u32,
    /// Payload copies we pushed (retries included).
    pub payloads: u64,
    /// IHAVE announcements we sent.
    pub announcements: u64,
    /// GRAFTs we sent (we were behind what a lazy peer announced).
    pub grafts: u64,
    /// PRUNEs we sent (a grafted link no longer needed).
    pub prunes: u64,
}

/// Tags of the protocol variants of [`Request`]: they ignore unknown fields.
pub const PROTOCOL_REQUESTS: [&str; 8] = [
    "PeerSubscribe",
    "PeerUnsubscribe",
    "Deliver",
    "Resume",
    "IHave",
    "Graft",
    "Prune",
    "Revoke",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum Request {
    // ----- any caller -----
    Ping {},
    Info {},
    // ----- local apps only -----
    /// Create a topic of our node, owned by the calling app, or change its policy (owner
    /// only).
    SetTopic {
        topic: String,
        policy: Policy,
    },
    /// Set how long and how many notifications `topic` keeps for subscribers that are
    /// behind (owner only); `None`: the default (a day, 1,000). Answered `TopicSet`.
    SetRetention {
        topic: String,
        #[serde(default)]
        max_age_s: Option<u64>,
        #[serde(default)]
        max_count: Option<u32>,
    },
    /// Publish to a topic the calling app owns; the payload is the blob. Answered once the
    /// notification is on disk.
    Publish {
        topic: String,
        kind: PayloadKind,
    },
    /// Subscribe the calling app to `topic` of `publisher` (our node or another).
    Subscribe {
        publisher: NodeId,
        topic: String,
    },
    Unsubscribe {
        publisher: NodeId,
        topic: String,
    },
    /// The calling app's subscriptions.
    ListSubscriptions {},
    /// Our node's topics, by name, a page at a time: after `cursor` (a previous page's
    /// `next_cursor`), at most `limit` (1..=[`MAX_PAGE`], [`DEFAULT_PAGE`] if left out) and
    /// [`MAX_PAGE_BYTES`].
    ListTopics {
        #[serde(default)]
        cursor: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Counters; our topics' are paged like `ListTopics`.
    Stats {
        #[serde(default)]
        cursor: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    // ----- protocol, from other nodes' notify only -----
    /// Subscribe the sending node to our `topic`; answered `PeerSubscribed`.
    PeerSubscribe {
        topic: String,
    },
    /// The sending node no longer wants `topic`.
    PeerUnsubscribe {
        topic: String,
    },
    /// Notifications of the sending node's `topic`, in order, payloads in the blob; `lost`
    /// is a range the receiver will never get (it left the retention window). Answered
    /// `Delivered`.
    Deliver {
        topic: String,
        #[serde(default)]
        lost: Option<SeqRange>,
        notes: Vec<Notification>,
        /// The topic's publisher when a relay sends it (absent: the sender is). A relay's
        /// `lost` is ignored: only the publisher may say a number is lost.
        #[serde(default)]
        publisher: Option<NodeId>,
        /// The topic's relay tree, when the receiver may not have this epoch yet.
        #[serde(default)]
        roster: Option<Roster>,
        /// How far the publisher's stream reaches (the publisher sends it; absent from a
        /// relay or an older node): a receiver that still holds less after this batch, and
        /// gets nothing more, asks again with `Resume`.
        #[serde(default)]
        last: Option<u64>,
    },
    /// The sending node is back and has `topic` up to `up_to`: send what follows now.
    /// Answered `Accepted`; `NotFound` or `Forbidden` if the sender is not (any longer) a
    /// subscriber of `topic`: it drops the stream and tells its apps (`Revoked`).
    Resume {
        topic: String,
        up_to: u64,
    },
    /// Relay tree, lazy link: the sender has `publisher`'s `topic` up to `up_to` (no answer
    /// expected).
    IHave {
        publisher: NodeId,
        topic: String,
        up_to: u64,
    },
    /// Relay tree repair: the sender has `up_to` and asks us to push the rest to it (no
    /// answer expected).
    Graft {
        publisher: NodeId,
        topic: String,
        up_to: u64,
    },
    /// Relay tree: stop pushing to the sender what it gets from its own parent.
    Prune {
        publisher: NodeId,
        topic: String,
    },
    /// The sending node (the publisher) no longer sends us its `topic` (its policy changed
    /// and does not admit us): drop the stream and tell its apps (`AppMessage::Revoked`)
    /// after what they have not received yet. Answered `Accepted` (`NotFound` if we hold no
    /// such stream); the publisher retries until answered. An older node answers
    /// `BadRequest` (unknown variant) and notices at its next `Resume`.
    Revoke {
        topic: String,
        reason: String,
    },
    // ----- local apps only (added later) -----
    /// Network health as this process sees it: per known peer, reachability, breaker and
    /// message counts (at most `MAX_HEALTH_PEERS`, see [`crate::resilience::health`]).
    Health {},
}

wire_enum!(Request, "notify request", |tag| !PROTOCOL_REQUESTS
    .contains(&tag));

/// A topic name is 1..=64 bytes of letters, digits and `-_./:`.
pub fn check_topic(topic: &str) -> Result<(), ApiError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "topic must be 1..={MAX_TOPIC} bytes of letters, digits and -_./: (got {topic:?})"
        )))
    }
}

impl Request {
    /// Checks the types cannot express (for the local API; protocol messages are checked
    /// where they are handled); the error names the limit.
    pub fn validate(&self) -> Result<(), ApiError> {
        match self {
            Request::SetTopic { topic, policy } => {
                check_topic(topic)?;
                match policy {
                    Policy::AllowList(l) if l.len() > MAX_ALLOW => {
                        Err(ApiError::bad_request(format!(
                            "an allow-list has at most {MAX_ALLOW} nodes (got {})",
                            l.len()
                        )))
                    }
                    _ => Ok(()),
                }
            }
            Request::SetRetention {
                topic,
                max_age_s,
                max_count,
            } => {
                check_topic(topic)?;
                TopicRetention::from_request(*max_age_s, *max_count).map(|_| ())
            }
            Request::ListTopics { cursor, limit } | Request::Stats { cursor, limit } => {
                if let Some(c) = cursor {
                    check_topic(c)
                        .map_err(|e| ApiError::bad_request(format!("cursor: {}", e.message)))?;
                }
                match limit {
                    Some(l) if !(1..=MAX_PAGE).contains(l) => Err(ApiError::bad_request(format!(
                        "limit must be 1..={MAX_PAGE} (got {l}); leave it out for {DEFAULT_PAGE}"
                    ))),
                    _ => Ok(()),
                }
            }
            Request::Publish { topic, .. }
            | Request::Subscribe { topic, .. }
            | Request::Unsubscribe { topic, .. }
            | Request::IHave { topic, .. }
            | Request::Graft { topic, .. }
            | Request::Prune { topic, .. }
            | Request::Revoke { topic, .. } => check_topic(topic),
            _ => Ok(()),
        }
    }
    /// The request if [`Request::validate`] passes.
    pub fn validated(self) -> Result<Self, ApiError> {
        self.validate().map(|()| self)
    }
    /// Protocol messages are for other nodes' notify processes; the rest for local apps.
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            Request::PeerSubscribe { .. }
                | Request::PeerUnsubscribe { .. }
                | Request::Deliver { .. }
                | Request::Resume { .. }
                | Request::IHave { .. }
                | Request::Graft { .. }
                | Request::Prune { .. }
                | Request::Revoke { .. }
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
    TopicSet(TopicInfo),
    /// The notification is on disk and will reach every subscriber within retention.
    Published(Notification),
    /// `next_seq`: the first sequence number this subscription receives.
    Subscribed {
        next_seq: u64,
    },
    Unsubscribed {},
    Subscriptions {
        subscriptions: Vec<SubscriptionInfo>,
    },
    Topics {
        topics: Vec<TopicInfo>,
        /// Ask again with this `cursor` for the next page (None: this is the last).
        #[serde(default)]
        next_cursor: Option<String>,
    },
    Stats(NotifyStats),
    /// Answer to `PeerSubscribe`: the first sequence number the subscriber will be sent.
    PeerSubscribed {
        next_seq: u64,
    },
    /// Answer to `Deliver`: the receiver has everything up to `up_to` (on disk).
    Delivered {
        up_to: u64,
    },
    /// For one-way protocol messages sent with a timeout anyway.
    Accepted {},
    Health(crate::resilience::HealthReport),
}
wire_enum!(Response, "notify response", |_tag| false);

/// A batch's payloads from its blob, one per note, checked against the declared sizes.
pub fn split_payloads(notes: &[Notification], blob: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let total: u64 = notes.iter().map(|n| u64::from(n.size)).sum();
    if total != blob.len() as u64 {
        return Err(format!(
            "the notes declare {total} payload bytes, the blob has {}",
            blob.len()
        ));
    }
    let mut at = 0usize;
    Ok(notes
        .iter()
        .map(|n| {
            let end = at + n.size as usize;
            let p = blob[at..end].to_vec();
            at = end;
            p
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{decode_request, encode, encode_result, wire, ApiResult, ErrorCode};
    use std::collections::BTreeSet;

    fn decode(body: &str) -> Result<Request, ApiError> {
        decode_request::<Request>(body.as_bytes(), "notify", MAX_BODY).and_then(Request::validated)
    }

    fn tag(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Every `→` / `←` line of docs/api.md's notify section decodes into our types (a request,
    /// an app message, or a refused request followed by its exact error) and is written in
    /// the shape we send; every request and response variant has an example.
    #[test]
    fn documented_examples_decode() {
        let doc = include_str!("../../../docs/api.md");
        let start = doc.find("## notify").expect("notify section");
        let section = &doc[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        let (mut requests, mut responses) = (BTreeSet::new(), BTreeSet::new());
        let mut refused: Option<ApiError> = None;
        for line in section.lines() {
            if let Some(body) = line.strip_prefix("→ ") {
                assert!(refused.is_none(), "no documented error before {body}");
                let documented: serde_json::Value =
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
                let ours = match decode(body) {
                    Ok(r) => {
                        let t = tag(&serde_json::to_value(&r).unwrap());
                        assert_eq!(r.is_protocol(), PROTOCOL_REQUESTS.contains(&t.as_str()));
                        requests.insert(t);
                        serde_json::to_value(&r).unwrap()
                    }
                    Err(e) => match serde_json::from_str::<AppMessage>(body) {
                        Ok(m) => serde_json::to_value(&m).unwrap(),
                        Err(_) => {
                            refused = Some(e);
                            documented.clone()
                        }
                    },
                };
                assert_eq!(documented, ours, "documented body is not the shape we send");
            } else if let Some(body) = line.strip_prefix("← ") {
                let r: ApiResult<Response> = serde_json::from_str(body).unwrap_or_else(|e| {
                    panic!("documented response does not decode ({e}): {body}")
                });
                if let Some(e) = refused.take() {
                    assert_eq!(r, Err(e), "documented error is not the real one");
                }
                if let Ok(resp) = &r {
                    responses.insert(tag(&serde_json::to_value(resp).unwrap()));
                }
                let documented: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(documented, serde_json::to_value(&r).unwrap(), "{body}");
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

    #[test]
    fn local_requests_are_strict_and_protocol_messages_tolerant() {
        let e = decode(r#"{"Publish": {"topic": "t", "kind": "Json", "qos": 1}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("unknown field `qos`"), "{e}");
        let e =
            decode(r#"{"Subscribe": {"publisher": "a.os", "topic": "t", "x": 1}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `x`"), "{e}");
        let r = decode(
            r#"{"Deliver": {"topic": "t", "notes": [{"id": "i", "publisher": "a.os", "topic": "t",
            "seq": 1, "at": 2, "kind": "Blob", "size": 0, "sig": "x"}], "hops": 3}}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::Deliver { ref notes, .. } if notes.len() == 1));
        decode(r#"{"PeerSubscribe": {"topic": "t", "since": 4}}"#).unwrap();
        let r: ApiResult<Response> =
            serde_json::from_str(r#"{"Ok": {"Delivered": {"up_to": 3, "x": 1}}}"#).unwrap();
        assert_eq!(r, Ok(Response::Delivered { up_to: 3 }));
    }

    #[test]
    fn pages_of_topics_are_bounded_and_bare_names_ask_for_the_first() {
        let first = Request::Stats {
            cursor: None,
            limit: None,
        };
        assert_eq!(decode(r#""Stats""#).unwrap(), first);
        assert_eq!(decode(r#"{"Stats": {}}"#).unwrap(), first);
        assert!(matches!(
            decode(r#""ListTopics""#).unwrap(),
            Request::ListTopics {
                cursor: None,
                limit: None
            }
        ));
        // A variant with a field that may not be left out still needs its payload.
        let e = decode(r#""SetTopic""#).unwrap_err();
        assert!(e.message.contains("`SetTopic` has a payload"), "{e}");
        let e = decode(r#"{"Stats": {"limit": 0}}"#).unwrap_err();
        assert!(e.message.contains("limit must be 1..=256"), "{e}");
        let e = decode(r#"{"ListTopics": {"cursor": "a b"}}"#).unwrap_err();
        assert!(e.message.starts_with("cursor: topic must be"), "{e}");
        let e = decode(r#"{"ListTopics": {"page": 2}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `page`"), "{e}");
        // An older node's answers have no cursor: the last page.
        let r: ApiResult<Response> =
            serde_json::from_str(r#"{"Ok": {"Topics": {"topics": []}}}"#).unwrap();
        assert!(matches!(
            r,
            Ok(Response::Topics {
                next_cursor: None,
                ..
            })
        ));
    }

    #[test]
    fn topics_and_allow_lists_are_bounded() {
        for bad in ["", "a b", &"x".repeat(MAX_TOPIC + 1), "ü"] {
            let e = decode(&format!(
                r#"{{"Publish": {{"topic": {}, "kind": "Json"}}}}"#,
                serde_json::to_string(bad).unwrap()
            ))
            .unwrap_err();
            assert!(e.message.contains("topic must be"), "{bad}: {e}");
        }
        decode(r#"{"Publish": {"topic": "chat/room-1.v2:x_y", "kind": "Blob"}}"#).unwrap();
        let many: Vec<String> = (0..=MAX_ALLOW).map(|i| format!("n{i}.os")).collect();
        let body = serde_json::json!({"SetTopic": {"topic": "t", "policy": {"AllowList": many}}});
        let e = decode(&body.to_string()).unwrap_err();
        assert!(e.message.contains("at most 1000"), "{e}");
        assert_eq!(encode(&Policy::Open), br#""Open""#);
        assert!(Policy::AllowList(vec!["b.os".parse().unwrap()]).admits(&"b.os".parse().unwrap()));
        assert!(!Policy::OwnerOnly.admits(&"b.os".parse().unwrap()));
    }

    #[test]
    fn retention_settings_are_bounded_and_default_to_a_day_and_1000() {
        let set = |age: &str, count: &str| {
            decode(&format!(
                r#"{{"SetRetention": {{"topic": "news", "max_age_s": {age}, "max_count": {count}}}}}"#
            ))
        };
        for (age, count, want) in [
            ("59", "10", "max_age_s must be 60..=604800 (got 59)"),
            ("604801", "10", "max_age_s must be 60..=604800 (got 604801)"),
            ("0", "null", "max_age_s must be 60..=604800 (got 0)"),
            ("60", "0", "max_count must be 1..=10000 (got 0)"),
            ("null", "10001", "max_count must be 1..=10000 (got 10001)"),
            ("-1", "10", "invalid value: integer `-1`"),
            ("60", "4294967296", "invalid value: integer `4294967296`"),
            ("\"1h\"", "10", "invalid type: string"),
        ] {
            let e = set(age, count).unwrap_err();
            assert_eq!(e.code, crate::api::ErrorCode::BadRequest, "{age} {count}");
            assert!(e.message.contains(want), "{age} {count}: {e}");
        }
        for (age, count) in [("60", "1"), ("604800", "10000"), ("null", "null")] {
            set(age, count).unwrap();
        }
        // Left out is null; an unknown field is refused (local API).
        let r = decode(r#"{"SetRetention": {"topic": "news"}}"#).unwrap();
        assert_eq!(
            r,
            Request::SetRetention {
                topic: "news".into(),
                max_age_s: None,
                max_count: None
            }
        );
        let e = decode(r#"{"SetRetention": {"topic": "news", "max_bytes": 5}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `max_bytes`"), "{e}");
        let e = decode(r#"{"SetRetention": {"topic": "a b", "max_count": 5}}"#).unwrap_err();
        assert!(e.message.contains("topic must be"), "{e}");
        assert_eq!(
            TopicRetention::from_request(None, Some(7)),
            Ok(TopicRetention {
                max_age_s: 86_400,
                max_count: 7
            })
        );
        // An older node's TopicInfo has no retention: read as the default.
        let old = r#"{"topic": "t", "owner": "a", "policy": "Open", "last_seq": 0,
            "first_retained": 1, "subscriber_nodes": 0}"#;
        let t: TopicInfo = serde_json::from_str(old).unwrap();
        assert_eq!(t.retention, TopicRetention::default());
    }

    #[test]
    fn payloads_split_by_declared_sizes() {
        let note = |seq, size| Notification {
            id: format!("a.os/t/{seq}"),
            publisher: "a.os".parse().unwrap(),
            topic: "t".into(),
            seq,
            at: 0,
            kind: PayloadKind::Blob,
            size,
            signature: vec![],
        };
        let notes = [note(1, 2), note(2, 0), note(3, 3)];
        let p = split_payloads(&notes, b"abcde").unwrap();
        assert_eq!(p, vec![b"ab".to_vec(), vec![], b"cde".to_vec()]);
        assert!(split_payloads(&notes, b"abcd").is_err());
        assert!(split_payloads(&notes, b"abcdef").is_err());
        let ok: ApiResult<Response> = Ok(Response::Unsubscribed {});
        assert_eq!(encode_result(&ok), br#"{"Ok":"Unsubscribed"}"#);
    }

    fn names(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| format!("n{i:04}.os").parse().unwrap())
            .collect()
    }

    /// The roster is in the publisher's order, not sorted: it is well formed without
    /// duplicates, with at most MAX_SUBSCRIBERS members, and without the publisher; lookups
    /// (position, parent, children, lazy peers) follow the order through the index.
    #[test]
    fn an_unsorted_roster_is_checked_with_a_set_and_looked_up_through_its_index() {
        let alice: NodeId = "alice.os".parse().unwrap();
        let mut members = names(30);
        members.reverse();
        let r = Roster::new(alice.clone(), "t".into(), 1, 4, members.clone());
        assert!(r.well_formed(), "an unsorted roster is well formed");
        assert_eq!(r.children(&alice), members[..4].to_vec());
        assert_eq!(r.parent(&members[4]), Some(&members[0]));
        assert_eq!(r.children(&members[0]), members[4..8].to_vec());
        assert!(r.contains(&members[29]) && !r.contains(&alice));
        assert_eq!(r.interior(), 29 / 4);
        for (i, m) in members.iter().enumerate() {
            assert_eq!(r.children(m).is_empty(), i >= r.interior(), "{m} at {i}");
        }
        // The lazy peers are found from the member's place, as with a sorted list.
        assert_eq!(r.lazy_peers(&members[0]).len(), 2);
        // A duplicate anywhere is refused.
        let mut dup = members.clone();
        dup[20] = dup[3].clone();
        assert!(!Roster::new(alice.clone(), "t".into(), 1, 4, dup).well_formed());
        // The publisher as a member is refused.
        let mut with_pub = members.clone();
        with_pub[7] = alice.clone();
        assert!(!Roster::new(alice.clone(), "t".into(), 1, 4, with_pub).well_formed());
        // At most MAX_SUBSCRIBERS members.
        let full = Roster::new(alice.clone(), "t".into(), 1, 8, names(MAX_SUBSCRIBERS));
        assert!(full.well_formed());
        let over = Roster::new(alice.clone(), "t".into(), 1, 8, names(MAX_SUBSCRIBERS + 1));
        assert!(!over.well_formed());
        // Off the wire too (the index is not sent; a received copy builds its own).
        let wire: Roster = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(wire, r);
        assert!(!serde_json::to_string(&r).unwrap().contains("index"));
        assert_eq!(wire.children(&members[1]), r.children(&members[1]));
        // A clone whose members change does not use the original's index.
        let mut moved = r.clone();
        moved.members.swap(0, 29);
        assert_eq!(moved.parent(&members[29]), Some(&alice));
        assert_eq!(moved.children(&members[29]), members[4..8].to_vec());
    }

    #[test]
    fn interior_count_is_the_members_with_children() {
        for (n, f, want) in [
            (0, 8, 0),
            (1, 8, 0),
            (8, 8, 0),
            (9, 8, 1),
            (199, 8, 24),
            (20, 2, 9),
        ] {
            assert_eq!(interior_count(n, f), want, "{n} members, fan-out {f}");
        }
    }
}
