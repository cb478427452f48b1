//! The publisher side: our topics (owner, policy) and, per topic and subscriber node, a
//! durable outbox. The outbox is not a copy of the notifications: it is the subscriber's
//! acknowledged sequence number over the topic's stream, so a publish costs one write
//! whatever the number of subscribers, and the bound of the outbox is the stream's
//! retention. A subscriber behind the oldest retained notification is sent the range it
//! lost first.
//!
//! Per subscriber node one `Deliver` is in flight at a time; a failure waits a jittered,
//! capped backoff before the next attempt, a circuit breaker per node stops calling a node
//! that keeps failing, and reachability sets the timeout. A subscriber that says it is back
//! (`Resume`) is tried at once: while we back off from it (or its breaker is open, or its
//! retries pause because presence says it is down), its word buys one early attempt at
//! most every [`RESUME_EARLY_GAP_MS`] per node, and the backoff's level stays.
//!
//! It owns its timers ([`Timer`]) and request contexts ([`Ctx`]); the core wraps them.

use crate::streams::{Entry, Retention, StreamKey, Streams};
use p2p_common::api::encode;
use p2p_common::api::notify::{
    Notification, Policy, Request, SeqRange, SubscriberStats, TopicInfo, TopicRetention,
    TopicStats, MAX_BATCH, MAX_SUBSCRIBERS, PROCESS,
};
use p2p_common::resilience::{
    Backoff, BreakerConfig, Breakers, Jitter, Reachability, ReachabilityConfig,
};
use p2p_common::service::log;
use p2p_common::{Address, Batch, Effect, Expect, Level, Millis, NodeId, ProcessId, Records};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most payload bytes in one `Deliver` (Hyperware drops messages over 10 MiB).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Wait after a failed `Deliver` before the next attempt.
pub const BACKOFF: Backoff = Backoff {
    base_ms: 1_000,
    max_ms: 30_000,
    factor: 2,
    jitter: Jitter::Equal,
};
/// The circuit breaker per subscriber node. Its open period is short of the backoff's cap:
/// counted from a failure (after the timeout), a longer one would pace every retry of a
/// failing node instead of the backoff, unjittered.
pub const BREAKER: BreakerConfig = BreakerConfig {
    failure_threshold: 5,
    open_ms: 10_000,
    half_open_max_calls: 1,
    success_threshold: 1,
};
/// Bounds of a `Deliver`'s timeout (from the node's smoothed round trips).
pub const MIN_TIMEOUT_MS: Millis = 2_000;
pub const MAX_TIMEOUT_MS: Millis = 20_000;
/// Doublings of the timeout after failures in a row (for a node slower than its estimate).
pub const TIMEOUT_DOUBLINGS: u32 = 2;
/// A subscriber presence reports dead is still tried this often (in case presence is wrong
/// about it, or its word that the node is back was lost): the retries in between pause.
pub const PAUSED_RETRY_MS: Millis = 300_000;

/// A subscriber's `Resume` (it has just spoken to us: it is up) gets one attempt at once,
/// past the backoff's wait, an open breaker or a presence pause, at most once per node in
/// this long: a flood of `Resume`s adds at most one `Deliver` per node per period to what
/// the backoff sends (the backoff's level is kept, only a delivery resets it).
pub const RESUME_EARLY_GAP_MS: Millis = 30_000;
/// Most nodes whose last early attempt is remembered (older ones are let go when full).
const MAX_EARLY: usize = 4_096;

/// The outbox's timers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Try `node` again for `topic` (a `Deliver`, or a `Revoke` if it was dropped).
    Retry { topic: String, node: NodeId },
}

/// The outbox's request contexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    /// A `Deliver` to `node` of `topic`, carrying up to `up_to`.
    Deliver {
        topic: String,
        node: NodeId,
        up_to: u64,
        sent_at: Millis,
    },
    /// A `Revoke` of `topic` to `node`, a subscriber the topic's policy dropped.
    Revoke {
        topic: String,
        node: NodeId,
        sent_at: Millis,
    },
}

type Eff = Effect<Ctx, Timer>;

/// One subscriber node of one topic.
#[derive(Debug, Clone)]
pub struct Sub {
    pub acked: u64,
    /// When it subscribed, as a number counted up per subscription of this outbox (on
    /// disk with `acked`; 0 for records older than it): lower is longer subscribed.
    pub since: u64,
    in_flight: bool,
    waiting: bool,
    attempt: u32,
    /// Its node was down at its last retry: the wait ([`PAUSED_RETRY_MS`]) was the pause,
    /// the next retry goes.
    paused: bool,
    /// When a `Resume` last lowered its mark (one lowering per [`RESUME_EARLY_GAP_MS`]).
    lowered_at: Option<Millis>,
    pub stats: SubscriberStats,
}

/// A subscriber node the topic's policy dropped, not yet told so.
#[derive(Debug, Clone)]
pub struct Revoking {
    pub reason: String,
    in_flight: bool,
    waiting: bool,
    attempt: u32,
}

impl Revoking {
    fn new(reason: String) -> Self {
        Revoking {
            reason,
            in_flight: false,
            waiting: false,
            attempt: 0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokeRecord {
    reason: String,
}

/// One topic of ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMeta {
    /// The app that created it (its address): the only one that publishes and sets policy.
    pub owner: String,
    pub policy: Policy,
    /// Its own retention (`SetRetention`); None: the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<TopicRetention>,
}

#[derive(Debug, Clone)]
pub struct Topic {
    pub meta: TopicMeta,
    pub subs: BTreeMap<NodeId, Sub>,
    pub published: u64,
    pub dropped_by_retention: u64,
    /// Subscribers in the topic's relay tree (its current roster): they get notifications
    /// from their tree parent, not from this outbox.
    pub in_tree: BTreeSet<NodeId>,
    /// Subscribers the policy dropped that are still to be told (`v <topic> <node>`; at
    /// most [`MAX_SUBSCRIBERS`]).
    pub revoked: BTreeMap<NodeId, Revoking>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubRecord {
    acked: u64,
    #[serde(default)]
    since: u64,
}

fn topic_key(topic: &str) -> Vec<u8> {
    format!("t {topic}").into_bytes()
}
fn sub_key(topic: &str, node: &NodeId) -> Vec<u8> {
    format!("r {topic} {node}").into_bytes()
}
fn revoke_key(topic: &str, node: &NodeId) -> Vec<u8> {
    format!("v {topic} {node}").into_bytes()
}

/// Our topics and their outboxes.
#[derive(Debug)]
pub struct Outbox {
    me: NodeId,
    /// Retention of a topic without settings of its own.
    default_retention: Retention,
    pub topics: BTreeMap<String, Topic>,
    backoff: Backoff,
    breakers: Breakers,
    reach: Reachability,
    /// Subscriber nodes our presence reports dead or gone: their retries pause (at most
    /// [`crate::liveness::MAX_TRACKED`]).
    down: BTreeSet<NodeId>,
    /// Retries not sent because their node was down.
    pub paused: u64,
    /// When each node's last early attempt (on its `Resume`) went ([`RESUME_EARLY_GAP_MS`]).
    early: BTreeMap<NodeId, Millis>,
    /// Early attempts sent on a `Resume`.
    pub early_sent: u64,
    /// The next subscription's [`Sub::since`].
    next_since: u64,
    /// `Resume`s that lowered a subscriber's mark (its storage went back), and ones whose
    /// lowering was refused (another came within [`RESUME_EARLY_GAP_MS`]).
    pub lowered: u64,
    pub lowering_refused: u64,
}

impl Outbox {
    pub fn new(me: NodeId, default_retention: Retention) -> Self {
        Outbox {
            me,
            default_retention,
            topics: BTreeMap::new(),
            backoff: BACKOFF,
            breakers: Breakers::new(BREAKER, 4_096),
            reach: Reachability::new(ReachabilityConfig {
                min_timeout_ms: MIN_TIMEOUT_MS,
                max_timeout_ms: MAX_TIMEOUT_MS,
                default_timeout_ms: 10_000,
                cap: 4_096,
                max_backoff_doublings: TIMEOUT_DOUBLINGS,
                ..ReachabilityConfig::default()
            }),
            down: BTreeSet::new(),
            paused: 0,
            early: BTreeMap::new(),
            early_sent: 0,
            next_since: 1,
            lowered: 0,
            lowering_refused: 0,
        }
    }

    /// How many subscriber nodes' retries pause now (presence reports them dead or gone
    /// and our check confirmed it).
    pub fn paused_nodes(&self) -> u32 {
        self.down.len() as u32
    }

    /// Whether presence reports `node` dead or gone.
    pub fn is_down(&self, node: &NodeId) -> bool {
        self.down.contains(node)
    }

    /// Whether `node` subscribes to one of our topics.
    pub fn subscribes(&self, node: &NodeId) -> bool {
        self.topics.values().any(|t| t.subs.contains_key(node))
    }

    /// Forget presence's word on `node` (it no longer subscribes, or the liveness view
    /// dropped it): its retries follow the backoff again.
    pub fn forget_down(&mut self, node: &NodeId) {
        self.down.remove(node);
    }

    /// Our presence reports `node` dead or gone (`down`), or alive again. Down: the
    /// retries to it pause (a first attempt of something new still goes; the circuit
    /// breaker stays as the fallback). Back: each of its outboxes waiting to retry tries
    /// once at once (one in flight, as always; the backoff's count stays).
    pub fn set_down(
        &mut self,
        node: &NodeId,
        down: bool,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        if down {
            if self.down.len() < crate::liveness::MAX_TRACKED {
                self.down.insert(node.clone());
            }
            return;
        }
        if !self.down.remove(node) {
            return;
        }
        let topics: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| t.subs.get(node).is_some_and(|s| s.waiting))
            .map(|(n, _)| n.clone())
            .collect();
        for topic in topics {
            if let Some(s) = self
                .topics
                .get_mut(&topic)
                .and_then(|t| t.subs.get_mut(node))
            {
                s.waiting = false;
                s.paused = false;
            }
            out.push(Effect::CancelTimer(Timer::Retry {
                topic: topic.clone(),
                node: node.clone(),
            }));
            self.pump(&topic, node, streams, now, out);
        }
    }

    /// The circuit breakers per subscriber node (read-only: the playground's health view).
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }
    /// What the outbox's sends say about each subscriber node's reachability.
    pub fn reachability(&self) -> &Reachability {
        &self.reach
    }

    pub fn restart(&mut self, now: Millis) {
        self.reach.restart(now);
    }

    /// The retention of our `topic`: its own settings, or the default.
    pub fn retention(&self, topic: &str) -> Retention {
        match self.topics.get(topic).and_then(|t| t.meta.retention) {
            Some(r) => self.default_retention.with_topic(r),
            None => self.default_retention,
        }
    }

    /// Set our `topic`'s retention (None: the default); false if there is no such topic.
    pub fn set_retention(
        &mut self,
        topic: &str,
        retention: Option<TopicRetention>,
        batch: &mut Batch,
    ) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        t.meta.retention = retention;
        batch.ops.push((
            topic_key(topic),
            Some(serde_json::to_vec(&t.meta).expect("serializes")),
        ));
        true
    }

    /// Create a topic or change its policy (its retention stays); subscribers the new
    /// policy does not admit are dropped.
    pub fn set_topic(
        &mut self,
        topic: &str,
        owner: String,
        policy: Policy,
        batch: &mut Batch,
    ) -> Vec<NodeId> {
        let t = self
            .topics
            .entry(topic.to_string())
            .or_insert_with(|| Topic {
                meta: TopicMeta {
                    owner: owner.clone(),
                    policy: policy.clone(),
                    retention: None,
                },
                subs: BTreeMap::new(),
                published: 0,
                dropped_by_retention: 0,
                in_tree: BTreeSet::new(),
                revoked: BTreeMap::new(),
            });
        t.meta.owner = owner;
        t.meta.policy = policy;
        batch.ops.push((
            topic_key(topic),
            Some(serde_json::to_vec(&t.meta).expect("serializes")),
        ));
        let gone: Vec<NodeId> = t
            .subs
            .keys()
            .filter(|n| !t.meta.policy.admits(n))
            .cloned()
            .collect();
        for n in &gone {
            t.subs.remove(n);
            batch.ops.push((sub_key(topic, n), None));
            // Told with a `Revoke` (the core pumps it); past the bound, at its next Resume.
            if t.revoked.len() < MAX_SUBSCRIBERS {
                let reason = format!(
                    "the policy of topic {topic:?} of {} no longer admits {n}",
                    self.me
                );
                batch.ops.push((
                    revoke_key(topic, n),
                    Some(
                        serde_json::to_vec(&RevokeRecord {
                            reason: reason.clone(),
                        })
                        .expect("serializes"),
                    ),
                ));
                t.revoked.insert(n.clone(), Revoking::new(reason));
            }
        }
        gone
    }

    /// Whether `node` was dropped from `topic` and is still to be told.
    pub fn is_revoked(&self, topic: &str, node: &NodeId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.revoked.contains_key(node))
    }

    /// A dropped subscriber spoke to us (`Resume`, `Graft`): tell it at once.
    pub fn kick_revoke(&mut self, topic: &str, node: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        let Some(r) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.revoked.get_mut(node))
        else {
            return;
        };
        r.attempt = 0;
        if r.waiting {
            r.waiting = false;
            out.push(Effect::CancelTimer(Timer::Retry {
                topic: topic.to_string(),
                node: node.clone(),
            }));
        }
        self.pump_revoke(topic, node, now, out);
    }

    /// Send `node` its `Revoke` of `topic` if it is due one and none is in flight.
    fn pump_revoke(&mut self, topic: &str, node: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        let Some(r) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.revoked.get_mut(node))
        else {
            return;
        };
        if r.in_flight || r.waiting {
            return;
        }
        r.in_flight = true;
        let timeout_s = self.reach.suggested_timeout_ms(node).div_ceil(1_000).max(1);
        out.push(Effect::Send {
            to: Address::new(node.clone(), ProcessId::ours(PROCESS)),
            body: encode(&Request::Revoke {
                topic: topic.to_string(),
                reason: r.reason.clone(),
            }),
            blob: None,
            expect: Some(Expect {
                timeout_s,
                ctx: Ctx::Revoke {
                    topic: topic.to_string(),
                    node: node.clone(),
                    sent_at: now,
                },
            }),
        });
    }

    /// Every dropped subscriber of `topic` not yet told is sent its `Revoke`.
    pub fn pump_revokes(&mut self, topic: &str, now: Millis, out: &mut Vec<Eff>) {
        let nodes: Vec<NodeId> = self
            .topics
            .get(topic)
            .map(|t| t.revoked.keys().cloned().collect())
            .unwrap_or_default();
        for n in nodes {
            self.pump_revoke(topic, &n, now, out);
        }
    }

    /// The answer to a `Revoke`: `told` (it took it, holds no such stream, or is an older
    /// node that does not know `Revoke`) ends it; otherwise it is tried again after a
    /// backoff, until told (as a `Deliver` to a subscriber that is away is: at most
    /// [`MAX_SUBSCRIBERS`] per topic, each one every 30 s at most once the backoff is at its
    /// cap).
    #[allow(clippy::too_many_arguments)]
    pub fn on_revoke_answer(
        &mut self,
        ctx: Ctx,
        told: bool,
        why: &str,
        rng: &mut dyn RngCore,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) {
        let Ctx::Revoke {
            topic,
            node,
            sent_at,
        } = ctx
        else {
            return;
        };
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        let Some(r) = t.revoked.get_mut(&node) else {
            return;
        };
        r.in_flight = false;
        r.attempt = r.attempt.saturating_add(1);
        if told {
            t.revoked.remove(&node);
            batch.ops.push((revoke_key(&topic, &node), None));
            out.push(log(
                Level::Info,
                format!("{topic}: {node} told it was dropped"),
            ));
            return;
        }
        if r.attempt.is_power_of_two() {
            out.push(log(
                Level::Info,
                format!(
                    "{topic}: {node} not told it was dropped yet ({why}; {} tries)",
                    r.attempt
                ),
            ));
        }
        let waited = now.saturating_sub(sent_at);
        let delay = self
            .backoff
            .delay(r.attempt - 1, rng)
            .saturating_sub(waited)
            .max(100);
        r.waiting = true;
        out.push(Effect::timer(delay, Timer::Retry { topic, node }));
    }

    pub fn info(&self, topic: &str, streams: &Streams) -> Option<TopicInfo> {
        let t = self.topics.get(topic)?;
        let s = streams.get(&StreamKey::new(&self.me, topic));
        Some(TopicInfo {
            retention: self.retention(topic).as_topic(),
            topic: topic.to_string(),
            owner: t.meta.owner.clone(),
            policy: t.meta.policy.clone(),
            last_seq: s.map_or(0, |s| s.last),
            first_retained: s.map_or(1, |s| s.first),
            subscriber_nodes: t.subs.len() as u32,
        })
    }

    /// Add `node` as a subscriber of `topic` from `next_seq` on (or keep it where it is).
    /// Returns the first sequence number it will be sent.
    pub fn subscribe(&mut self, topic: &str, node: &NodeId, last: u64, batch: &mut Batch) -> u64 {
        let t = self.topics.get_mut(topic).expect("checked by the caller");
        if t.revoked.remove(node).is_some() {
            batch.ops.push((revoke_key(topic, node), None));
        }
        let since = self.next_since;
        let s = t.subs.entry(node.clone()).or_insert_with(|| {
            batch.ops.push((
                sub_key(topic, node),
                Some(serde_json::to_vec(&SubRecord { acked: last, since }).expect("serializes")),
            ));
            Sub {
                acked: last,
                since,
                in_flight: false,
                waiting: false,
                attempt: 0,
                paused: false,
                lowered_at: None,
                stats: SubscriberStats {
                    node: node.clone(),
                    acked: last,
                    sent: 0,
                    failed: 0,
                    delivered: 0,
                    pending: 0,
                    dropped_by_retention: 0,
                },
            }
        });
        if s.since == since {
            self.next_since += 1;
        }
        s.acked + 1
    }

    /// How long `node` has subscribed to `topic` ([`Sub::since`]: lower is longer).
    pub fn since(&self, topic: &str, node: &NodeId) -> Option<u64> {
        self.topics.get(topic)?.subs.get(node).map(|s| s.since)
    }

    pub fn unsubscribe(&mut self, topic: &str, node: &NodeId, batch: &mut Batch) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let had = t.subs.remove(node).is_some();
        if had {
            batch.ops.push((sub_key(topic, node), None));
        }
        had
    }

    /// The lowest acknowledged sequence number of `topic`'s subscribers this outbox sends
    /// to (None: none; the ones in the relay tree are the tree's).
    pub fn min_acked(&self, topic: &str) -> Option<u64> {
        let t = self.topics.get(topic)?;
        t.subs
            .iter()
            .filter(|(n, _)| !t.in_tree.contains(*n))
            .map(|(_, s)| s.acked)
            .min()
    }

    /// A subscriber is back with everything up to `up_to`: try it at once. If we are
    /// backing off from it, its word buys one early attempt, at most one per node per
    /// [`RESUME_EARLY_GAP_MS`]; it does not reset the backoff's level (or a peer could make
    /// our retries to it hot; presence's word that it is back does, [`Outbox::set_down`]).
    /// One that has
    /// less than it acknowledged (it restored older storage) is sent the rest again from
    /// retention, or told what left it (`lost`); the lower mark is written in `batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn resume(
        &mut self,
        topic: &str,
        node: &NodeId,
        up_to: u64,
        streams: &Streams,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) -> bool {
        let last = streams
            .get(&StreamKey::new(&self.me, topic))
            .map_or(0, |s| s.last);
        let Some(s) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.subs.get_mut(node))
        else {
            return false;
        };
        let mut up_to = up_to.min(last);
        let recent = s
            .lowered_at
            .is_some_and(|at| now < at.saturating_add(RESUME_EARLY_GAP_MS));
        if up_to < s.acked && recent {
            // One lowering per node and topic per period: a node that says it went back,
            // then forward, then back again costs us no write and no log line each time.
            self.lowering_refused += 1;
            up_to = s.acked;
        } else if up_to < s.acked {
            s.lowered_at = Some(now);
            self.lowered += 1;
            if self.lowered.is_power_of_two() {
                out.push(log(
                    Level::Info,
                    format!(
                        "{topic}: {node} resumes from {up_to}, below the {} it acknowledged \
                         (its storage went back?); sending the rest again ({} such so far)",
                        s.acked, self.lowered
                    ),
                ));
            }
            batch.ops.push((
                sub_key(topic, node),
                Some(
                    serde_json::to_vec(&SubRecord {
                        acked: up_to,
                        since: s.since,
                    })
                    .expect("serializes"),
                ),
            ));
        }
        // What it says it has, higher or lower than what it acknowledged before (its
        // `stats.acked` keeps the highest, so nothing is counted delivered twice).
        s.acked = up_to;
        self.pump(topic, node, streams, now, out);
        // Held back (backing off, breaker open, paused): it has just spoken to us, so one
        // attempt goes at once, at most one per node per RESUME_EARLY_GAP_MS. Its backoff
        // level stays (only a delivery of ours that succeeds resets it: a peer must not
        // reset what protects us from it); the retry already set is replaced by this try.
        let held = self
            .topics
            .get(topic)
            .and_then(|t| t.subs.get(node))
            .is_some_and(|s| s.waiting && !s.in_flight && s.acked < last);
        if held && self.take_early(node, now) {
            if let Some(s) = self
                .topics
                .get_mut(topic)
                .and_then(|t| t.subs.get_mut(node))
            {
                s.waiting = false;
                s.paused = false;
            }
            out.push(Effect::CancelTimer(Timer::Retry {
                topic: topic.to_string(),
                node: node.clone(),
            }));
            self.early_sent += 1;
            self.send_next(topic, node, streams, now, true, out);
        }
        true
    }

    /// Whether `node` may have an early attempt now (none in the last
    /// [`RESUME_EARLY_GAP_MS`]); if so, its slot is taken.
    fn take_early(&mut self, node: &NodeId, now: Millis) -> bool {
        if let Some(&at) = self.early.get(node) {
            if now < at.saturating_add(RESUME_EARLY_GAP_MS) {
                return false;
            }
        } else if self.early.len() >= MAX_EARLY {
            self.early
                .retain(|_, at| now < at.saturating_add(RESUME_EARLY_GAP_MS));
            if self.early.len() >= MAX_EARLY {
                return false;
            }
        }
        self.early.insert(node.clone(), now);
        true
    }

    /// Send every subscriber of `topic` what it lacks (those not busy or backing off).
    pub fn pump_topic(&mut self, topic: &str, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        let nodes: Vec<NodeId> = self
            .topics
            .get(topic)
            .map(|t| t.subs.keys().cloned().collect())
            .unwrap_or_default();
        for n in nodes {
            self.pump(topic, &n, streams, now, out);
        }
    }

    /// Send `node` the next batch of `topic` it lacks, if it lacks any and may be sent one.
    pub fn pump(
        &mut self,
        topic: &str,
        node: &NodeId,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        self.send_next(topic, node, streams, now, false, out);
    }

    /// [`Outbox::pump`]; `early`: an early attempt on the node's own word (a presence pause
    /// does not hold it, an open breaker lets it through as its probe).
    fn send_next(
        &mut self,
        topic: &str,
        node: &NodeId,
        streams: &Streams,
        now: Millis,
        early: bool,
        out: &mut Vec<Eff>,
    ) {
        let key = StreamKey::new(&self.me, topic);
        let Some(stream) = streams.get(&key) else {
            return;
        };
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        if t.in_tree.contains(node) {
            return;
        }
        let Some(s) = t.subs.get_mut(node) else {
            return;
        };
        if s.in_flight || s.waiting || s.acked >= stream.last {
            return;
        }
        if !early && s.attempt > 0 && self.down.contains(node) && !s.paused {
            // A retry into the void: wait for presence to say it is back.
            s.waiting = true;
            s.paused = true;
            self.paused += 1;
            if self.paused.is_power_of_two() {
                out.push(log(
                    Level::Info,
                    format!(
                        "{topic}: {node} is down (presence); its retries pause ({} paused so far)",
                        self.paused
                    ),
                ));
            }
            out.push(Effect::timer(
                PAUSED_RETRY_MS,
                Timer::Retry {
                    topic: topic.to_string(),
                    node: node.clone(),
                },
            ));
            return;
        }
        let admitted = if early {
            self.breakers.check_now(node, now)
        } else {
            self.breakers.check(node, now)
        };
        if let Err(r) = admitted {
            s.waiting = true;
            out.push(Effect::timer(
                r.retry_after_ms.max(1),
                Timer::Retry {
                    topic: topic.to_string(),
                    node: node.clone(),
                },
            ));
            return;
        }
        let mut lost = None;
        let mut from = s.acked + 1;
        if from < stream.first {
            lost = Some(SeqRange {
                from,
                to: stream.first - 1,
            });
            from = stream.first;
        }
        let mut notes: Vec<Notification> = Vec::new();
        let mut blob = Vec::new();
        let mut up_to = lost.map_or(s.acked, |r| r.to);
        for (&seq, e) in stream.entries.range(from..) {
            match e {
                Entry::Note { note, payload, .. } => {
                    if notes.len() >= MAX_BATCH
                        || (!notes.is_empty() && blob.len() + payload.len() > MAX_BATCH_BYTES)
                    {
                        break;
                    }
                    notes.push(note.clone());
                    blob.extend_from_slice(payload);
                    up_to = seq;
                }
                // Our own stream holds no lost ranges; stop if it somehow does.
                Entry::Lost { .. } => break,
            }
        }
        s.in_flight = true;
        s.stats.sent += notes.len() as u64;
        let timeout_s = self.reach.suggested_timeout_ms(node).div_ceil(1_000).max(1);
        let body = encode(&Request::Deliver {
            topic: topic.to_string(),
            lost,
            notes,
            publisher: None,
            roster: None,
            last: Some(stream.last),
        });
        out.push(Effect::Send {
            to: Address::new(node.clone(), ProcessId::ours(PROCESS)),
            body,
            blob: Some(blob),
            expect: Some(Expect {
                timeout_s,
                ctx: Ctx::Deliver {
                    topic: topic.to_string(),
                    node: node.clone(),
                    up_to,
                    sent_at: now,
                },
            }),
        });
    }

    /// Whether `Delivered { up_to: their_up_to }` in answer to `ctx` moves its subscriber
    /// on. A batch it answers without taking any of it (a note that does not verify, a gap
    /// on its side, or a node that never acknowledges) is a failure, backed off like one:
    /// otherwise the same batch would go out again at once, once per round trip.
    pub fn is_progress(&self, ctx: &Ctx, their_up_to: u64) -> bool {
        let Ctx::Deliver {
            topic, node, up_to, ..
        } = ctx
        else {
            return true;
        };
        match self.topics.get(topic).and_then(|t| t.subs.get(node)) {
            Some(s) => *up_to <= s.acked || their_up_to.min(*up_to) > s.acked,
            None => true,
        }
    }

    /// The subscriber answered `Delivered { up_to }` (its own claim, bounded by what we sent).
    #[allow(clippy::too_many_arguments)]
    pub fn on_delivered(
        &mut self,
        ctx: Ctx,
        their_up_to: u64,
        streams: &Streams,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) {
        let Ctx::Deliver {
            topic,
            node,
            up_to,
            sent_at,
        } = ctx
        else {
            return;
        };
        self.reach
            .on_success(&node, now, Some(now.saturating_sub(sent_at)));
        self.breakers.on_success(&node, now);
        let first = streams
            .get(&StreamKey::new(&self.me, &topic))
            .map_or(1, |s| s.first);
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        let Some(s) = t.subs.get_mut(&node) else {
            return;
        };
        s.in_flight = false;
        s.attempt = 0;
        s.paused = false;
        let new = their_up_to.min(up_to);
        if new > s.acked {
            // Counted once: from the highest it ever acknowledged (it may have gone back).
            let counted = s.acked.max(s.stats.acked);
            if new > counted {
                // What it acknowledged past a lost range it was told of.
                let lost_to = first.saturating_sub(1);
                if counted < lost_to {
                    let lost = lost_to.min(new) - counted;
                    s.stats.dropped_by_retention += lost;
                    t.dropped_by_retention += lost;
                    s.stats.delivered += new - counted - lost;
                } else {
                    s.stats.delivered += new - counted;
                }
                s.stats.acked = new;
            }
            s.acked = new;
            batch.ops.push((
                sub_key(&topic, &node),
                Some(
                    serde_json::to_vec(&SubRecord {
                        acked: new,
                        since: s.since,
                    })
                    .expect("serializes"),
                ),
            ));
        }
        self.pump(&topic, &node, streams, now, out);
    }

    /// A `Deliver` failed (no answer, or refused): back off, then try again.
    pub fn on_failed(
        &mut self,
        ctx: Ctx,
        kind: Option<p2p_common::SendErrorKind>,
        why: &str,
        rng: &mut dyn RngCore,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let Ctx::Deliver {
            topic,
            node,
            sent_at,
            ..
        } = ctx
        else {
            return;
        };
        match kind {
            Some(k) => self.reach.on_send_failed(&node, k, now),
            None => self.reach.on_success(&node, now, None),
        }
        self.breakers.on_failure(&node, now);
        let Some(s) = self
            .topics
            .get_mut(&topic)
            .and_then(|t| t.subs.get_mut(&node))
        else {
            return;
        };
        s.in_flight = false;
        s.paused = false;
        s.stats.failed += 1;
        // The backoff counts from when the attempt went out: waiting for its timeout is part
        // of it, so attempts are at most the backoff's cap apart, not that plus a timeout.
        let waited = now.saturating_sub(sent_at);
        let delay = self
            .backoff
            .delay(s.attempt, rng)
            .saturating_sub(waited)
            .max(100);
        s.attempt = s.attempt.saturating_add(1);
        s.waiting = true;
        if s.attempt.is_power_of_two() {
            out.push(log(
                Level::Info,
                format!(
                    "{topic}: delivery to {node} failed ({why}); {} failures in a row, next try in {delay} ms",
                    s.attempt
                ),
            ));
        }
        out.push(Effect::timer(delay, Timer::Retry { topic, node }));
    }

    pub fn on_timer(&mut self, t: Timer, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        let Timer::Retry { topic, node } = t;
        if let Some(r) = self
            .topics
            .get_mut(&topic)
            .and_then(|t| t.revoked.get_mut(&node))
        {
            r.waiting = false;
            self.pump_revoke(&topic, &node, now, out);
            return;
        }
        if let Some(s) = self
            .topics
            .get_mut(&topic)
            .and_then(|t| t.subs.get_mut(&node))
        {
            s.waiting = false;
        }
        self.pump(&topic, &node, streams, now, out);
    }

    pub fn stats(&self, streams: &Streams) -> Vec<TopicStats> {
        self.topics
            .keys()
            .filter_map(|name| self.topic_stats(name, streams))
            .collect()
    }

    /// The stats of our topic `name` (direct fan-out; the core adds the tree's).
    pub fn topic_stats(&self, name: &str, streams: &Streams) -> Option<TopicStats> {
        self.topics.get(name).map(|t| {
            {
                let name = name.to_string();
                let last = streams
                    .get(&StreamKey::new(&self.me, &name))
                    .map_or(0, |s| s.last);
                let subscribers: Vec<SubscriberStats> = t
                    .subs
                    .values()
                    .map(|s| SubscriberStats {
                        pending: last.saturating_sub(s.acked),
                        ..s.stats.clone()
                    })
                    .collect();
                TopicStats {
                    topic: name.clone(),
                    retention: self.retention(&name).as_topic(),
                    published: t.published,
                    sent: subscribers.iter().map(|s| s.sent).sum(),
                    failed: subscribers.iter().map(|s| s.failed).sum(),
                    delivered: subscribers.iter().map(|s| s.delivered).sum(),
                    pending: subscribers.iter().map(|s| s.pending).sum(),
                    dropped_by_retention: t.dropped_by_retention,
                    // Direct fan-out sends none; the core adds the relay tree's figures.
                    relay_payloads: 0,
                    announcements: 0,
                    subscribers,
                }
            }
        })
    }

    /// Rebuild from records (`t ...`, `r ...`); returns how many were unreadable.
    pub fn restore(&mut self, records: &Records) -> usize {
        let mut bad = 0;
        for (k, v) in records.range(b"t ".to_vec()..b"t!".to_vec()) {
            match (
                std::str::from_utf8(&k[2..]),
                serde_json::from_slice::<TopicMeta>(v),
            ) {
                (Ok(name), Ok(meta)) => {
                    self.topics.insert(
                        name.to_string(),
                        Topic {
                            meta,
                            subs: BTreeMap::new(),
                            published: 0,
                            dropped_by_retention: 0,
                            in_tree: BTreeSet::new(),
                            revoked: BTreeMap::new(),
                        },
                    );
                }
                _ => bad += 1,
            }
        }
        for (k, v) in records.range(b"v ".to_vec()..b"v!".to_vec()) {
            let parsed = std::str::from_utf8(&k[2..]).ok().and_then(|rest| {
                let (t, n) = rest.rsplit_once(' ')?;
                Some((t.to_string(), NodeId::parse(n).ok()?))
            });
            match (parsed, serde_json::from_slice::<RevokeRecord>(v)) {
                (Some((topic, node)), Ok(r)) => match self.topics.get_mut(&topic) {
                    Some(t) => {
                        t.revoked.insert(node, Revoking::new(r.reason));
                    }
                    None => bad += 1,
                },
                _ => bad += 1,
            }
        }
        for (k, v) in records.range(b"r ".to_vec()..b"r!".to_vec()) {
            let parsed = std::str::from_utf8(&k[2..]).ok().and_then(|rest| {
                let (t, n) = rest.rsplit_once(' ')?;
                Some((t.to_string(), NodeId::parse(n).ok()?))
            });
            match (parsed, serde_json::from_slice::<SubRecord>(v)) {
                (Some((topic, node)), Ok(r)) => match self.topics.get_mut(&topic) {
                    Some(t) => {
                        self.next_since = self.next_since.max(r.since.saturating_add(1));
                        t.subs.insert(
                            node.clone(),
                            Sub {
                                acked: r.acked,
                                since: r.since,
                                in_flight: false,
                                waiting: false,
                                attempt: 0,
                                paused: false,
                                lowered_at: None,
                                stats: SubscriberStats {
                                    node,
                                    acked: r.acked,
                                    sent: 0,
                                    failed: 0,
                                    delivered: 0,
                                    pending: 0,
                                    dropped_by_retention: 0,
                                },
                            },
                        );
                    }
                    None => bad += 1,
                },
                _ => bad += 1,
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_common::api::notify::PayloadKind;
    use p2p_common::resilience::BreakerState;
    use p2p_common::SendErrorKind;
    use rand::SeedableRng;

    fn sends(out: &[Eff]) -> Vec<Ctx> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send {
                    expect: Some(x), ..
                } => Some(x.ctx.clone()),
                _ => None,
            })
            .collect()
    }

    /// A subscriber whose `Deliver`s keep failing opens its breaker; its own `Resume` does
    /// not close it (a peer must not reset what protects us from it): it lets one early
    /// attempt through as the breaker's probe, and a second `Resume` within
    /// RESUME_EARLY_GAP_MS sends nothing until the breaker lets a trial through.
    #[test]
    fn resume_does_not_reset_the_subscribers_breaker() {
        let (mut o, streams, bob) = one_sub();
        let mut b = Batch::forced();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut now = 1_000;
        let mut out = Vec::new();
        o.pump("news", &bob, &streams, now, &mut out);
        for _ in 0..BREAKER.failure_threshold {
            let ctx = sends(&out).pop().expect("a Deliver");
            out.clear();
            now += 2_000;
            o.on_failed(
                ctx,
                Some(SendErrorKind::Offline),
                "offline",
                &mut rng,
                now,
                &mut out,
            );
            out.clear();
            o.on_timer(
                Timer::Retry {
                    topic: "news".into(),
                    node: bob.clone(),
                },
                &streams,
                now,
                &mut out,
            );
            if sends(&out).is_empty() {
                break;
            }
        }
        assert!(matches!(
            o.breakers().state(&bob),
            BreakerState::Open { .. }
        ));
        out.clear();
        let attempt = o.topics["news"].subs[&bob].attempt;
        assert!(o.resume("news", &bob, 0, &streams, now + 10, &mut b, &mut out));
        assert_eq!(sends(&out).len(), 1, "one early attempt: {out:?}");
        let ctx = sends(&out).pop().unwrap();
        assert!(matches!(
            o.breakers().state(&bob),
            BreakerState::HalfOpen { in_flight: 1, .. }
        ));
        out.clear();
        now += 2_000;
        o.on_failed(ctx, None, "timeout", &mut rng, now, &mut out);
        assert_eq!(
            o.topics["news"].subs[&bob].attempt,
            attempt + 1,
            "level kept"
        );
        assert!(matches!(
            o.breakers().state(&bob),
            BreakerState::Open { .. }
        ));
        out.clear();
        assert!(o.resume("news", &bob, 0, &streams, now + 10, &mut b, &mut out));
        assert!(sends(&out).is_empty(), "a second early attempt: {out:?}");
        assert!(
            !out.iter().any(|e| matches!(e, Effect::CancelTimer(_))),
            "the retry stays as set"
        );
        // Once the open period is over, a trial goes out.
        out.clear();
        o.on_timer(
            Timer::Retry {
                topic: "news".into(),
                node: bob.clone(),
            },
            &streams,
            now + BREAKER.open_ms + 10,
            &mut out,
        );
        assert_eq!(sends(&out).len(), 1);
    }

    /// One topic "news" of alice's with one note and bob subscribed.
    fn one_sub() -> (Outbox, Streams, NodeId) {
        let me: NodeId = "alice.os".parse().unwrap();
        let bob: NodeId = "bob.os".parse().unwrap();
        let mut o = Outbox::new(me.clone(), Retention::default());
        let mut streams = Streams::new();
        let mut b = Batch::forced();
        o.set_topic("news", "alice.os@app:app:x.os".into(), Policy::Open, &mut b);
        let k = StreamKey::new(&me, "news");
        streams.ensure(&k, 0, false, &mut b);
        let note = Notification {
            id: k.note_id(1),
            publisher: me.clone(),
            topic: "news".into(),
            seq: 1,
            at: 0,
            kind: PayloadKind::Blob,
            size: 1,
            signature: vec![0; 64],
        };
        streams.append(&k, note, vec![7], 0, &mut b);
        o.subscribe("news", &bob, 0, &mut b);
        (o, streams, bob)
    }

    fn retry_timer(out: &[Eff]) -> Option<Millis> {
        out.iter().find_map(|e| match e {
            Effect::SetTimer {
                after_ms,
                timer: Timer::Retry { .. },
            } => Some(*after_ms),
            _ => None,
        })
    }

    /// A subscriber presence reports dead: after a failure its retry does not go out (it
    /// waits PAUSED_RETRY_MS, then tries once in case presence is wrong); once presence
    /// says it is back, it is tried at once, one attempt in flight.
    #[test]
    fn retries_to_a_dead_subscriber_pause_and_go_at_once_when_it_is_back() {
        let (mut o, streams, bob) = one_sub();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let retry = || Timer::Retry {
            topic: "news".into(),
            node: bob.clone(),
        };
        let mut out = Vec::new();
        o.set_down(&bob, true, &streams, 0, &mut out);
        assert!(o.is_down(&bob) && out.is_empty());
        // A first attempt still goes.
        o.pump("news", &bob, &streams, 1_000, &mut out);
        let ctx = sends(&out).pop().expect("the first attempt");
        out.clear();
        o.on_failed(
            ctx,
            Some(SendErrorKind::Offline),
            "offline",
            &mut rng,
            3_000,
            &mut out,
        );
        out.clear();
        // The backoff's retry finds it down: nothing sent, the pause begins.
        o.on_timer(retry(), &streams, 4_000, &mut out);
        assert!(sends(&out).is_empty(), "a retry into the void: {out:?}");
        assert_eq!(retry_timer(&out), Some(PAUSED_RETRY_MS));
        assert_eq!(o.paused, 1);
        // After the pause, one try goes (presence may be wrong).
        out.clear();
        o.on_timer(retry(), &streams, 4_000 + PAUSED_RETRY_MS, &mut out);
        let ctx = sends(&out).pop().expect("the pause's try");
        out.clear();
        o.on_failed(ctx, None, "timeout", &mut rng, 310_000, &mut out);
        out.clear();
        o.on_timer(retry(), &streams, 312_000, &mut out);
        assert!(sends(&out).is_empty(), "paused again");
        // Presence says it is back: tried at once, once.
        out.clear();
        o.set_down(&bob, false, &streams, 313_000, &mut out);
        assert_eq!(sends(&out).len(), 1, "{out:?}");
        assert!(out
            .iter()
            .any(|e| matches!(e, Effect::CancelTimer(Timer::Retry { .. }))));
        let mut again = Vec::new();
        o.set_down(&bob, false, &streams, 313_001, &mut again);
        o.pump("news", &bob, &streams, 313_002, &mut again);
        assert!(sends(&again).is_empty(), "one in flight");
    }

    /// Without presence's word the retries follow the backoff as before.
    #[test]
    fn without_presence_retries_follow_the_backoff() {
        let (mut o, streams, bob) = one_sub();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        o.pump("news", &bob, &streams, 1_000, &mut out);
        let ctx = sends(&out).pop().unwrap();
        out.clear();
        o.on_failed(
            ctx,
            Some(SendErrorKind::Offline),
            "offline",
            &mut rng,
            3_000,
            &mut out,
        );
        assert!(retry_timer(&out).is_some_and(|d| d <= BACKOFF.base_ms));
        out.clear();
        o.on_timer(
            Timer::Retry {
                topic: "news".into(),
                node: bob.clone(),
            },
            &streams,
            4_000,
            &mut out,
        );
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(o.paused, 0);
    }

    /// A `Resume` does not reset the backoff (13b): while we back off from a subscriber,
    /// its first `Resume` sends one early attempt in place of the retry and keeps the
    /// failure count; a second one within RESUME_EARLY_GAP_MS sends nothing and keeps the
    /// retry as it is; not backing off, it sends at once.
    #[test]
    fn resume_does_not_reset_the_backoff() {
        let (mut o, streams, bob) = one_sub();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut b = Batch::lazy();
        let mut out = Vec::new();
        o.pump("news", &bob, &streams, 1_000, &mut out);
        let ctx = sends(&out).pop().unwrap();
        out.clear();
        o.on_failed(ctx, None, "timeout", &mut rng, 3_000, &mut out);
        let attempt = o.topics["news"].subs[&bob].attempt;
        assert_eq!(attempt, 1);
        out.clear();
        assert!(o.resume("news", &bob, 0, &streams, 3_100, &mut b, &mut out));
        let ctx = sends(&out).pop().expect("the early attempt");
        assert!(out
            .iter()
            .any(|e| matches!(e, Effect::CancelTimer(Timer::Retry { .. }))));
        assert_eq!(o.topics["news"].subs[&bob].attempt, attempt, "count kept");
        out.clear();
        o.on_failed(ctx, None, "timeout", &mut rng, 3_100, &mut out);
        assert_eq!(o.topics["news"].subs[&bob].attempt, 2, "counts on");
        let wait = retry_timer(&out).expect("backs off again");
        assert!(wait >= BACKOFF.base_ms, "at the kept level: {wait} ms");
        out.clear();
        assert!(o.resume("news", &bob, 0, &streams, 3_200, &mut b, &mut out));
        assert!(
            sends(&out).is_empty(),
            "a second Resume skipped the backoff: {out:?}"
        );
        assert!(!out.iter().any(|e| matches!(e, Effect::CancelTimer(_))));
        // The retry goes when its time comes, and counts on from there.
        out.clear();
        o.on_timer(
            Timer::Retry {
                topic: "news".into(),
                node: bob.clone(),
            },
            &streams,
            3_100 + wait,
            &mut out,
        );
        let ctx = sends(&out).pop().expect("the retry");
        out.clear();
        o.on_failed(ctx, None, "timeout", &mut rng, 5_100 + wait, &mut out);
        assert_eq!(o.topics["news"].subs[&bob].attempt, 3);
        // A subscriber we are not backing off from is sent to at once.
        let (mut o, streams, bob) = one_sub();
        let mut out = Vec::new();
        assert!(o.resume("news", &bob, 0, &streams, 1_000, &mut b, &mut out));
        assert_eq!(sends(&out).len(), 1);
    }
    /// Deliveries to `bob`, who never answers (each `Deliver` times out after 2 s), over
    /// `ms` of virtual time; with `resume_every`, bob also sends a `Resume` that often.
    /// Returns the `Deliver`s sent and the early ones among them; at most one is ever in
    /// flight.
    fn deliveries_to_a_dead_subscriber(ms: Millis, resume_every: Option<Millis>) -> (u64, u64) {
        let (mut o, streams, bob) = one_sub();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut b = Batch::lazy();
        let mut timer: Option<Millis> = None;
        let mut flight: Option<(Ctx, Millis)> = None;
        let mut sent = 0;
        let mut apply = |out: &mut Vec<Eff>,
                         t: Millis,
                         timer: &mut Option<Millis>,
                         flight: &mut Option<(Ctx, Millis)>| {
            for e in out.drain(..) {
                match e {
                    Effect::SetTimer { after_ms, .. } => *timer = Some(t + after_ms),
                    Effect::CancelTimer(_) => *timer = None,
                    Effect::Send {
                        expect: Some(x), ..
                    } => {
                        assert!(flight.is_none(), "two in flight at {t}");
                        *flight = Some((x.ctx, t + 2_000));
                        sent += 1;
                    }
                    _ => {}
                }
            }
        };
        let mut out = Vec::new();
        o.pump("news", &bob, &streams, 0, &mut out);
        apply(&mut out, 0, &mut timer, &mut flight);
        for t in (100..=ms).step_by(100) {
            if flight.as_ref().is_some_and(|(_, at)| *at <= t) {
                let (ctx, _) = flight.take().unwrap();
                o.on_failed(ctx, None, "timeout", &mut rng, t, &mut out);
                apply(&mut out, t, &mut timer, &mut flight);
            }
            if timer.is_some_and(|at| at <= t) {
                timer = None;
                let retry = Timer::Retry {
                    topic: "news".into(),
                    node: bob.clone(),
                };
                o.on_timer(retry, &streams, t, &mut out);
                apply(&mut out, t, &mut timer, &mut flight);
            }
            if resume_every.is_some_and(|every| t % every == 0) {
                assert!(o.resume("news", &bob, 0, &streams, t, &mut b, &mut out));
                apply(&mut out, t, &mut timer, &mut flight);
            }
        }
        (sent, o.early_sent)
    }

    /// A flood of `Resume`s (one every 200 ms for 10 minutes) from a subscriber that never
    /// answers adds at most one `Deliver` per RESUME_EARLY_GAP_MS to what the backoff
    /// sends: the retries do not get hot. Fails if a Resume resets the backoff's level or
    /// if the early attempts are not bounded per node.
    #[test]
    fn a_resume_flood_adds_at_most_one_attempt_per_gap() {
        let ms = 600_000;
        let (base, none) = deliveries_to_a_dead_subscriber(ms, None);
        let (flood, early) = deliveries_to_a_dead_subscriber(ms, Some(200));
        println!(
            "Delivers in 10 min: {base} without Resumes, {flood} under the flood ({early} early)"
        );
        assert_eq!(none, 0);
        let bound = ms / RESUME_EARLY_GAP_MS + 1;
        assert!(early >= 1 && early <= bound, "{early} early attempts");
        assert!(
            flood <= base + bound,
            "{flood} Delivers under the flood, {base} without (bound +{bound})"
        );
        // And well below one per Resume, or per timeout.
        assert!(flood < ms / 2_000 / 4, "{flood} Delivers");
    }
    /// Each subscription gets a higher number than the ones before (what "longest
    /// subscribed" means to the roster), kept on disk: after a restore, old ones keep
    /// theirs and a new one comes after them; subscribing again keeps the number.
    #[test]
    fn subscriptions_are_numbered_in_order_across_a_restore() {
        let (mut o, _streams, bob) = one_sub();
        let carol: NodeId = "carol.os".parse().unwrap();
        let dave: NodeId = "dave.os".parse().unwrap();
        let mut b = Batch::forced();
        o.subscribe("news", &carol, 0, &mut b);
        let (sb, sc) = (
            o.since("news", &bob).unwrap(),
            o.since("news", &carol).unwrap(),
        );
        assert!(sb < sc);
        o.subscribe("news", &bob, 0, &mut b);
        assert_eq!(o.since("news", &bob), Some(sb), "again: kept");
        // Everything written so far, as a restart finds it.
        let mut records = Records::new();
        let mut o0 = Outbox::new("alice.os".parse().unwrap(), Retention::default());
        let mut all = Batch::forced();
        o0.set_topic(
            "news",
            "alice.os@app:app:x.os".into(),
            Policy::Open,
            &mut all,
        );
        o0.subscribe("news", &bob, 0, &mut all);
        o0.subscribe("news", &carol, 0, &mut all);
        for (k, v) in all.ops {
            if let Some(v) = v {
                records.insert(k, v);
            }
        }
        let mut r = Outbox::new("alice.os".parse().unwrap(), Retention::default());
        assert_eq!(r.restore(&records), 0);
        let (rb, rc) = (
            r.since("news", &bob).unwrap(),
            r.since("news", &carol).unwrap(),
        );
        assert!(rb < rc);
        r.subscribe("news", &dave, 0, &mut b);
        assert!(r.since("news", &dave).unwrap() > rc);
    }
    /// Review 13d: a subscriber that alternates `Resume { up_to: 0 }` and `Resume { up_to:
    /// last }` (600 in 60 s) gets its mark lowered once per RESUME_EARLY_GAP_MS: two
    /// writes and one log line, not one per message.
    #[test]
    fn a_resume_seesaw_lowers_the_mark_once_per_gap() {
        let (mut o, streams, bob) = one_sub();
        let mut b = Batch::lazy();
        let mut out = Vec::new();
        let mut b0 = Batch::lazy();
        o.on_delivered(
            Ctx::Deliver {
                topic: "news".into(),
                node: bob.clone(),
                up_to: 1,
                sent_at: 0,
            },
            1,
            &streams,
            0,
            &mut b0,
            &mut out,
        );
        assert_eq!(o.topics["news"].subs[&bob].acked, 1);
        out.clear();
        for i in 0..600u64 {
            let up_to = if i % 2 == 0 { 0 } else { 1 };
            assert!(o.resume(
                "news",
                &bob,
                up_to,
                &streams,
                1_000 + i * 100,
                &mut b,
                &mut out
            ));
        }
        let writes = b.ops.len();
        let logs = out
            .iter()
            .filter(|e| matches!(e, Effect::Log { .. }))
            .count();
        assert_eq!(o.lowered, 2, "{} refused", o.lowering_refused);
        assert!(writes <= 2, "{writes} writes");
        assert!(logs <= 2, "{logs} log lines");
        // An honest one, once: its mark goes down and the rest is sent again.
        let (mut o, streams, bob) = one_sub();
        o.on_delivered(
            Ctx::Deliver {
                topic: "news".into(),
                node: bob.clone(),
                up_to: 1,
                sent_at: 0,
            },
            1,
            &streams,
            0,
            &mut b0,
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        assert!(o.resume("news", &bob, 0, &streams, 1_000, &mut b, &mut out));
        assert_eq!(o.topics["news"].subs[&bob].acked, 0);
        assert_eq!(sends(&out).len(), 1, "the rest again");
    }

    /// A subscriber's `delivered` counts each number once (review 13e): whatever it says in
    /// its `Resume`s (what it has, less after restoring older storage, more than it
    /// acknowledged, up to our `last`), and however its answers and failures interleave
    /// with them, what it is counted as having received (`delivered`, plus what it was told
    /// it lost) never exceeds the highest number it holds. Random runs of publishes,
    /// `Resume`s, answers, failures and retry timers; fails if `on_delivered` counts from
    /// the mark a `Resume` lowered rather than from the highest acknowledged.
    #[test]
    fn delivered_counts_each_number_once_whatever_the_resumes() {
        use rand::Rng;
        for seed in 0..200u64 {
            let me: NodeId = "alice.os".parse().unwrap();
            let bob: NodeId = "bob.os".parse().unwrap();
            let mut o = Outbox::new(me.clone(), Retention::default());
            let mut streams = Streams::new();
            let mut b = Batch::forced();
            o.set_topic("news", "alice.os@app:app:x.os".into(), Policy::Open, &mut b);
            let k = StreamKey::new(&me, "news");
            streams.ensure(&k, 0, false, &mut b);
            o.subscribe("news", &bob, 0, &mut b);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            // Sends out, answered or failed in order; the highest number bob holds.
            let (mut held, mut has, mut now) = (Vec::<Ctx>::new(), 0u64, 0);
            let mut trace = Vec::new();
            for _ in 0..200 {
                now += rng.gen_range(0..40_000);
                let last = streams.get(&k).map_or(0, |s| s.last);
                let mut out = Vec::new();
                match rng.gen_range(0..5) {
                    0 => {
                        let seq = last + 1;
                        let note = Notification {
                            id: k.note_id(seq),
                            publisher: me.clone(),
                            topic: "news".into(),
                            seq,
                            at: 0,
                            kind: PayloadKind::Blob,
                            size: 1,
                            signature: vec![0; 64],
                        };
                        streams.append(&k, note, vec![7], 0, &mut b);
                        o.pump("news", &bob, &streams, now, &mut out);
                        trace.push(format!("publish {seq}"));
                    }
                    1 => {
                        let up = if rng.gen_bool(0.5) {
                            has
                        } else {
                            rng.gen_range(0..=last)
                        };
                        o.resume("news", &bob, up, &streams, now, &mut b, &mut out);
                        trace.push(format!("Resume {up} (holds {has})"));
                    }
                    2 if !held.is_empty() => {
                        let ctx = held.remove(0);
                        if let Ctx::Deliver { up_to, .. } = &ctx {
                            has = has.max(*up_to);
                        }
                        trace.push(format!("Delivered {has} to {ctx:?}"));
                        o.on_delivered(ctx, has, &streams, now, &mut b, &mut out);
                    }
                    3 if !held.is_empty() => {
                        let ctx = held.remove(0);
                        trace.push(format!("failed {ctx:?}"));
                        o.on_failed(ctx, None, "timeout", &mut rng, now, &mut out);
                    }
                    _ => {
                        let retry = Timer::Retry {
                            topic: "news".into(),
                            node: bob.clone(),
                        };
                        o.on_timer(retry, &streams, now, &mut out);
                        trace.push("retry timer".into());
                    }
                }
                held.extend(sends(&out));
                let st = &o.topics["news"].subs[&bob].stats;
                assert!(
                    st.delivered + st.dropped_by_retention <= has,
                    "seed {seed}: delivered {} for {has} numbers held: {trace:#?}",
                    st.delivered
                );
            }
        }
    }
}
