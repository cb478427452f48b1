//! Pure core of `notify`: topics of our node that local apps publish to, local apps'
//! subscriptions to topics on any node, and durable delivery between nodes with
//! acknowledgement, retry, dedup, order and retention. See docs/notify.md.
//!
//! The core is small: it checks who may do what and routes each input to the sub-machine
//! it belongs to, which owns its state, timers and contexts:
//! - [`crate::streams`]: what this node holds of each (publisher, topic), dedup and order;
//! - [`crate::outbox`]: our topics, their subscriber nodes and the direct delivery to them;
//! - [`crate::relay`]: the relay tree of large topics (ours as the root, others' as a
//!   member): pushes to tree children, announcements, graft and prune;
//! - [`crate::apps`]: local apps' subscriptions, cursors and the delivery to them.
//! - [`crate::catchup`]: a subscriber behind what its publisher said it has asks again.
//! - [`crate::liveness`]: what our node's presence says of our subscriber nodes (the
//!   order of our rosters, and whose retries pause).

use crate::apps::{self, Apps};
use crate::catchup::{self, Catchup};
use crate::liveness::{self, Liveness, Status};
use crate::outbox::{self, Outbox};
use crate::relay::{self, Relays};
use crate::streams::{Retention, StreamKey, Streams};
use crate::withhold::Withhold;
use p2p_common::api::notify::{
    split_payloads, Notification, NotifyStats, PayloadKind, Request, Response, Roster, SeqRange,
    TopicRetention, TopicStats, DEFAULT_PAGE, MAX_BATCH, MAX_BODY, MAX_FANOUT,
    MAX_LOCAL_SUBSCRIPTIONS, MAX_PAGE_BYTES, MAX_PAYLOAD, MAX_SEQ, MAX_SUBSCRIBERS, MAX_TOPICS,
    PROCESS,
};
use p2p_common::api::{
    decode_request, encode, encode_result, try_decode_response, ApiError, ApiResult, ErrorCode,
};
use p2p_common::appreach::{Confirmations, HelloOutcome, Waiting};
use p2p_common::resilience::{BudgetConfig, SenderBudgets};
use p2p_common::service::log;
use p2p_common::sign::{sign_address, sign_body, verify_body, SignResponse};
use p2p_common::{
    Address, Batch, Effect, Expect, Input, Level, Millis, NodeId, Now, ProcessId, Records,
    RequestId, SendErrorKind, Service,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Timeout of a `PeerSubscribe` (seconds): well under an app's usual 10 s.
const PEER_SUBSCRIBE_TIMEOUT_S: u64 = 5;
/// How often retention runs over every stream.
const PRUNE_EVERY_MS: Millis = 60_000;
/// Messages per second one remote node may have us handle, and the burst above that.
const INBOUND_PER_SECOND: u32 = 50;
const INBOUND_BURST: u32 = 500;
/// Timeout of a request to `sign:sign:sys` (seconds).
const SIGN_TIMEOUT_S: u64 = 5;
/// Publishes of one topic being signed at once.
const MAX_PUBLISHING: usize = 64;
/// Batches whose signatures are checked at once.
const MAX_VERIFYING: usize = 64;
/// Of those, batches from one sending node: one node cannot take every slot.
const MAX_VERIFYING_PER_SENDER: usize = 16;
/// How long a signed publish waits before looking again whether it is first in line.
const PUBLISH_WAIT_MS: Millis = 20;
/// How long after a change of a large topic's subscribers its roster is signed again (the
/// changes of that time share one).
const ROSTER_AFTER_MS: Millis = 2_000;
/// A relay of our tree that presence reports dead or gone makes us sign a new roster (it
/// goes to the leaves), at most once per this time per topic, so a flapping node cannot
/// make us sign (and the tree reshape) more often.
pub const LIVENESS_ROSTER_GAP_MS: Millis = 10_000;
/// Liveness-driven roster signings of all our topics together are at least this far
/// apart (one slot each, node-wide).
pub const LIVENESS_NODE_GAP_MS: Millis = 2_000;
/// Timeout of a `Ping` that checks presence's word that a node is dead (seconds).
const LIVE_CHECK_TIMEOUT_S: u64 = 4;
/// A check of presence's word that a node is dead or gone sends it `Ping`s (one in
/// flight), 1..2 s apart after a failure, while presence still says so; the death is
/// taken only once at least `LIVE_CHECK_TRIES` failed and the node's notify sent us
/// nothing for [`LIVE_SILENCE_MS`] (doubled per strike) while we pinged it. One lost
/// packet under loss must not demote a live relay (review 13d), nor three at 20% loss
/// (review 13e: a member that gossips again and again gets as many checks).
pub const LIVE_CHECK_TRIES: u32 = 3;
const LIVE_CHECK_GAP_MS: Millis = 1_000;
/// The silence a death needs: nothing from the node's notify for this long, counted from
/// its last message or the check's start, whichever is later (so the check's own `Ping`s
/// cover it). Each check the node answered while presence said it was dead (a strike,
/// fading one per [`liveness::STRIKE_DECAY_MS`]) doubles it, at most
/// [`LIVE_MAX_STRIKES`] times.
pub const LIVE_SILENCE_MS: Millis = 30_000;
pub const LIVE_MAX_STRIKES: u32 = 2;
/// Checks at once, node-wide; further deaths wait in line (at most the tracked nodes).
pub const LIVE_MAX_CHECKS: usize = 32;
/// New checks node-wide: a token bucket of this burst, one token per this time, so a
/// member that gossips that thousands of our subscribers are dead costs a bounded rate of
/// `Ping`s.
pub const LIVE_CHECK_BURST: u32 = 16;
pub const LIVE_CHECK_EVERY_MS: Millis = 500;
/// Subscriber nodes from which a topic relays through a tree instead of direct fan-out.
pub const TREE_THRESHOLD: usize = 32;
/// Children per node in a relay tree.
pub const FANOUT: u32 = 8;

/// notify's timers: each sub-machine's, wrapped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    Out(outbox::Timer),
    App(apps::Timer),
    Relay(relay::Timer),
    Catchup(catchup::Timer),
    Live(liveness::Timer),
    Prune,
    /// Sign a new roster of our `topic`.
    Roster {
        topic: String,
    },
    /// A signed publish waits for the ones before it.
    PublishWait {
        topic: String,
        token: u64,
    },
    /// The next `Ping` of our check `check` of `node` (presence reports it dead).
    LiveCheck {
        node: NodeId,
        check: u64,
    },
    /// Check `node` again: it answered our last check, and presence still says it is dead
    /// (presence repeats no event, so nothing else would).
    LiveRecheck {
        node: NodeId,
    },
    /// Start the checks waiting for a token.
    LiveQueue,
}

/// notify's request contexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    Out(outbox::Ctx),
    App(apps::Ctx),
    Relay(relay::Ctx),
    Live(liveness::Ctx),
    /// A `Ping` to `node`'s notify, which our presence reports dead or gone: only if it
    /// fails do we take that word (presence's may be another member's gossip).
    LiveCheck {
        node: NodeId,
        ping: u64,
    },
    /// NetKeySign of a roster of ours.
    SignRoster {
        roster: Roster,
    },
    /// The welcome of a subscription being confirmed.
    Hello {
        token: u64,
    },
    /// NetKeySign of publish `token` of `topic` under number `seq`.
    Sign {
        topic: String,
        token: u64,
        seq: u64,
    },
    /// NetKeyVerify of note `index` of batch `token`.
    Verify {
        token: u64,
        index: usize,
    },
    /// A `Resume` of stream `stream` to its publisher (refused: we were dropped), or, with
    /// `graft`, a restart's `Graft` to our tree parent.
    Resume {
        stream: StreamKey,
        graft: bool,
    },
    /// A `PeerSubscribe` made for a local app's `Subscribe` (answered when it returns).
    PeerSubscribe {
        request: RequestId,
        app: Address,
        stream: StreamKey,
    },
}

type Eff = Effect<Ctx, Tick>;

/// Settings of the node (a topic of ours may set its own retention over the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// What streams keep: other nodes' topics, and ours without settings of their own.
    pub retention: Retention,
    /// A topic with at least this many subscriber nodes relays through a tree; once it
    /// does, it keeps a roster (a tree of at most `fanout` members is direct fan-out).
    pub tree_threshold: usize,
    /// Children per node of the tree (2..=16).
    pub fanout: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention: Retention::default(),
            tree_threshold: TREE_THRESHOLD,
            fanout: FANOUT,
        }
    }
}

pub struct Notify {
    our: Address,
    me: NodeId,
    cfg: Config,
    streams: Streams,
    outbox: Outbox,
    relays: Relays,
    apps: Apps,
    catchup: Catchup,
    liveness: Liveness,
    /// When each of our topics' roster was last sent to be signed.
    roster_signed_at: BTreeMap<String, Millis>,
    /// The next node-wide slot for a liveness-driven roster signing.
    liveness_slot: Millis,
    /// Nodes whose death presence reported and we are checking with `Ping`s (at most
    /// [`LIVE_MAX_CHECKS`]).
    checking: BTreeMap<NodeId, Check>,
    /// Deaths waiting for a check (a slot or a token), in order (at most the tracked
    /// nodes: `queued` holds who is in it): relays of our trees first
    /// (`check_relays`), so silent leaves (cheap Sybils of an open topic) cannot delay the
    /// death of a relay.
    check_relays: VecDeque<NodeId>,
    check_queue: VecDeque<NodeId>,
    /// The check `Ping` in flight to each node (one at most, also after its check ended:
    /// a new check waits on it rather than sending another).
    live_pings: BTreeMap<NodeId, u64>,
    /// Numbers of checks and of their `Ping`s.
    live_seq: u64,
    queued: BTreeSet<NodeId>,
    /// The check starts' token bucket: tokens, as of when.
    check_tokens: (u32, Millis),
    /// Whether a timer to start waiting checks is set.
    check_timer: bool,
    /// Deaths presence reported of nodes that answered our check (ignored).
    pub hearsay_ignored: u64,
    /// Deaths presence reported that our check confirmed (taken).
    pub deaths_taken: u64,
    /// Tree children of ours whose children keep lacking what they acknowledged to us
    /// (they withhold pushes): demoted to the leaves for a while.
    withhold: Withhold,
    /// Our topics whose roster is due to be signed again.
    roster_due: BTreeSet<String>,
    /// Our topics a member of whose roster left since it was signed: the next roster is
    /// signed even with the same members (a member that left and came back forgot the
    /// tree, and takes only a newer roster than the one it left).
    roster_left: BTreeSet<String>,
    /// Subscriptions waiting for their welcome's outcome, by (app, stream).
    hellos: Confirmations<(Address, StreamKey)>,
    budgets: SenderBudgets,
    rng: ChaCha8Rng,
    wall: Millis,
    /// Copies of notifications we already had.
    pub duplicates_suppressed: u64,
    /// Protocol messages (or notes in them) refused.
    pub refused: u64,
    /// Batches with a note whose signature did not verify.
    pub signature_failures: u64,
    /// Batches whose publisher said a range is lost beyond what it sends.
    bad_lost: u64,
    /// Publishes being signed, per topic, in arrival order.
    publishing: BTreeMap<String, VecDeque<Publishing>>,
    /// Batches whose signatures are being checked.
    verifying: BTreeMap<u64, Verifying>,
    next_token: u64,
    /// Messages to and from each other node since start (for `Health`).
    traffic: p2p_common::resilience::Traffic,
}

/// Our check of a death presence reported.
#[derive(Debug, Clone, Copy)]
struct Check {
    /// Its number (a timer of an earlier check of the node is not this one's).
    id: u64,
    started: Millis,
    /// `Ping`s of it that failed (the one in flight is number `failed`).
    failed: u32,
}

/// A publish waiting for its signature.
#[derive(Debug)]
struct Publishing {
    token: u64,
    request: RequestId,
    kind: PayloadKind,
    payload: Vec<u8>,
    at: Millis,
    /// The number it was signed under, and the signature.
    signed: Option<(u64, Vec<u8>)>,
}

/// A batch whose signatures are being checked.
#[derive(Debug)]
struct Verifying {
    request: RequestId,
    /// The node that sent it (the publisher or a relay).
    from: NodeId,
    stream: StreamKey,
    /// A roster to take if its signature holds (its check is the last of `checked`).
    roster: Option<Roster>,
    lost: Option<SeqRange>,
    /// How far the publisher said its stream reaches.
    told: Option<u64>,
    notes: Vec<(Notification, Vec<u8>)>,
    checked: Vec<Option<bool>>,
}

/// A `Deliver` as taken: stream, lost range, notes, roster, the publisher's `last` when it
/// counts for catching up, and the sender's `last` as sent.
type Delivery = (
    StreamKey,
    Option<SeqRange>,
    Vec<Notification>,
    Option<Roster>,
    Option<u64>,
    Option<u64>,
);

pub fn new(our: Address) -> Notify {
    Notify::new(our, Config::default())
}

/// Wrap a sub-machine's effect into the core's types.
fn lift<C, T>(e: Effect<C, T>, fc: fn(C) -> Ctx, ft: fn(T) -> Tick) -> Eff {
    match e {
        Effect::Send {
            to,
            body,
            blob,
            expect,
        } => Effect::Send {
            to,
            body,
            blob,
            expect: expect.map(|x| Expect {
                timeout_s: x.timeout_s,
                ctx: fc(x.ctx),
            }),
        },
        Effect::SetTimer { after_ms, timer } => Effect::SetTimer {
            after_ms,
            timer: ft(timer),
        },
        Effect::CancelTimer(t) => Effect::CancelTimer(ft(t)),
        Effect::Read { key, ctx } => Effect::Read { key, ctx: fc(ctx) },
        Effect::Reply { id, body, blob } => Effect::Reply { id, body, blob },
        Effect::Store(b) => Effect::Store(b),
        Effect::Persist { state } => Effect::Persist { state },
        Effect::HttpReply {
            id,
            status,
            headers,
            body,
        } => Effect::HttpReply {
            id,
            status,
            headers,
            body,
        },
        Effect::WsPush {
            channel,
            kind,
            data,
        } => Effect::WsPush {
            channel,
            kind,
            data,
        },
        Effect::BindHttp {
            path,
            authenticated,
        } => Effect::BindHttp {
            path,
            authenticated,
        },
        Effect::BindWs {
            path,
            authenticated,
        } => Effect::BindWs {
            path,
            authenticated,
        },
        Effect::Log { level, message } => Effect::Log { level, message },
    }
}

fn push_store(out: &mut Vec<Eff>, b: Batch) {
    if !b.ops.is_empty() {
        out.push(Effect::Store(b));
    }
}

impl Notify {
    pub fn new(our: Address, cfg: Config) -> Self {
        let me = our.node.clone();
        Notify {
            liveness: Liveness::new(me.clone()),
            outbox: Outbox::new(me.clone(), cfg.retention),
            relays: Relays::new(me.clone()),
            roster_due: BTreeSet::new(),
            roster_left: BTreeSet::new(),
            cfg: Config {
                fanout: cfg.fanout.clamp(2, MAX_FANOUT),
                ..cfg
            },
            me,
            our,
            streams: Streams::new(),
            apps: Apps::default(),
            catchup: Catchup::default(),
            roster_signed_at: BTreeMap::new(),
            liveness_slot: 0,
            checking: BTreeMap::new(),
            check_relays: VecDeque::new(),
            check_queue: VecDeque::new(),
            live_pings: BTreeMap::new(),
            live_seq: 0,
            queued: BTreeSet::new(),
            check_tokens: (LIVE_CHECK_BURST, 0),
            check_timer: false,
            hearsay_ignored: 0,
            deaths_taken: 0,
            withhold: Withhold::default(),
            hellos: Confirmations::new(256),
            budgets: SenderBudgets::new(BudgetConfig {
                per_second: INBOUND_PER_SECOND,
                burst: INBOUND_BURST,
                max_senders: 4_096,
            }),
            rng: ChaCha8Rng::seed_from_u64(0),
            wall: 0,
            duplicates_suppressed: 0,
            refused: 0,
            signature_failures: 0,
            bad_lost: 0,
            publishing: BTreeMap::new(),
            verifying: BTreeMap::new(),
            next_token: 0,
            traffic: Default::default(),
        }
    }

    pub fn streams(&self) -> &Streams {
        &self.streams
    }
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    pub fn apps(&self) -> &Apps {
        &self.apps
    }
    pub fn relays(&self) -> &Relays {
        &self.relays
    }
    /// Checks of presence's word on deaths in flight or waiting in line.
    pub fn live_checks(&self) -> usize {
        self.checking.len() + self.check_relays.len() + self.check_queue.len()
    }
    /// What our presence said of our subscriber nodes.
    /// Relays of our trees demoted for withholding pushes (`demotions` counts them).
    pub fn withhold(&self) -> &Withhold {
        &self.withhold
    }

    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    /// The `Health` answer: reachability from our deliveries, the outbox's breakers,
    /// messages per peer.
    pub fn health(&self, now: Millis) -> p2p_common::resilience::HealthReport {
        p2p_common::resilience::health::report(
            &self.me,
            now,
            self.outbox.reachability(),
            Some(self.outbox.breakers()),
            &self.traffic,
            p2p_common::resilience::health::MAX_HEALTH_PEERS,
        )
    }

    pub fn stats(&self) -> NotifyStats {
        let mut topics = self.outbox.stats(&self.streams);
        for t in &mut topics {
            self.tree_topic_stats(t);
        }
        NotifyStats {
            topics,
            next_cursor: None,
            ..self.node_stats()
        }
    }

    /// The node-level part of `Stats` (in full on every page), with no topics.
    fn node_stats(&self) -> NotifyStats {
        use p2p_common::api::notify::PresenceSubscription as P;
        NotifyStats {
            topics: Vec::new(),
            subscriptions: self.apps.stats(&self.streams),
            duplicates_suppressed: self.duplicates_suppressed,
            refused: self.refused,
            relays: self.relays.stats(),
            next_cursor: None,
            hearsay_ignored: self.hearsay_ignored,
            deaths_taken: self.deaths_taken,
            paused_nodes: self.outbox.paused_nodes(),
            early_sends: self.outbox.early_sent,
            presence: match self.liveness.sub {
                liveness::Sub::Idle => P::Idle,
                liveness::Sub::Asking => P::Asking,
                liveness::Sub::Waiting => P::Waiting,
                liveness::Sub::Subscribed => P::Subscribed,
            },
            presence_gaps: self.liveness.gaps,
            demotions: self.withhold.demotions,
        }
    }

    /// One page of our topics by name, after `cursor`: at most `limit` and
    /// [`MAX_PAGE_BYTES`] of them (at least one), and the cursor of the next page.
    fn page<T: serde::Serialize>(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
        item: impl Fn(&str) -> Option<T>,
    ) -> (Vec<T>, Option<String>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let limit = limit.unwrap_or(DEFAULT_PAGE) as usize;
        let from = cursor.map_or(Unbounded, |c| Excluded(c.to_string()));
        let (mut page, mut bytes, mut next) = (Vec::new(), 0usize, None);
        let mut last: Option<&String> = None;
        for name in self
            .outbox
            .topics
            .range::<String, _>((from, Unbounded))
            .map(|(n, _)| n)
        {
            let Some(v) = item(name) else { continue };
            let size = serde_json::to_vec(&v).map_or(0, |b| b.len());
            if page.len() >= limit || (!page.is_empty() && bytes + size > MAX_PAGE_BYTES) {
                next = last.cloned();
                break;
            }
            bytes += size;
            page.push(v);
            last = Some(name);
        }
        (page, next)
    }

    /// `Stats` as answered: our topics a page at a time, the rest in full.
    pub fn stats_page(&self, cursor: Option<&str>, limit: Option<u32>) -> NotifyStats {
        let (topics, next_cursor) = self.page(cursor, limit, |name| {
            let mut t = self.outbox.topic_stats(name, &self.streams)?;
            self.tree_topic_stats(&mut t);
            Some(t)
        });
        NotifyStats {
            topics,
            next_cursor,
            ..self.node_stats()
        }
    }

    /// Add what the root of our topic's relay tree counted to the topic's (direct fan-out)
    /// stats: its copies (`relay_payloads`, part of `sent`), failures and announcements,
    /// and per member it pushes to (tree children, grafted links) that link's
    /// acknowledgements. Deeper members acknowledge to their tree parents, so the
    /// publisher does not know their `acked`: they are not listed (each relay's `relays`
    /// stats tell its part).
    fn tree_topic_stats(&self, ts: &mut TopicStats) {
        let k = StreamKey::new(&self.me, &ts.topic);
        let Some(tree) = self.relays.get(&k) else {
            return;
        };
        let last = self.streams.get(&k).map_or(0, |s| s.last);
        ts.relay_payloads = tree.stats.payloads;
        ts.announcements = tree.stats.announcements;
        ts.sent += tree.stats.payloads;
        ts.failed += tree.failed;
        ts.subscribers.retain_mut(|s| {
            if !tree.roster.contains(&s.node) {
                return true;
            }
            let Some(l) = tree.links.get(&s.node) else {
                return false;
            };
            s.acked = s.acked.max(l.acked.unwrap_or(0));
            s.sent += l.sent;
            s.failed += l.failed;
            s.delivered += l.delivered;
            s.pending = last.saturating_sub(s.acked);
            true
        });
        ts.delivered += tree.delivered_gone + tree.links.values().map(|l| l.delivered).sum::<u64>();
        ts.pending = ts.subscribers.iter().map(|s| s.pending).sum();
    }

    fn lift_out(v: Vec<Effect<outbox::Ctx, outbox::Timer>>, out: &mut Vec<Eff>) {
        out.extend(v.into_iter().map(|e| lift(e, Ctx::Out, Tick::Out)));
    }
    fn lift_app(v: Vec<Effect<apps::Ctx, apps::Timer>>, out: &mut Vec<Eff>) {
        out.extend(v.into_iter().map(|e| lift(e, Ctx::App, Tick::App)));
    }
    fn lift_relay(v: Vec<Effect<relay::Ctx, relay::Timer>>, out: &mut Vec<Eff>) {
        out.extend(v.into_iter().map(|e| lift(e, Ctx::Relay, Tick::Relay)));
    }
    fn lift_catchup(v: Vec<Effect<catchup::Ctx, catchup::Timer>>, out: &mut Vec<Eff>) {
        fn resume(c: catchup::Ctx) -> Ctx {
            let catchup::Ctx::Resume { stream, graft } = c;
            Ctx::Resume { stream, graft }
        }
        out.extend(v.into_iter().map(|e| lift(e, resume, Tick::Catchup)));
    }
    fn lift_live(v: Vec<Effect<liveness::Ctx, liveness::Timer>>, out: &mut Vec<Eff>) {
        out.extend(v.into_iter().map(|e| lift(e, Ctx::Live, Tick::Live)));
    }

    /// A message from our node's presence: its subscription's welcome, an event, or the
    /// end of the subscription. Answered at once when it expects an answer (presence takes
    /// any). After `Dropped` the view forgets every node: the events presence sends while
    /// we are not subscribed never come (a node back in that time would stay dead to us,
    /// its retries paused), so until presence speaks of a node again we know nothing of it.
    fn on_presence(
        &mut self,
        id: RequestId,
        msg: p2p_common::api::presence::SubscriberMessage,
        expects_response: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        if expects_response {
            out.push(Effect::reply(
                id,
                encode_result::<Response>(&Ok(Response::Accepted {})),
            ));
        }
        if matches!(
            msg,
            p2p_common::api::presence::SubscriberMessage::Dropped { .. }
        ) {
            let known: Vec<NodeId> = self.liveness.views.keys().cloned().collect();
            for n in known {
                self.forget_liveness(&n, now, out);
            }
        }
        let topics = &self.outbox.topics;
        let track = |n: &NodeId| topics.values().any(|t| t.subs.contains_key(n));
        let mut l = Vec::new();
        let change = self.liveness.on_message(msg, &track, now, &mut l);
        Self::lift_live(l, out);
        if let Some(e) = self.liveness.evicted.take() {
            self.forget_liveness(&e, now, out);
        }
        let Some(c) = change else {
            return;
        };
        out.push(log(
            Level::Debug,
            format!("presence: {} is {:?} (was {:?})", c.node, c.after, c.before),
        ));
        // What the outbox holds, not the view's `before` (the view may have dropped it).
        let (was_down, down) = (self.outbox.is_down(&c.node), Status::is_down(Some(c.after)));
        if was_down == down {
            return;
        }
        if !down {
            // Back: its retries go at once (the breaker still paces them).
            let mut o = Vec::new();
            self.outbox
                .set_down(&c.node, false, &self.streams, now, &mut o);
            Self::lift_out(o, out);
            return;
        }
        // Presence's `Dead` may be any member's gossip: check it ourselves first.
        self.queue_check(c.node, now, out);
    }

    /// Line `node` up for a check of presence's word that it is dead (relays of our trees
    /// before the others), unless one is running or waiting.
    fn queue_check(&mut self, node: NodeId, now: Millis, out: &mut Vec<Eff>) {
        if !self.checking.contains_key(&node) && self.queued.insert(node.clone()) {
            if self.relays_for_us(&node) {
                self.check_relays.push_back(node);
            } else {
                self.check_queue.push_back(node);
            }
        }
        self.pump_checks(now, out);
    }

    /// Whether `node` is an interior member (a relay) of one of our topics' trees.
    fn relays_for_us(&self, node: &NodeId) -> bool {
        self.outbox
            .topics
            .iter()
            .filter(|(_, t)| t.subs.contains_key(node))
            .any(|(topic, _)| {
                self.relays
                    .get(&StreamKey::new(&self.me, topic))
                    .is_some_and(|t| !t.roster.children(node).is_empty())
            })
    }

    /// Start the checks waiting in line while slots ([`LIVE_MAX_CHECKS`]) and tokens
    /// ([`LIVE_CHECK_BURST`], one per [`LIVE_CHECK_EVERY_MS`]) allow; set a timer for the
    /// next token if some still wait. A node no longer down (presence says it is back, or
    /// forgot it) or already taken is skipped.
    fn pump_checks(&mut self, now: Millis, out: &mut Vec<Eff>) {
        let (tokens, at) = self.check_tokens;
        let grown = now.saturating_sub(at) / LIVE_CHECK_EVERY_MS;
        let mut tokens = u64::from(tokens).saturating_add(grown);
        let mut at = at + grown * LIVE_CHECK_EVERY_MS;
        if tokens >= u64::from(LIVE_CHECK_BURST) {
            tokens = u64::from(LIVE_CHECK_BURST);
            at = now;
        }
        while self.checking.len() < LIVE_MAX_CHECKS && tokens > 0 {
            let Some(node) = self
                .check_relays
                .pop_front()
                .or_else(|| self.check_queue.pop_front())
            else {
                break;
            };
            self.queued.remove(&node);
            if self.checking.contains_key(&node)
                || !Status::is_down(self.liveness.status(&node))
                || self.outbox.is_down(&node)
            {
                continue;
            }
            tokens -= 1;
            self.live_seq += 1;
            self.checking.insert(
                node.clone(),
                Check {
                    id: self.live_seq,
                    started: now,
                    failed: 0,
                },
            );
            self.live_ping(node, out);
        }
        self.check_tokens = (u32::try_from(tokens).unwrap_or(LIVE_CHECK_BURST), at);
        if !(self.check_queue.is_empty() && self.check_relays.is_empty())
            && self.checking.len() < LIVE_MAX_CHECKS
            && !self.check_timer
        {
            self.check_timer = true;
            let wait = (at + LIVE_CHECK_EVERY_MS).saturating_sub(now).max(1);
            out.push(Effect::timer(wait, Tick::LiveQueue));
        }
    }

    /// The silence a death of `node` needs now: [`LIVE_SILENCE_MS`], doubled per strike.
    fn live_silence(&self, node: &NodeId, now: Millis) -> Millis {
        let strikes = Liveness::strikes_at(self.liveness.mark(node), now).min(LIVE_MAX_STRIKES);
        LIVE_SILENCE_MS << strikes
    }

    /// Send `node` the next `Ping` of our check, unless one of ours is still in flight to
    /// it (an earlier check's): then the check waits on that one.
    fn live_ping(&mut self, node: NodeId, out: &mut Vec<Eff>) {
        if self.live_pings.contains_key(&node) {
            return;
        }
        self.live_seq += 1;
        let ping = self.live_seq;
        self.live_pings.insert(node.clone(), ping);
        out.push(Effect::Send {
            to: address(&node),
            body: encode(&Request::Ping {}),
            blob: None,
            expect: Some(Expect {
                timeout_s: LIVE_CHECK_TIMEOUT_S,
                ctx: Ctx::LiveCheck { node, ping },
            }),
        });
    }

    /// Our check `Ping` `ping` to `node` is over (answered or failed): whether it was the
    /// one in flight.
    fn live_ping_over(&mut self, node: &NodeId, ping: u64) -> bool {
        if self.live_pings.get(node) == Some(&ping) {
            self.live_pings.remove(node);
            return true;
        }
        false
    }

    /// A `Ping` of our check of `node` failed: the check has failed once
    /// [`LIVE_CHECK_TRIES`] did and the node has been silent long enough
    /// ([`Self::live_silence`]); until then, while presence still says so, try again
    /// 1..2 s later.
    fn live_ping_failed(&mut self, node: NodeId, ping: u64, now: Millis, out: &mut Vec<Eff>) {
        if !self.live_ping_over(&node, ping) {
            return;
        }
        let Some(check) = self.checking.get_mut(&node) else {
            return;
        };
        check.failed += 1;
        let check = *check;
        let still = Status::is_down(self.liveness.status(&node));
        // Anything from its notify ends the check, so it has been silent since the start.
        let silent = now.saturating_sub(check.started) >= self.live_silence(&node, now);
        if still && (check.failed < LIVE_CHECK_TRIES || !silent) {
            let wait = LIVE_CHECK_GAP_MS + self.rng.gen_range(0..=LIVE_CHECK_GAP_MS);
            out.push(Effect::timer(
                wait,
                Tick::LiveCheck {
                    node,
                    check: check.id,
                },
            ));
            return;
        }
        self.live_checked(node, false, now, out);
    }

    /// A message from `from` (a request to us, or an answer): if we are checking its
    /// node's death, it is alive.
    fn heard_from(&mut self, from: &Address, now: Millis, out: &mut Vec<Eff>) {
        if from.process != ProcessId::ours(crate::NAME) || from.node == self.me {
            return;
        }
        if self.checking.contains_key(&from.node) {
            self.live_checked(from.node.clone(), true, now, out);
        }
    }

    /// Our check of a node presence reports dead: `answered` (it is not dead to us: the
    /// word is ignored), or failed (taken: its retries pause, and a tree of ours it relays
    /// for gets a new roster with it at the leaves).
    fn live_checked(&mut self, node: NodeId, answered: bool, now: Millis, out: &mut Vec<Eff>) {
        if self.checking.remove(&node).is_none() {
            return;
        }
        // A slot is free.
        self.pump_checks(now, out);
        let still = Status::is_down(self.liveness.status(&node));
        if answered || !still || !self.outbox.subscribes(&node) {
            if answered && still {
                // Its next check needs a longer silence, and comes after it: presence
                // repeats no event, so a later real death would otherwise go unchecked.
                self.liveness.struck(&node, now);
                out.push(Effect::timer(
                    self.live_silence(&node, now),
                    Tick::LiveRecheck { node: node.clone() },
                ));
                self.hearsay_ignored += 1;
                if self.hearsay_ignored.is_power_of_two() {
                    out.push(log(
                        Level::Info,
                        format!(
                            "presence reports {node} dead but it answered us; ignored ({} so far)",
                            self.hearsay_ignored
                        ),
                    ));
                }
            }
            return;
        }
        self.deaths_taken += 1;
        let mut o = Vec::new();
        self.outbox
            .set_down(&node, true, &self.streams, now, &mut o);
        Self::lift_out(o, out);
        let c = liveness::Change {
            node,
            before: None,
            after: Status::Dead,
        };
        // A relay of one of our trees died: the next roster puts it at the leaves.
        let topics: Vec<String> = self
            .outbox
            .topics
            .iter()
            .filter(|(_, t)| t.subs.contains_key(&c.node))
            .map(|(n, _)| n.clone())
            .collect();
        for topic in topics {
            let interior = self
                .relays
                .get(&StreamKey::new(&self.me, &topic))
                .is_some_and(|t| !t.roster.children(&c.node).is_empty());
            if interior {
                self.roster_changed_liveness(&topic, now, out);
            }
        }
    }

    /// Forget presence's word on `node` (it left the view, or subscribes to none of our
    /// topics any more): a paused outbox of it retries now.
    fn forget_liveness(&mut self, node: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        self.liveness.forget(node);
        self.checking.remove(node);
        if self.queued.remove(node) {
            self.check_queue.retain(|n| n != node);
            self.check_relays.retain(|n| n != node);
        }
        out.push(Effect::CancelTimer(Tick::LiveRecheck {
            node: node.clone(),
        }));
        let mut o = Vec::new();
        self.outbox
            .set_down(node, false, &self.streams, now, &mut o);
        self.outbox.forget_down(node);
        Self::lift_out(o, out);
        // Its check's slot, if it had one, is free.
        self.pump_checks(now, out);
    }

    /// `child`, a member of our `topic`'s tree, lacked numbers `from..=to` (it grafted onto
    /// us, or took them from us on a grafted link): evidence against its tree parent, which
    /// may demote it ([`Withhold`]); then the next roster puts it at the leaves, paced like
    /// a death.
    fn lacked(
        &mut self,
        topic: &str,
        child: &NodeId,
        from: u64,
        to: u64,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let k = StreamKey::new(&self.me, topic);
        let Some(tree) = self.relays.get(&k) else {
            return;
        };
        let last = self.streams.get(&k).map_or(0, |s| s.last);
        let acked = |n: &NodeId| tree.links.get(n).filter(|l| !l.grafted)?.acked;
        let demoted = self
            .withhold
            .lacked(&tree.roster, &acked, last, child, from, to, now);
        self.demoted(topic, demoted, now, out);
    }

    /// Our tree child `relay` of `topic` acknowledged a push of ours: the numbers its
    /// children lacked up to there it had.
    fn relay_acked(
        &mut self,
        topic: &str,
        relay: &NodeId,
        retry: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let k = StreamKey::new(&self.me, topic);
        let Some(tree) = self.relays.get(&k) else {
            return;
        };
        let Some(acked) = tree
            .links
            .get(relay)
            .filter(|l| !l.grafted)
            .and_then(|l| l.acked)
        else {
            return;
        };
        let last = self.streams.get(&k).map_or(0, |s| s.last);
        let demoted = self
            .withhold
            .relay_acked(&tree.roster, last, relay, acked, retry, now);
        self.demoted(topic, demoted, now, out);
    }

    /// `relay` (if any) was just demoted in `topic`: log it, sign a roster (paced).
    fn demoted(&mut self, topic: &str, relay: Option<NodeId>, now: Millis, out: &mut Vec<Eff>) {
        let Some(relay) = relay else {
            return;
        };
        let k = StreamKey::new(&self.me, topic);
        out.push(log(
            Level::Info,
            format!(
                "{k}: {relay} withholds pushes (most of its children keep lacking what it \
                 acknowledged, or it answers only pushes sent again); demoted to the leaves for {} s ({} demotions so far)",
                crate::withhold::DEMOTED_MS / 1_000,
                self.withhold.demotions
            ),
        ));
        self.roster_changed_liveness(topic, now, out);
    }

    /// Sign `topic`'s roster again after a liveness change: with the usual batching, and
    /// at most once per [`LIVENESS_ROSTER_GAP_MS`].
    fn roster_changed_liveness(&mut self, topic: &str, now: Millis, out: &mut Vec<Eff>) {
        if !self.roster_due.insert(topic.to_string()) {
            return;
        }
        let at = self
            .roster_signed_at
            .get(topic)
            .map_or(0, |t| t + LIVENESS_ROSTER_GAP_MS);
        // One node-wide slot per liveness-driven signing, whatever the topic.
        let slot = self.liveness_slot.max(now + ROSTER_AFTER_MS).max(at);
        self.liveness_slot = slot + LIVENESS_NODE_GAP_MS;
        let after = slot - now;
        out.push(Effect::timer(
            after,
            Tick::Roster {
                topic: topic.to_string(),
            },
        ));
    }

    /// What we say to resume remote stream `k` after a restart, and to whom: `Graft` to
    /// our tree parent (`graft`), or `Resume` to the publisher, which a tree member sends
    /// too: the publisher's refusal is how one it dropped learns it (None: we no longer
    /// subscribe, or have no parent to graft onto).
    fn restart_word(&self, k: &StreamKey, graft: bool) -> Option<(NodeId, Vec<u8>)> {
        let s = self.streams.get(k).filter(|s| s.remote)?;
        let parent = if graft {
            Some(self.relays.parent(k)?)
        } else {
            None
        };
        Some(match parent {
            Some(p) => (
                p,
                encode(&Request::Graft {
                    publisher: k.publisher.clone(),
                    topic: k.topic.clone(),
                    up_to: s.last,
                }),
            ),
            None => (
                k.publisher.clone(),
                encode(&Request::Resume {
                    topic: k.topic.clone(),
                    up_to: s.last,
                }),
            ),
        })
    }

    /// Our subscription to `k` was revoked by its publisher: take nothing more of it, and
    /// tell its apps once they have what we hold (see [`Apps::pump`]). False if we do not
    /// subscribe to `k`.
    fn revoked(&mut self, k: &StreamKey, reason: &str, now: Millis, out: &mut Vec<Eff>) -> bool {
        let mut cut = reason.len().min(p2p_common::api::notify::MAX_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut b = Batch::forced();
        if !self.streams.revoke(k, reason[..cut].to_string(), &mut b) {
            return false;
        }
        self.relays.remove(k, &mut b);
        self.catchup.remove(k);
        out.push(log(
            Level::Info,
            format!(
                "{k}: the publisher revoked our subscription: {}",
                &reason[..cut]
            ),
        ));
        if !self.apps.readers(k) {
            self.streams.remove(k, &mut b);
        }
        push_store(out, b);
        let mut a = Vec::new();
        self.apps.pump_stream(k, &self.streams, now, &mut a);
        Self::lift_app(a, out);
        true
    }

    /// A batch of `k` from its publisher, which says its stream reaches `told`, is
    /// answered: if we are still behind that, ask again soon (see [`crate::catchup`]).
    fn heard(&mut self, k: &StreamKey, told: Option<u64>, out: &mut Vec<Eff>) {
        let (Some(told), Some(s)) = (told, self.streams.get(k)) else {
            return;
        };
        let mut c = Vec::new();
        self.catchup.heard(k, told, s.last, &mut c);
        Self::lift_catchup(c, out);
    }

    fn pump_stream(&mut self, k: &StreamKey, now: Millis, out: &mut Vec<Eff>) {
        let mut o = Vec::new();
        if k.publisher == self.me {
            self.outbox.pump_topic(&k.topic, &self.streams, now, &mut o);
        }
        Self::lift_out(o, out);
        let mut r = Vec::new();
        self.relays.pump_all(k, &self.streams, now, &mut r);
        Self::lift_relay(r, out);
        let mut a = Vec::new();
        self.apps.pump_stream(k, &self.streams, now, &mut a);
        Self::lift_app(a, out);
    }

    /// Retention and clean-up of `k`: entries everyone has, or past their time, go.
    fn prune(&mut self, k: &StreamKey, batch: &mut Batch) {
        let readers = [
            self.apps.min_cursor(k),
            if k.publisher == self.me {
                self.outbox.min_acked(&k.topic)
            } else {
                None
            },
            self.relays.min_acked(k),
        ];
        let mut needed_after = readers.into_iter().flatten().min();
        if k.publisher == self.me && self.relays.get(k).is_some() {
            // The root of a tree keeps its whole retention window: any member may graft
            // onto it, and it alone may say a number is lost.
            needed_after = Some(0);
        }
        let ret = self.retention_of(k);
        self.streams.prune(k, needed_after, ret, self.wall, batch);
    }

    /// The retention of stream `k`: a topic of ours has its own settings; what we keep of
    /// other nodes' topics, the node's default.
    fn retention_of(&self, k: &StreamKey) -> Retention {
        if k.publisher == self.me {
            self.outbox.retention(&k.topic)
        } else {
            self.cfg.retention
        }
    }

    // ----- requests -----

    fn handle_request(
        &mut self,
        id: RequestId,
        from: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        // Presence's events and welcome expect an answer; its last word, `Dropped`, does not.
        if self.liveness.is_presence(&from) {
            if let Ok(msg) =
                serde_json::from_slice::<p2p_common::api::presence::SubscriberMessage>(&body)
            {
                return self.on_presence(id, msg, expects_response, now, out);
            }
        }
        let decoded = decode_request::<Request>(&body, PROCESS, MAX_BODY);
        let local = from.node == self.me;
        let result = match decoded {
            Err(e) => Err(e),
            Ok(req) => {
                let from_peer = !local && from.process == self.our.process;
                if req.is_protocol() && !from_peer {
                    Err(ApiError::forbidden(
                        "protocol message: only notify processes on other nodes may send it",
                    ))
                } else if !local && !self.budgets.allow(&from.node, 1, now) {
                    self.refused += 1;
                    if self.budgets.refused.is_power_of_two() {
                        out.push(log(
                            Level::Warn,
                            format!(
                                "{}: over its message budget; refusing ({} refusals so far)",
                                from.node, self.budgets.refused
                            ),
                        ));
                    }
                    Err(ApiError::new(
                        ErrorCode::Overloaded,
                        "too many messages from your node; slow down",
                    ))
                } else if !req.is_protocol() && !req.is_open() && !local {
                    Err(ApiError::forbidden(
                        "local-only operation: only apps on this node may call it",
                    ))
                } else {
                    match req.validated() {
                        Err(e) => Err(e),
                        Ok(Request::Subscribe { publisher, topic }) if expects_response => {
                            match self.subscribe(id, &from, StreamKey::new(&publisher, &topic), now)
                            {
                                // Answered inside, or once the welcome's outcome is back.
                                Ok(effects) => {
                                    out.extend(effects);
                                    return;
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Ok(Request::Publish { topic, kind }) if expects_response => {
                            match self.publish(id, &from, &topic, kind, blob) {
                                // Answered once signed and on disk.
                                Ok(effects) => {
                                    out.extend(effects);
                                    return;
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Ok(Request::Deliver {
                            topic,
                            lost,
                            notes,
                            publisher,
                            roster,
                            last,
                        }) if expects_response => {
                            let publisher = publisher.unwrap_or_else(|| from.node.clone());
                            let k = StreamKey::new(&publisher, &topic);
                            // Only the publisher's word on its stream counts, and only for a
                            // stream it delivers directly.
                            let told = last.filter(|_| {
                                from.node == k.publisher && self.relays.parent(&k).is_none()
                            });
                            let got = (k, lost, notes, roster, told, last);
                            match self.deliver(id, &from, got, blob, now, out) {
                                // Answered once every new note's signature is checked.
                                Ok(effects) => {
                                    out.extend(effects);
                                    return;
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Ok(req) => self.serve(req, &from, now, out),
                    }
                }
            }
        };
        if let Err(e) = &result {
            out.push(log(Level::Debug, format!("{from}: {e}")));
        }
        if expects_response {
            out.push(Effect::reply(id, encode_result(&result)));
        }
    }

    fn serve(
        &mut self,
        req: Request,
        from: &Address,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        match req {
            Request::Ping {} => Ok(Response::Pong(p2p_common::basic::pong(&self.me))),
            Request::Info {} => Ok(Response::Info(p2p_common::basic::service_info(
                PROCESS, &self.me,
            ))),
            Request::SetTopic { topic, policy } => {
                let owner = from.to_string();
                match self.outbox.topics.get(&topic) {
                    Some(t) if t.meta.owner != owner => {
                        return Err(ApiError::forbidden(format!(
                            "topic {topic:?} belongs to {}",
                            t.meta.owner
                        )))
                    }
                    None if self.outbox.topics.len() >= MAX_TOPICS => {
                        return Err(ApiError::new(
                            ErrorCode::Overloaded,
                            format!("this node already has {MAX_TOPICS} topics"),
                        ))
                    }
                    _ => {}
                }
                let mut b = Batch::forced();
                let gone = self.outbox.set_topic(&topic, owner, policy, &mut b);
                self.streams
                    .ensure(&StreamKey::new(&self.me, &topic), 0, false, &mut b);
                if !gone.is_empty() {
                    for n in &gone {
                        if !self.outbox.subscribes(n) {
                            self.liveness.forget(n);
                            self.outbox.forget_down(n);
                        }
                    }
                    self.roster_changed(&topic, out);
                    let mut o = Vec::new();
                    self.outbox.pump_revokes(&topic, now, &mut o);
                    Self::lift_out(o, out);
                    out.push(log(
                        Level::Info,
                        format!(
                            "{topic}: {} subscriber nodes dropped by the new policy",
                            gone.len()
                        ),
                    ));
                }
                push_store(out, b);
                Ok(Response::TopicSet(
                    self.outbox
                        .info(&topic, &self.streams)
                        .expect("just created"),
                ))
            }
            Request::SetRetention {
                topic,
                max_age_s,
                max_count,
            } => {
                let owner = from.to_string();
                match self.outbox.topics.get(&topic) {
                    None => {
                        return Err(ApiError::not_found(format!(
                            "no topic {topic:?} on {}: create it with SetTopic first",
                            self.me
                        )))
                    }
                    Some(t) if t.meta.owner != owner => {
                        return Err(ApiError::forbidden(format!(
                            "topic {topic:?} belongs to {}; only it sets its retention",
                            t.meta.owner
                        )))
                    }
                    Some(_) => {}
                }
                // Checked by `validate`; both left out is the default.
                let settings = (max_age_s.is_some() || max_count.is_some())
                    .then(|| TopicRetention::from_request(max_age_s, max_count))
                    .transpose()?;
                let mut b = Batch::forced();
                self.outbox.set_retention(&topic, settings, &mut b);
                let k = StreamKey::new(&self.me, &topic);
                // A shorter window drops what is now outside it; the readers behind it are
                // told (what every reader has goes on the next round, as ever).
                let ret = self.retention_of(&k);
                self.streams.prune(&k, Some(0), ret, self.wall, &mut b);
                push_store(out, b);
                let info = self
                    .outbox
                    .info(&topic, &self.streams)
                    .expect("checked above");
                out.push(log(
                    Level::Info,
                    format!(
                        "{topic}: retention {} s, {} notifications",
                        info.retention.max_age_s, info.retention.max_count
                    ),
                ));
                self.pump_stream(&k, now, out);
                Ok(Response::TopicSet(info))
            }
            Request::Publish { .. } | Request::Subscribe { .. } | Request::Deliver { .. } => {
                // Fire-and-forget: nobody to answer once it is done.
                Err(ApiError::bad_request(
                    "this request must expect a response (it is answered once done)",
                ))
            }
            Request::Unsubscribe { publisher, topic } => {
                let k = StreamKey::new(&publisher, &topic);
                let cancelled = self.hellos.cancel(&(from.clone(), k.clone()));
                let mut b = Batch::forced();
                if !self.apps.remove(from, &k, &mut b) && !cancelled {
                    return Err(ApiError::not_found(format!(
                        "{from} is not subscribed to {k}"
                    )));
                }
                self.after_reader_left(&k, &mut b, out);
                push_store(out, b);
                Ok(Response::Unsubscribed {})
            }
            Request::ListSubscriptions {} => Ok(Response::Subscriptions {
                subscriptions: self.apps.list(from, &self.streams),
            }),
            Request::ListTopics { cursor, limit } => {
                let (topics, next_cursor) = self.page(cursor.as_deref(), limit, |t| {
                    self.outbox.info(t, &self.streams)
                });
                Ok(Response::Topics {
                    topics,
                    next_cursor,
                })
            }
            Request::Stats { cursor, limit } => {
                Ok(Response::Stats(self.stats_page(cursor.as_deref(), limit)))
            }
            Request::Health {} => Ok(Response::Health(self.health(now))),
            Request::PeerSubscribe { topic } => {
                let Some(t) = self.outbox.topics.get(&topic) else {
                    return Err(ApiError::not_found(format!(
                        "{} has no topic {topic:?}",
                        self.me
                    )));
                };
                if !t.meta.policy.admits(&from.node) {
                    return Err(ApiError::forbidden(format!(
                        "topic {topic:?} of {} does not admit {}",
                        self.me, from.node
                    )));
                }
                if !t.subs.contains_key(&from.node) && t.subs.len() >= MAX_SUBSCRIBERS {
                    return Err(ApiError::new(
                        ErrorCode::Overloaded,
                        format!("topic {topic:?} has {MAX_SUBSCRIBERS} subscriber nodes"),
                    ));
                }
                let last = self
                    .streams
                    .get(&StreamKey::new(&self.me, &topic))
                    .map_or(0, |s| s.last);
                let mut b = Batch::forced();
                let known = t.subs.contains_key(&from.node);
                let next_seq = self.outbox.subscribe(&topic, &from.node, last, &mut b);
                push_store(out, b);
                if !known {
                    self.roster_changed(&topic, out);
                }
                Ok(Response::PeerSubscribed { next_seq })
            }
            Request::PeerUnsubscribe { topic } => {
                let mut b = Batch::lazy();
                if self.outbox.unsubscribe(&topic, &from.node, &mut b) {
                    if !self.outbox.subscribes(&from.node) {
                        self.forget_liveness(&from.node, now, out);
                    }
                    let k = StreamKey::new(&self.me, &topic);
                    if self
                        .relays
                        .get(&k)
                        .is_some_and(|t| t.roster.contains(&from.node))
                    {
                        self.roster_left.insert(topic.clone());
                    }
                    self.roster_changed(&topic, out);
                }
                let k = StreamKey::new(&self.me, &topic);
                self.prune(&k, &mut b);
                push_store(out, b);
                Ok(Response::Accepted {})
            }
            Request::Resume { topic, up_to } => {
                let mut o = Vec::new();
                let mut b = Batch::lazy();
                let taken = self.outbox.resume(
                    &topic,
                    &from.node,
                    up_to,
                    &self.streams,
                    now,
                    &mut b,
                    &mut o,
                );
                push_store(out, b);
                // A dropped subscriber that missed its `Revoke` is told again.
                self.outbox.kick_revoke(&topic, &from.node, now, &mut o);
                Self::lift_out(o, out);
                if taken {
                    Ok(Response::Accepted {})
                } else {
                    self.refused += 1;
                    Err(self.not_a_subscriber(&topic, &from.node))
                }
            }
            Request::Revoke { topic, reason } => {
                let k = StreamKey::new(&from.node, &topic);
                if self.revoked(&k, &reason, now, out) {
                    Ok(Response::Accepted {})
                } else {
                    Err(ApiError::not_found(format!(
                        "{} does not subscribe to {k}",
                        self.me
                    )))
                }
            }
            Request::IHave {
                publisher,
                topic,
                up_to,
            } => {
                let k = StreamKey::new(&publisher, &topic);
                let mut r = Vec::new();
                let known = self.streams.get(&k).is_some_and(|s| s.remote)
                    && self
                        .relays
                        .on_ihave(&k, &from.node, up_to, &self.streams, &mut r);
                Self::lift_relay(r, out);
                if known {
                    Ok(Response::Accepted {})
                } else {
                    self.refused += 1;
                    Err(ApiError::not_found(format!(
                        "{} has no relay tree of {k} with {} in it",
                        self.me, from.node
                    )))
                }
            }
            Request::Graft {
                publisher,
                topic,
                up_to,
            } => {
                let k = StreamKey::new(&publisher, &topic);
                let mut r = Vec::new();
                let subscriber = publisher == self.me
                    && self
                        .outbox
                        .topics
                        .get(&topic)
                        .is_some_and(|t| t.subs.contains_key(&from.node));
                let taken = (publisher != self.me || subscriber)
                    && self
                        .relays
                        .on_graft(&k, &from.node, up_to, &self.streams, now, &mut r);
                Self::lift_relay(r, out);
                if taken && publisher == self.me {
                    // It lacks what follows `up_to`: evidence against its tree parent.
                    self.lacked(
                        &topic,
                        &from.node,
                        up_to.saturating_add(1),
                        u64::MAX,
                        now,
                        out,
                    );
                }
                if publisher == self.me && !subscriber {
                    let mut o = Vec::new();
                    self.outbox.kick_revoke(&topic, &from.node, now, &mut o);
                    Self::lift_out(o, out);
                    self.refused += 1;
                    return Err(self.not_a_subscriber(&topic, &from.node));
                }
                if taken {
                    Ok(Response::Accepted {})
                } else if subscriber {
                    // Not in the tree (yet): it gets everything directly; resume it.
                    let mut o = Vec::new();
                    let mut b = Batch::lazy();
                    self.outbox.resume(
                        &topic,
                        &from.node,
                        up_to,
                        &self.streams,
                        now,
                        &mut b,
                        &mut o,
                    );
                    push_store(out, b);
                    Self::lift_out(o, out);
                    Ok(Response::Accepted {})
                } else {
                    self.refused += 1;
                    Err(ApiError::not_found(format!(
                        "{} has no relay tree of {k} with {} in it",
                        self.me, from.node
                    )))
                }
            }
            Request::Prune { publisher, topic } => {
                let k = StreamKey::new(&publisher, &topic);
                self.relays.on_prune(&k, &from.node);
                Ok(Response::Accepted {})
            }
        }
    }

    /// The refusal of a `Resume` or `Graft` of our `topic` from `node`, which is not (any
    /// longer) its subscriber: the subscriber drops the stream and tells its apps.
    fn not_a_subscriber(&self, topic: &str, node: &NodeId) -> ApiError {
        match self.outbox.topics.get(topic) {
            None => ApiError::not_found(format!("{} has no topic {topic:?}", self.me)),
            Some(t) if !t.meta.policy.admits(node) => ApiError::forbidden(format!(
                "the policy of topic {topic:?} of {} no longer admits {node}",
                self.me
            )),
            Some(_) => ApiError::not_found(format!(
                "{node} does not subscribe to topic {topic:?} of {}; subscribe again",
                self.me
            )),
        }
    }

    /// Publish: checked, then signed by `sign:sign:sys` (NetKeySign), then stored (forced)
    /// and answered. The sequence number is part of what is signed, so publishes of a topic
    /// queue in arrival order: each takes `last + 1 + its place in the queue`, and one whose
    /// place changed (an earlier one failed) is signed again under its new number.
    fn publish(
        &mut self,
        id: RequestId,
        from: &Address,
        topic: &str,
        kind: PayloadKind,
        blob: Option<Vec<u8>>,
    ) -> ApiResult<Vec<Eff>> {
        let owner = from.to_string();
        match self.outbox.topics.get(topic) {
            None => {
                return Err(ApiError::not_found(format!(
                    "no topic {topic:?} on {}: create it with SetTopic first",
                    self.me
                )))
            }
            Some(t) if t.meta.owner != owner => {
                return Err(ApiError::forbidden(format!(
                    "topic {topic:?} belongs to {}; only it publishes",
                    t.meta.owner
                )))
            }
            _ => {}
        }
        let Some(payload) = blob else {
            return Err(ApiError::bad_request(
                "Publish carries its payload as the message's blob; this one has none",
            ));
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "payload is {} bytes; notify accepts at most {MAX_PAYLOAD}",
                    payload.len()
                ),
            ));
        }
        if kind == PayloadKind::Json {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
                return Err(ApiError::bad_request(format!(
                    "payload of kind Json is not JSON: {e}"
                )));
            }
        }
        let queue = self.publishing.entry(topic.to_string()).or_default();
        if queue.len() >= MAX_PUBLISHING {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!("{MAX_PUBLISHING} publishes of {topic:?} are being signed; retry shortly"),
            ));
        }
        self.next_token += 1;
        let token = self.next_token;
        queue.push_back(Publishing {
            token,
            request: id,
            kind,
            payload,
            at: self.wall,
            signed: None,
        });
        Ok(self.sign_pending(topic, token).into_iter().collect())
    }

    /// Where publish `token` of `topic` stands: its number now, and whether it is first.
    fn place(&self, topic: &str, token: u64) -> Option<(u64, bool)> {
        let q = self.publishing.get(topic)?;
        let i = q.iter().position(|p| p.token == token)?;
        let last = self
            .streams
            .get(&StreamKey::new(&self.me, topic))
            .map_or(0, |s| s.last);
        Some((last + 1 + i as u64, i == 0))
    }

    fn note_of(&self, topic: &str, seq: u64, p: &Publishing) -> Notification {
        let k = StreamKey::new(&self.me, topic);
        Notification {
            id: k.note_id(seq),
            publisher: self.me.clone(),
            topic: topic.to_string(),
            seq,
            at: p.at,
            kind: p.kind,
            size: p.payload.len() as u32,
            signature: Vec::new(),
        }
    }

    /// The NetKeySign request for publish `token` at its current number.
    fn sign_pending(&self, topic: &str, token: u64) -> Option<Eff> {
        let (seq, _) = self.place(topic, token)?;
        let p = self
            .publishing
            .get(topic)?
            .iter()
            .find(|p| p.token == token)?;
        let message = self.note_of(topic, seq, p).signed_message(&p.payload);
        Some(Effect::Send {
            to: sign_address(&self.me),
            body: sign_body(),
            blob: Some(message),
            expect: Some(Expect {
                timeout_s: SIGN_TIMEOUT_S,
                ctx: Ctx::Sign {
                    topic: topic.to_string(),
                    token,
                    seq,
                },
            }),
        })
    }

    /// A publish got its signature (or its wait timer fired): commit it if it is first in
    /// line and still has the number it was signed under.
    fn try_commit(&mut self, topic: &str, token: u64, now: Millis, out: &mut Vec<Eff>) {
        let Some((seq, first)) = self.place(topic, token) else {
            return;
        };
        let signed_seq = self
            .publishing
            .get(topic)
            .and_then(|q| q.iter().find(|p| p.token == token))
            .and_then(|p| p.signed.as_ref().map(|(s, _)| *s));
        match signed_seq {
            None => return,
            Some(s) if s != seq => {
                // An earlier publish failed: sign again under the new number.
                if let Some(q) = self.publishing.get_mut(topic) {
                    if let Some(p) = q.iter_mut().find(|p| p.token == token) {
                        p.signed = None;
                    }
                }
                out.extend(self.sign_pending(topic, token));
                return;
            }
            Some(_) if !first => {
                out.push(Effect::timer(
                    PUBLISH_WAIT_MS,
                    Tick::PublishWait {
                        topic: topic.to_string(),
                        token,
                    },
                ));
                return;
            }
            Some(_) => {}
        }
        let p = self
            .publishing
            .get_mut(topic)
            .and_then(|q| q.pop_front())
            .expect("first in line");
        let (_, signature) = p.signed.clone().expect("signed");
        let mut note = self.note_of(topic, seq, &p);
        note.signature = signature;
        let k = StreamKey::new(&self.me, topic);
        let mut b = Batch::forced();
        self.streams
            .append(&k, note.clone(), p.payload, self.wall, &mut b);
        if let Some(t) = self.outbox.topics.get_mut(topic) {
            t.published += 1;
        }
        // Over its bounds, the oldest entries go now (readers behind are told of the gap).
        let ret = self.retention_of(&k);
        self.streams.prune(&k, Some(0), ret, self.wall, &mut b);
        // Durable before the answer and before any copy goes out.
        push_store(out, b);
        out.push(Effect::reply(
            p.request,
            encode_result(&Ok(Response::Published(note))),
        ));
        self.pump_stream(&k, now, out);
    }

    /// A roster could not be signed: try again later (the old one, or direct fan-out,
    /// serves meanwhile).
    fn roster_unsigned(&mut self, topic: &str, out: &mut Vec<Eff>) {
        out.push(log(
            Level::Warn,
            format!("{topic}: relay tree roster not signed; retrying in 10 s"),
        ));
        // Signed again even if the members are the same by then (someone may have left).
        self.roster_left.insert(topic.to_string());
        if self.roster_due.insert(topic.to_string()) {
            out.push(Effect::timer(
                5 * ROSTER_AFTER_MS,
                Tick::Roster {
                    topic: topic.to_string(),
                },
            ));
        }
    }

    /// A publish could not be signed: answer its app, and let the ones after it move up.
    fn publish_failed(&mut self, topic: &str, token: u64, why: String, out: &mut Vec<Eff>) {
        let Some(q) = self.publishing.get_mut(topic) else {
            return;
        };
        let Some(i) = q.iter().position(|p| p.token == token) else {
            return;
        };
        let p = q.remove(i).expect("found");
        out.push(log(
            Level::Warn,
            format!("{topic}: publish not signed: {why}"),
        ));
        let e = ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "sign:sign:sys did not sign the notification ({why}); nothing was published. \
                 notify's manifest entry must request \"sign:sign:sys\""
            ),
        );
        out.push(Effect::reply(p.request, encode_result::<Response>(&Err(e))));
    }

    /// A batch of stream `k` from `from`: its publisher, or a relay of its tree (the kernel
    /// vouches for the sending node; the notes' signatures for their content). Duplicates
    /// are counted, the notes that would extend the stream (and a newer roster) are checked
    /// with NetKeyVerify, and the batch is answered once every check is back. Only the
    /// publisher may say a range is lost.
    fn deliver(
        &mut self,
        id: RequestId,
        from: &Address,
        (k, lost, notes, roster, told, told_raw): Delivery,
        blob: Option<Vec<u8>>,
        now: Millis,
        logs: &mut Vec<Eff>,
    ) -> ApiResult<Vec<Eff>> {
        let lost = if from.node == k.publisher {
            lost
        } else {
            if lost.is_some() {
                self.refused += 1;
            }
            None
        };
        let roster = roster.filter(|r| {
            r.publisher == k.publisher
                && r.topic == k.topic
                && r.epoch > self.relays.epoch(&k)
                && r.well_formed()
                && r.contains(&self.me)
        });
        let Some(s) = self.streams.get(&k).filter(|s| s.remote) else {
            self.refused += 1;
            return Err(ApiError::not_found(format!(
                "{} does not subscribe to {k}",
                self.me
            )));
        };
        if notes.len() > MAX_BATCH {
            self.refused += 1;
            return Err(ApiError::bad_request(format!(
                "at most {MAX_BATCH} notes per Deliver"
            )));
        }
        if let Some(r) = lost.filter(|r| r.from > r.to || r.to > MAX_SEQ) {
            self.refused += 1;
            return Err(ApiError::bad_request(format!(
                "lost range {}..={} is not a range of sequence numbers 1..={MAX_SEQ}",
                r.from, r.to
            )));
        }
        // A publisher says a range is lost only right before the batch's first note, or,
        // with no note, up to its stream's end (`last`): the numbers after it are then
        // what it actually has (`outbox::pump`). A range past them would make its later
        // real notes duplicates for ever.
        if let Some(r) = lost {
            let fits = match notes.first() {
                Some(n) => r.to.checked_add(1) == Some(n.seq),
                None => told_raw == Some(r.to),
            };
            if !fits {
                self.refused += 1;
                self.bad_lost += 1;
                if self.bad_lost.is_power_of_two() {
                    logs.push(log(
                        Level::Warn,
                        format!(
                            "{k}: {} said {}..={} is lost, beyond what it sends (its last {:?}); \
                         refused ({} such batches so far)",
                            from.node, r.from, r.to, told_raw, self.bad_lost
                        ),
                    ));
                }
                return Err(ApiError::bad_request(format!(
                    "lost range {}..={} must end right before the batch's first note, or, \
                     without notes, at the stream's last number",
                    r.from, r.to
                )));
            }
        }
        let payloads = match split_payloads(&notes, blob.as_deref().unwrap_or_default()) {
            Ok(p) => p,
            Err(e) => {
                self.refused += 1;
                return Err(ApiError::bad_request(e));
            }
        };
        // Only the notes that would extend the stream need a check: after `last` (or the
        // lost range), in order, without a hole.
        let mut next = match lost {
            Some(r) if r.from <= s.last + 1 && r.to > s.last && r.from <= r.to => r.to + 1,
            _ => s.last + 1,
        };
        let mut batch = Vec::new();
        let mut dups = 0;
        for (note, payload) in notes.into_iter().zip(payloads) {
            if note.seq < next {
                dups += 1;
            } else if note.seq == next {
                next += 1;
                batch.push((note, payload));
            } else {
                self.refused += 1;
            }
        }
        self.duplicates_suppressed += dups;
        if batch.is_empty() && roster.is_none() {
            let mut out = Vec::new();
            let up_to = self.accept(&k, &from.node, lost, Vec::new(), None, now, &mut out);
            // Nothing new (duplicates, or an empty probe): the tree hears of it (a parent
            // that delivers again ends our grafts).
            let mut r = Vec::new();
            self.relays
                .on_received(&k, &from.node, false, true, &self.streams, now, &mut r);
            Self::lift_relay(r, &mut out);
            out.push(Effect::reply(
                id,
                encode_result(&Ok(Response::Delivered { up_to })),
            ));
            self.heard(&k, told, &mut out);
            return Ok(out);
        }
        if self.verifying.len() >= MAX_VERIFYING {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many batches being checked; retry shortly",
            ));
        }
        let theirs = self
            .verifying
            .values()
            .filter(|v| v.from == from.node)
            .count();
        if theirs >= MAX_VERIFYING_PER_SENDER {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "{MAX_VERIFYING_PER_SENDER} batches from your node are being checked; \
                     retry shortly"
                ),
            ));
        }
        self.next_token += 1;
        let token = self.next_token;
        // The publisher's notify signed them, whoever forwarded them.
        let signer = address(&k.publisher);
        let mut out = Vec::new();
        for (i, (note, payload)) in batch.iter().enumerate() {
            out.push(Effect::Send {
                to: sign_address(&self.me),
                body: verify_body(&signer, &note.signature),
                blob: Some(note.signed_message(payload)),
                expect: Some(Expect {
                    timeout_s: SIGN_TIMEOUT_S,
                    ctx: Ctx::Verify { token, index: i },
                }),
            });
        }
        if let Some(r) = &roster {
            out.push(Effect::Send {
                to: sign_address(&self.me),
                body: verify_body(&signer, &r.signature),
                blob: Some(r.signed_message()),
                expect: Some(Expect {
                    timeout_s: SIGN_TIMEOUT_S,
                    ctx: Ctx::Verify {
                        token,
                        index: batch.len(),
                    },
                }),
            });
        }
        self.verifying.insert(
            token,
            Verifying {
                request: id,
                from: from.node.clone(),
                stream: k,
                lost,
                told,
                checked: vec![None; batch.len() + usize::from(roster.is_some())],
                notes: batch,
                roster,
            },
        );
        Ok(out)
    }

    /// One signature check of batch `token` is back; the last one completes the batch.
    fn verified(&mut self, token: u64, index: usize, ok: bool, now: Millis, out: &mut Vec<Eff>) {
        let Some(v) = self.verifying.get_mut(&token) else {
            return;
        };
        if let Some(c) = v.checked.get_mut(index) {
            *c = Some(ok);
        }
        if v.checked.iter().any(Option::is_none) {
            return;
        }
        let mut v = self.verifying.remove(&token).expect("present");
        let roster = match v.roster.take() {
            Some(r) if v.checked.pop() == Some(Some(true)) => Some(r),
            Some(r) => {
                self.signature_failures += 1;
                if self.signature_failures.is_power_of_two() {
                    out.push(log(
                        Level::Warn,
                        format!(
                            "{}: roster epoch {} from {} does not verify; ignored ({} signature \
                             failures so far)",
                            v.stream, r.epoch, v.from, self.signature_failures
                        ),
                    ));
                }
                None
            }
            None => None,
        };
        // The verified prefix; the first note that fails ends the batch (the rest would
        // leave a hole).
        let good = v.checked.iter().take_while(|c| **c == Some(true)).count();
        let bad = v.notes.len() - good;
        if bad > 0 {
            self.signature_failures += 1;
            // One line per failure would let a sender write our log at its message budget.
            if self.signature_failures.is_power_of_two() {
                out.push(log(
                    Level::Warn,
                    format!(
                        "{}: {bad} notes from {} whose signature does not verify (first seq {}); \
                         refused ({} batches with such notes so far)",
                        v.stream, v.from, v.notes[good].0.seq, self.signature_failures
                    ),
                ));
            }
        }
        let notes: Vec<(Notification, Vec<u8>)> = v.notes.into_iter().take(good).collect();
        let up_to = self.accept(&v.stream, &v.from, v.lost, notes, roster, now, out);
        out.push(Effect::reply(
            v.request,
            encode_result(&Ok(Response::Delivered { up_to })),
        ));
        self.heard(&v.stream, v.told, out);
    }

    /// Add checked notes from `from` to a remote stream (on disk before the answer), take a
    /// checked roster, then deliver to the apps and push to the tree.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        k: &StreamKey,
        from: &NodeId,
        lost: Option<SeqRange>,
        notes: Vec<(Notification, Vec<u8>)>,
        roster: Option<Roster>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> u64 {
        let Some(before) = self.streams.get(k).map(|s| s.last) else {
            return 0;
        };
        let mut b = Batch::forced();
        let mut r = Vec::new();
        if let Some(roster) = roster {
            out.push(log(
                Level::Info,
                format!(
                    "{k}: relay tree epoch {} of {} members",
                    roster.epoch,
                    roster.members.len()
                ),
            ));
            self.relays
                .adopt(k, roster, &|_| None, &self.streams, now, &mut b, &mut r);
        }
        let acc = self.streams.accept(k, lost, notes, self.wall, &mut b);
        self.duplicates_suppressed += acc.duplicates;
        self.refused += acc.refused;
        let up_to = self.streams.get(k).map_or(before, |s| s.last);
        self.prune(k, &mut b);
        // What we acknowledge is on disk first.
        push_store(out, b);
        if up_to > before {
            let mut a = Vec::new();
            self.apps.pump_stream(k, &self.streams, now, &mut a);
            Self::lift_app(a, out);
            self.relays
                .on_received(k, from, true, false, &self.streams, now, &mut r);
        }
        Self::lift_relay(r, out);
        up_to
    }

    /// Our `topic`'s subscribers changed: sign a new roster soon, if the topic is large
    /// or has a tree already.
    fn roster_changed(&mut self, topic: &str, out: &mut Vec<Eff>) {
        let k = StreamKey::new(&self.me, topic);
        let large = self
            .outbox
            .topics
            .get(topic)
            .is_some_and(|t| t.subs.len() >= self.cfg.tree_threshold);
        if (large || self.relays.get(&k).is_some()) && self.roster_due.insert(topic.to_string()) {
            out.push(Effect::timer(
                ROSTER_AFTER_MS,
                Tick::Roster {
                    topic: topic.to_string(),
                },
            ));
        }
    }

    /// Our `topic`'s subscriber nodes in roster order. The order of the roster we hold is
    /// kept (nodes no longer subscribed left out, new ones appended in subscription order;
    /// the first roster is in that order), so a change moves few members and few tree
    /// links; then each
    /// interior (relay) position held by a node whose death we confirmed (presence said so
    /// and our `Ping` failed) is swapped with an alive leaf ([`promote`]): one our own
    /// deliveries have not failed to lately (its circuit breaker is pristine) first, then
    /// the longest subscribed, then by name. Nothing a node does can buy it the seat:
    /// every answer a leaf gives us is to a request a remote can make us send (a `Ping`
    /// on gossip, a `Deliver` after subscribing, a push after a `Graft`), so answers
    /// count only against it (review 13d). A remote node's claim moves another only if
    /// that one does not answer us either.
    pub fn roster_order(&self, topic: &str) -> Vec<NodeId> {
        let Some(t) = self.outbox.topics.get(topic) else {
            return Vec::new();
        };
        let k = StreamKey::new(&self.me, topic);
        let mut members: Vec<NodeId> = Vec::with_capacity(t.subs.len());
        if let Some(tree) = self.relays.get(&k) {
            members.extend(
                tree.roster
                    .members
                    .iter()
                    .filter(|m| t.subs.contains_key(*m))
                    .cloned(),
            );
        }
        let kept: BTreeSet<NodeId> = members.iter().cloned().collect();
        // New members in the order they subscribed (the first roster too): the earliest
        // subscribers take the relay seats, not the smallest names (chosen by their owners).
        let mut new: Vec<(u64, &NodeId)> = t
            .subs
            .iter()
            .filter(|(n, _)| !kept.contains(*n))
            .map(|(n, s)| (s.since, n))
            .collect();
        new.sort();
        members.extend(new.into_iter().map(|(_, n)| n.clone()));
        // Two ranks: 1 for a death our own check confirmed (presence's word alone may be
        // gossip) or a relay demoted for withholding pushes (a demoted leaf is not promoted
        // while its mark lasts), 0 for every other member, suspect or not: a suspicion
        // moves nobody.
        let rank = |n: &NodeId| u8::from(self.outbox.is_down(n) || self.withhold.demoted(topic, n));
        let prefer = |n: &NodeId| {
            let failing = self.outbox.breakers().get(n).is_some();
            (
                u8::from(failing),
                self.outbox.since(topic, n).unwrap_or(u64::MAX),
            )
        };
        let interior = p2p_common::api::notify::interior_count(members.len(), self.cfg.fanout);
        promote(&mut members, interior, &rank, &prefer);
        members
    }

    /// Sign the roster of our `topic`: its subscriber nodes now, in [`Self::roster_order`].
    /// Not signed again if the members and the interior (the members with children) are
    /// those of the roster we hold, and no member left meanwhile: a dead leaf stays where
    /// it is.
    fn sign_roster(&mut self, topic: &str, now: Millis, out: &mut Vec<Eff>) {
        self.roster_due.remove(topic);
        let k = StreamKey::new(&self.me, topic);
        let Some(t) = self.outbox.topics.get(topic) else {
            return;
        };
        self.withhold.purge(topic, &|n| t.subs.contains_key(n), now);
        let members = self.roster_order(topic);
        let someone_left = self.roster_left.remove(topic);
        let same = |t: &relay::Tree| {
            let old = &t.roster;
            if old.members.len() != members.len() || !members.iter().all(|m| old.contains(m)) {
                return false;
            }
            let n = old.interior().min(members.len());
            let a: BTreeSet<&NodeId> = old.members[..n].iter().collect();
            let b: BTreeSet<&NodeId> = members[..n].iter().collect();
            a == b
        };
        if !someone_left && self.relays.get(&k).is_some_and(same) {
            return;
        }
        self.roster_signed_at.insert(topic.to_string(), now);
        let roster = Roster::new(
            self.me.clone(),
            topic.to_string(),
            self.relays.epoch(&k) + 1,
            self.cfg.fanout,
            members,
        );
        out.push(Effect::Send {
            to: sign_address(&self.me),
            body: sign_body(),
            blob: Some(roster.signed_message()),
            expect: Some(Expect {
                timeout_s: SIGN_TIMEOUT_S,
                ctx: Ctx::SignRoster { roster },
            }),
        });
    }

    /// Our roster is signed: the tree takes it, the outbox leaves its members to it.
    fn roster_signed(
        &mut self,
        mut roster: Roster,
        signature: Vec<u8>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        roster.signature = signature;
        let k = StreamKey::new(&self.me, &roster.topic);
        let Some(t) = self.outbox.topics.get_mut(&roster.topic) else {
            return;
        };
        t.in_tree = roster.members.iter().cloned().collect();
        let last = self.streams.get(&k).map_or(0, |s| s.last);
        self.withhold.new_roster(&roster, last);
        // What each has, and the highest it acknowledged to our outbox (counted there).
        let acked: BTreeMap<NodeId, (u64, u64)> = t
            .subs
            .iter()
            .map(|(n, s)| (n.clone(), (s.acked, s.stats.acked)))
            .collect();
        out.push(log(
            Level::Info,
            format!(
                "{k}: relay tree epoch {} of {} members",
                roster.epoch,
                roster.members.len()
            ),
        ));
        let mut b = Batch::forced();
        let mut r = Vec::new();
        self.relays.adopt(
            &k,
            roster,
            &|n| acked.get(n).copied(),
            &self.streams,
            now,
            &mut b,
            &mut r,
        );
        push_store(out, b);
        Self::lift_relay(r, out);
        // Subscribers that left the tree get the rest directly.
        let mut o = Vec::new();
        self.outbox.pump_topic(&k.topic, &self.streams, now, &mut o);
        Self::lift_out(o, out);
    }

    /// Subscribe `app` to `k`: first make sure we can reach the app (the welcome), then,
    /// for a remote topic we do not receive yet, subscribe our node at the publisher.
    fn subscribe(
        &mut self,
        id: RequestId,
        app: &Address,
        k: StreamKey,
        now: Millis,
    ) -> ApiResult<Vec<Eff>> {
        let mut out = Vec::new();
        if let Some(sub) = self.apps.get(app, &k) {
            // Subscribed already: the app is back; deliver what it missed at once.
            let next_seq = sub.cursor + 1;
            let mut a = Vec::new();
            self.apps.kick(app, &k, &self.streams, now, &mut a);
            out.push(Effect::reply(
                id,
                encode_result(&Ok(Response::Subscribed { next_seq })),
            ));
            Self::lift_app(a, &mut out);
            return Ok(out);
        }
        if k.publisher == self.me && !self.outbox.topics.contains_key(&k.topic) {
            return Err(ApiError::not_found(format!(
                "no topic {:?} on {}",
                k.topic, self.me
            )));
        }
        if self.apps.len() >= MAX_LOCAL_SUBSCRIPTIONS {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!("this node has {MAX_LOCAL_SUBSCRIPTIONS} app subscriptions"),
            ));
        }
        let key = (app.clone(), k.clone());
        if self.hellos.waiting_for(&key) {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "this subscription is already being confirmed; retry in a few seconds",
            ));
        }
        let hello = encode(&p2p_common::api::notify::AppMessage::Welcome {
            publisher: k.publisher.clone(),
            topic: k.topic.clone(),
        });
        let send = self
            .hellos
            .begin(key, id, app.clone(), hello, now, |token| Ctx::Hello {
                token,
            })?;
        out.push(send);
        Ok(out)
    }

    /// The welcome reached the app: finish the subscription.
    fn hello_delivered(&mut self, w: Waiting<(Address, StreamKey)>, out: &mut Vec<Eff>) {
        let (app, k) = w.key;
        if w.cancelled {
            let e = ApiError::new(
                ErrorCode::Unavailable,
                "unsubscribed before the subscription was confirmed",
            );
            out.push(Effect::reply(w.request, encode_result::<Response>(&Err(e))));
            return;
        }
        if k.publisher == self.me || self.streams.get(&k).is_some_and(|s| s.remote) {
            let r = self.add_reader(&app, &k, out);
            out.push(Effect::reply(w.request, encode_result(&r)));
            return;
        }
        out.push(Effect::Send {
            to: Address::new(k.publisher.clone(), ProcessId::ours(PROCESS)),
            body: encode(&Request::PeerSubscribe {
                topic: k.topic.clone(),
            }),
            blob: None,
            expect: Some(Expect {
                timeout_s: PEER_SUBSCRIBE_TIMEOUT_S,
                ctx: Ctx::PeerSubscribe {
                    request: w.request,
                    app,
                    stream: k,
                },
            }),
        });
    }

    /// Add `app` as a reader of an existing stream, from its next notification on.
    fn add_reader(
        &mut self,
        app: &Address,
        k: &StreamKey,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        let Some(s) = self.streams.get(k) else {
            return Err(ApiError::not_found(format!("no topic {k}")));
        };
        let cursor = s.last;
        let mut b = Batch::forced();
        self.apps.add(app, k, cursor, &mut b);
        push_store(out, b);
        out.push(log(Level::Info, format!("{app} subscribed to {k}")));
        Ok(Response::Subscribed {
            next_seq: cursor + 1,
        })
    }

    /// A reader left `k`: drop a remote stream nobody reads, and tell its publisher.
    fn after_reader_left(&mut self, k: &StreamKey, b: &mut Batch, out: &mut Vec<Eff>) {
        if k.publisher != self.me && !self.apps.readers(k) {
            if self.streams.get(k).is_some_and(|s| s.remote) {
                self.streams.remove(k, b);
                self.relays.remove(k, b);
                self.catchup.remove(k);
                out.push(Effect::notify(
                    Address::new(k.publisher.clone(), ProcessId::ours(PROCESS)),
                    encode(&Request::PeerUnsubscribe {
                        topic: k.topic.clone(),
                    }),
                ));
            } else if self.streams.get(k).is_some_and(|s| s.revoked.is_some()) {
                // Its last reader was told it was revoked.
                self.streams.remove(k, b);
            }
        } else {
            self.prune(k, b);
        }
    }

    fn on_response(
        &mut self,
        from: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        ctx: Ctx,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        match ctx {
            Ctx::LiveCheck { node, ping } => {
                self.live_ping_over(&node, ping);
                self.live_checked(node, true, now, out)
            }
            Ctx::Live(liveness::Ctx::Subscribe) => {
                let ok = matches!(
                    try_decode_response::<p2p_common::api::presence::Response>(&body),
                    Ok(Ok(p2p_common::api::presence::Response::Subscribed {}))
                );
                let mut l = Vec::new();
                let why = String::from_utf8_lossy(&body);
                self.liveness.on_answer(ok, &why, &mut self.rng, &mut l);
                Self::lift_live(l, out);
            }
            Ctx::Sign { topic, token, seq } => {
                match serde_json::from_slice::<SignResponse>(&body) {
                    Ok(SignResponse::NetKeySign)
                        if blob.as_ref().is_some_and(|b| b.len() == 64) =>
                    {
                        if let Some(p) = self
                            .publishing
                            .get_mut(&topic)
                            .and_then(|q| q.iter_mut().find(|p| p.token == token))
                        {
                            p.signed = Some((seq, blob.unwrap_or_default()));
                        }
                        self.try_commit(&topic, token, now, out);
                    }
                    _ => self.publish_failed(
                        &topic,
                        token,
                        format!(
                            "no signature in its answer {}",
                            String::from_utf8_lossy(&body)
                        ),
                        out,
                    ),
                }
            }
            Ctx::Verify { token, index } => {
                let ok = matches!(
                    serde_json::from_slice::<SignResponse>(&body),
                    Ok(SignResponse::NetKeyVerify(true))
                );
                self.verified(token, index, ok, now, out);
            }
            Ctx::SignRoster { roster } => match serde_json::from_slice::<SignResponse>(&body) {
                Ok(SignResponse::NetKeySign) if blob.as_ref().is_some_and(|b| b.len() == 64) => {
                    self.roster_signed(roster, blob.unwrap_or_default(), now, out)
                }
                _ => self.roster_unsigned(&roster.topic, out),
            },
            Ctx::Relay(c) => {
                let mut r = Vec::new();
                let mut b = Batch::lazy();
                let relay::Ctx::Push { stream, .. } = &c;
                let stream = stream.clone();
                match try_decode_response::<Response>(&body) {
                    Ok(Ok(Response::Delivered { up_to })) if self.relays.is_progress(&c, up_to) => {
                        // A member of our tree took numbers from us on a grafted link: it
                        // lacked them (a member whose parent delivers prunes the link).
                        let relay::Ctx::Push {
                            node, up_to: sent, ..
                        } = &c;
                        let grafted = (stream.publisher == self.me)
                            .then(|| self.relays.get(&stream)?.links.get(node))
                            .flatten()
                            .filter(|l| l.grafted)
                            .map(|l| {
                                (node.clone(), l.acked.map_or(1, |a| a + 1), up_to.min(*sent))
                            });
                        let relay::Ctx::Push {
                            node: pushed_to, ..
                        } = &c;
                        let pushed_to = pushed_to.clone();
                        let retry = self.relays.retrying(&stream, &pushed_to);
                        self.relays
                            .on_pushed(c, up_to, &self.streams, now, &mut b, &mut r);
                        if let Some((node, from_seq, to_seq)) = grafted {
                            self.lacked(&stream.topic, &node, from_seq, to_seq, now, out);
                        } else if stream.publisher == self.me {
                            self.relay_acked(&stream.topic, &pushed_to, retry, now, out);
                        }
                    }
                    // A member that answers NotFound may not have finished subscribing
                    // (the publisher's roster says it subscribes): try again later, like
                    // any failure; a new roster without it ends the link. So is a push it
                    // took none of (backed off, not sent again at once).
                    _ => self.relays.on_failed(c, &mut self.rng, now, &mut r),
                }
                self.prune(&stream, &mut b);
                push_store(out, b);
                Self::lift_relay(r, out);
            }
            Ctx::Hello { token } => {
                if let Some(w) = self.hellos.confirmed(token) {
                    self.hello_delivered(w, out);
                }
            }
            Ctx::App(c) => {
                let mut b = Batch::forced();
                let mut a = Vec::new();
                let stream = match &c {
                    apps::Ctx::Deliver { stream, .. } => stream.clone(),
                };
                if self.apps.on_answered(c, &self.streams, now, &mut b, &mut a) {
                    self.after_reader_left(&stream, &mut b, out);
                }
                self.prune(&stream, &mut b);
                // The cursor is on disk before the next message goes out.
                push_store(out, b);
                Self::lift_app(a, out);
            }
            Ctx::Out(c @ outbox::Ctx::Revoke { .. }) => {
                let mut o = Vec::new();
                let mut b = Batch::lazy();
                let r = try_decode_response::<Response>(&body);
                // Taken, no such stream there, or an older node that does not know Revoke.
                let told = match &r {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => matches!(e.code, ErrorCode::NotFound | ErrorCode::BadRequest),
                    Err(_) => false,
                };
                let why = match r {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no valid answer from {from}"),
                };
                self.outbox
                    .on_revoke_answer(c, told, &why, &mut self.rng, now, &mut b, &mut o);
                push_store(out, b);
                Self::lift_out(o, out);
            }
            Ctx::Resume { stream, graft } => {
                self.catchup.answered(&stream, graft);
                // Only the publisher's refusal counts: it dropped us.
                if let Ok(Err(e)) = try_decode_response::<Response>(&body) {
                    if from.node == stream.publisher
                        && matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden)
                    {
                        self.revoked(&stream, &e.message, now, out);
                    }
                }
            }
            Ctx::Out(c) => {
                let mut o = Vec::new();
                let mut b = Batch::lazy();
                let (topic, node) = match &c {
                    outbox::Ctx::Deliver { topic, node, .. }
                    | outbox::Ctx::Revoke { topic, node, .. } => (topic.clone(), node.clone()),
                };
                match try_decode_response::<Response>(&body) {
                    Ok(Ok(Response::Delivered { up_to })) if self.outbox.is_progress(&c, up_to) => {
                        self.outbox
                            .on_delivered(c, up_to, &self.streams, now, &mut b, &mut o);
                    }
                    Ok(Ok(Response::Delivered { up_to })) => {
                        let why = format!("{from} took none of the batch (it has up to {up_to})");
                        self.outbox
                            .on_failed(c, None, &why, &mut self.rng, now, &mut o);
                    }
                    Ok(Err(e)) if e.code == ErrorCode::NotFound => {
                        // It does not subscribe (any more): stop sending to it.
                        self.outbox.unsubscribe(&topic, &node, &mut b);
                        if !self.outbox.subscribes(&node) {
                            self.liveness.forget(&node);
                            self.outbox.forget_down(&node);
                        }
                        self.roster_changed(&topic, out);
                        o.push(log(
                            Level::Info,
                            format!("{topic}: {node} no longer subscribes; dropped"),
                        ));
                    }
                    other => {
                        let why = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no Delivered answer from {from}"),
                        };
                        self.outbox
                            .on_failed(c, None, &why, &mut self.rng, now, &mut o);
                    }
                }
                self.prune(&StreamKey::new(&self.me, &topic), &mut b);
                push_store(out, b);
                Self::lift_out(o, out);
            }
            Ctx::PeerSubscribe {
                request,
                app,
                stream,
            } => {
                let r = match try_decode_response::<Response>(&body) {
                    Ok(Ok(Response::PeerSubscribed { next_seq })) if next_seq > MAX_SEQ => {
                        Err(ApiError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "{from} answered PeerSubscribe with next_seq {next_seq}, \
                                 beyond {MAX_SEQ}; not subscribed"
                            ),
                        ))
                    }
                    Ok(Ok(Response::PeerSubscribed { next_seq })) => {
                        let mut b = Batch::forced();
                        // Admitted again while the apps of a revoked stream are being told.
                        self.streams.readmit(&stream, &mut b);
                        self.streams
                            .ensure(&stream, next_seq.saturating_sub(1), true, &mut b);
                        push_store(out, b);
                        self.add_reader(&app, &stream, out)
                    }
                    Ok(Err(e)) => Err(e),
                    _ => Err(ApiError::new(
                        ErrorCode::Unavailable,
                        format!("{from} gave no valid answer to PeerSubscribe"),
                    )),
                };
                out.push(Effect::reply(request, encode_result(&r)));
            }
        }
    }

    fn on_send_failed(
        &mut self,
        kind: SendErrorKind,
        target: Address,
        ctx: Ctx,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        match ctx {
            Ctx::LiveCheck { node, ping } => self.live_ping_failed(node, ping, now, out),
            Ctx::Live(liveness::Ctx::Subscribe) => {
                let mut l = Vec::new();
                self.liveness
                    .on_answer(false, &format!("{kind:?}"), &mut self.rng, &mut l);
                Self::lift_live(l, out);
            }
            Ctx::Sign { topic, token, .. } => {
                self.publish_failed(&topic, token, format!("{kind:?}"), out)
            }
            // Not checked is not verified: the publisher sends it again.
            Ctx::Verify { token, index } => self.verified(token, index, false, now, out),
            Ctx::SignRoster { roster } => self.roster_unsigned(&roster.topic, out),
            Ctx::Relay(c) => {
                let mut r = Vec::new();
                self.relays.on_failed(c, &mut self.rng, now, &mut r);
                Self::lift_relay(r, out);
            }
            Ctx::Hello { token } => match self.hellos.failed(token, kind, now, PROCESS) {
                Some(HelloOutcome::Delivered(w)) => self.hello_delivered(w, out),
                Some(HelloOutcome::Refused(w, e)) => {
                    out.push(Effect::reply(w.request, encode_result::<Response>(&Err(e))))
                }
                None => {}
            },
            Ctx::App(c) => {
                let mut a = Vec::new();
                self.apps.on_failed(c, &mut self.rng, &mut a);
                Self::lift_app(a, out);
            }
            Ctx::Resume { stream, graft } => {
                let mut c = Vec::new();
                self.catchup.failed(&stream, graft, &mut self.rng, &mut c);
                Self::lift_catchup(c, out);
            }
            Ctx::Out(c @ outbox::Ctx::Revoke { .. }) => {
                let mut o = Vec::new();
                let mut b = Batch::lazy();
                self.outbox.on_revoke_answer(
                    c,
                    false,
                    &format!("{kind:?}"),
                    &mut self.rng,
                    now,
                    &mut b,
                    &mut o,
                );
                push_store(out, b);
                Self::lift_out(o, out);
            }
            Ctx::Out(c) => {
                let mut o = Vec::new();
                self.outbox.on_failed(
                    c,
                    Some(kind),
                    &format!("{kind:?}"),
                    &mut self.rng,
                    now,
                    &mut o,
                );
                Self::lift_out(o, out);
            }
            Ctx::PeerSubscribe { request, .. } => {
                let e = ApiError::new(
                    ErrorCode::Unavailable,
                    format!("{} did not answer ({kind:?}); try again later", target.node),
                );
                out.push(Effect::reply(request, encode_result::<Response>(&Err(e))));
            }
        }
    }

    fn on_tick(&mut self, t: Tick, now: Millis, out: &mut Vec<Eff>) {
        match t {
            Tick::PublishWait { topic, token } => self.try_commit(&topic, token, now, out),
            Tick::Out(t) => {
                let mut o = Vec::new();
                self.outbox.on_timer(t, &self.streams, now, &mut o);
                Self::lift_out(o, out);
            }
            Tick::App(t) => {
                let mut a = Vec::new();
                self.apps.on_timer(t, &self.streams, now, &mut a);
                Self::lift_app(a, out);
            }
            Tick::Relay(t) => {
                let mut r = Vec::new();
                self.relays.on_timer(t, &self.streams, now, &mut r);
                Self::lift_relay(r, out);
            }
            Tick::Catchup(catchup::Timer::Restart { stream, graft }) => {
                let mut c = Vec::new();
                if let Some((to, body)) = self.restart_word(&stream, graft) {
                    if graft {
                        self.relays.restart_grafted(&stream, &to);
                    }
                    self.catchup.restart(&stream, graft, to, body, &mut c);
                } else {
                    self.catchup.answered(&stream, graft);
                }
                Self::lift_catchup(c, out);
            }
            Tick::Catchup(t) => {
                let catchup::Timer::Ask { stream } = &t else {
                    return;
                };
                let ours = self
                    .streams
                    .get(stream)
                    .filter(|s| s.remote && self.relays.parent(stream).is_none())
                    .map(|s| s.last);
                let mut c = Vec::new();
                self.catchup.on_timer(t, ours, &mut self.rng, &mut c);
                Self::lift_catchup(c, out);
            }
            Tick::Roster { topic } => self.sign_roster(&topic, now, out),
            Tick::LiveCheck { node, check } => {
                if self.checking.get(&node).is_none_or(|c| c.id != check) {
                    return;
                }
                if Status::is_down(self.liveness.status(&node)) {
                    self.live_ping(node, out);
                } else {
                    // Presence says it is back: the check is over.
                    self.checking.remove(&node);
                    self.pump_checks(now, out);
                }
            }
            Tick::LiveQueue => {
                self.check_timer = false;
                self.pump_checks(now, out);
            }
            Tick::LiveRecheck { node } => {
                if Status::is_down(self.liveness.status(&node)) && !self.outbox.is_down(&node) {
                    self.queue_check(node, now, out);
                }
            }
            Tick::Live(t) => {
                let mut l = Vec::new();
                self.liveness.on_timer(t, &mut l);
                Self::lift_live(l, out);
            }
            Tick::Prune => {
                let mut b = Batch::lazy();
                let keys: Vec<StreamKey> = self.streams.map.keys().cloned().collect();
                for k in &keys {
                    self.prune(k, &mut b);
                }
                push_store(out, b);
                // Readers behind a pruned range are told of it.
                let mut a = Vec::new();
                self.apps.pump_all(&self.streams, now, &mut a);
                Self::lift_app(a, out);
                for k in keys.iter().filter(|k| k.publisher == self.me) {
                    let mut o = Vec::new();
                    self.outbox.pump_topic(&k.topic, &self.streams, now, &mut o);
                    Self::lift_out(o, out);
                }
                out.push(Effect::timer(PRUNE_EVERY_MS, Tick::Prune));
            }
        }
    }

    fn start(&mut self, records: Records, seed: u64, now: Millis, out: &mut Vec<Eff>) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.outbox.restart(now);
        let bad = self.streams.restore(&records)
            + self.outbox.restore(&records)
            + self.relays.restore(&records)
            + self.apps.restore(&records);
        // Our large topics' members are the tree's.
        for (topic, t) in self.outbox.topics.iter_mut() {
            if let Some(tree) = self.relays.get(&StreamKey::new(&self.me, topic)) {
                t.in_tree = tree.roster.members.iter().cloned().collect();
            }
        }
        if bad > 0 {
            out.push(log(
                Level::Error,
                format!("{bad} stored records unreadable; skipped"),
            ));
        }
        out.push(log(
            Level::Info,
            format!(
                "notify started on {}: {} topics, {} streams, {} app subscriptions",
                self.our,
                self.outbox.topics.len(),
                self.streams.map.len(),
                self.apps.len()
            ),
        ));
        // We may have been away: ask each publisher (or our tree parent) for what we lack,
        // until it answers (our networking may not be up yet).
        let remote: Vec<StreamKey> = self
            .streams
            .map
            .iter()
            .filter(|(_, s)| s.remote)
            .map(|(k, _)| k.clone())
            .collect();
        for k in remote {
            for graft in [true, false] {
                if let Some((to, body)) = self.restart_word(&k, graft) {
                    if graft {
                        self.relays.restart_grafted(&k, &to);
                    }
                    let mut c = Vec::new();
                    self.catchup.restart(&k, graft, to, body, &mut c);
                    Self::lift_catchup(c, out);
                }
            }
        }
        let mut r = Vec::new();
        self.relays.start(&self.streams, now, &mut r);
        Self::lift_relay(r, out);
        let keys: Vec<StreamKey> = self.streams.map.keys().cloned().collect();
        for k in keys {
            let mut o = Vec::new();
            if k.publisher == self.me {
                self.outbox.pump_topic(&k.topic, &self.streams, now, &mut o);
                self.outbox.pump_revokes(&k.topic, now, &mut o);
            }
            Self::lift_out(o, out);
            let mut a = Vec::new();
            self.apps.pump_stream(&k, &self.streams, now, &mut a);
            Self::lift_app(a, out);
        }
        let first = self.rng.gen_range(PRUNE_EVERY_MS / 2..=PRUNE_EVERY_MS);
        out.push(Effect::timer(first, Tick::Prune));
        // Presence's word on our subscribers (a local request; retried while presence is
        // not up).
        let mut l = Vec::new();
        self.liveness.subscribe(&mut l);
        Self::lift_live(l, out);
    }
}

impl Service for Notify {
    type Ctx = Ctx;
    type Timer = Tick;

    const WEB_API: bool = true;

    fn name(&self) -> &'static str {
        crate::NAME
    }

    fn handle(&mut self, now: Now, input: Input<Ctx, Tick>) -> Vec<Eff> {
        self.wall = now.wall;
        let t = now.mono;
        let mut out = Vec::new();
        self.traffic.observe_input(&self.me, &input);
        match input {
            Input::Start { records, seed, .. } => {
                self.start(records, seed, t, &mut out);
            }
            Input::Request {
                id,
                from,
                body,
                blob,
                timeout_s,
            } => {
                self.heard_from(&from, t, &mut out);
                self.handle_request(id, from, body, blob, timeout_s.is_some(), t, &mut out)
            }
            Input::Response {
                from,
                body,
                blob,
                ctx,
            } => {
                // Any answer counts, a check's `Pong` too (it ends that check).
                self.heard_from(&from, t, &mut out);
                self.on_response(from, body, blob, ctx, t, &mut out)
            }
            Input::SendFailed { kind, target, ctx } => {
                self.on_send_failed(kind, target, ctx, t, &mut out)
            }
            Input::Timer(tick) => self.on_tick(tick, t, &mut out),
            // The local API over HTTP, as the node's owner (p2p_common::web).
            Input::Http { id, request } => match p2p_common::web::route(id, request, &self.me) {
                Ok(req) => return self.handle(now, req),
                Err(reply) => out.push(reply),
            },
            Input::Read { .. }
            | Input::WsOpen { .. }
            | Input::WsMessage { .. }
            | Input::WsClose { .. } => {}
        }
        self.traffic.observe_effects(&self.me, &out);
        out
    }
}

/// Put better-ranked leaves in the interior: each of the first `interior` members whose
/// rank is above 0 (lower is better; the roster uses 1 for a confirmed death, 0 for the
/// rest) swaps places with the best-ranked leaf ranked better than it; among leaves of that rank, the one `prefer` puts lowest (our evidence:
/// no recent failures of ours to it, then the longest subscribed), then the lowest name: never by its place
/// in the order (the newest subscriber is last). Each leaf moves at most once. Members
/// otherwise keep their places.
pub fn promote(
    members: &mut [NodeId],
    interior: usize,
    rank: &dyn Fn(&NodeId) -> u8,
    prefer: &dyn Fn(&NodeId) -> (u8, u64),
) {
    let n = members.len();
    let interior = interior.min(n);
    let mut moved = vec![false; n];
    // Each leaf's key once (rank, preference, name order by index below).
    let keys: Vec<(u8, (u8, u64))> = members
        .iter()
        .enumerate()
        .map(|(j, m)| {
            if j < interior {
                (u8::MAX, (u8::MAX, u64::MAX))
            } else {
                (rank(m), prefer(m))
            }
        })
        .collect();
    for i in 0..interior {
        let r = rank(&members[i]);
        if r == 0 {
            continue;
        }
        let mut best: Option<usize> = None;
        for j in interior..n {
            if moved[j] || keys[j].0 >= r {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => (keys[j], &members[j]) < (keys[b], &members[b]),
            };
            if better {
                best = Some(j);
            }
        }
        if let Some(j) = best {
            members.swap(i, j);
            moved[j] = true;
        }
    }
}

/// The address of `notify` on `node`.
pub fn address(node: &NodeId) -> Address {
    Address::new(node.clone(), ProcessId::ours(crate::NAME))
}

#[cfg(test)]
mod doc_numbers {
    //! docs/notify.md states the numbers below in words; each phrase is built here from the
    //! constant it names, so changing one fails this test until the text follows.
    use super::*;
    use crate::apps::APP_TIMEOUT_S;
    use crate::catchup::{ASK_AFTER_MS, MAX_ASKS};
    use crate::outbox::{
        BACKOFF, BREAKER, MAX_BATCH_BYTES, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, TIMEOUT_DOUBLINGS,
    };
    use crate::relay::{ANNOUNCE_EVERY_MS, GRAFT_AFTER_MS, MAX_GRAFT_TRIES};
    use p2p_common::api::notify::{MAX_MAX_AGE_S, MAX_MAX_COUNT, MIN_MAX_AGE_S};

    /// `1234` as `1,234`.
    fn thousands(n: usize) -> String {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// Members per level of a tree of `members` below the publisher, fan-out `fanout`.
    fn levels(members: usize, fanout: u32) -> Vec<usize> {
        let mut names: Vec<NodeId> = (0..members)
            .map(|i| format!("n{i:04}.os").parse().unwrap())
            .collect();
        names.sort();
        let r = Roster {
            publisher: "alice.os".parse().unwrap(),
            topic: "t".into(),
            epoch: 1,
            fanout,
            members: names,
            signature: vec![],
            index: Default::default(),
        };
        let mut level = vec![r.publisher.clone()];
        let mut sizes = Vec::new();
        loop {
            let next: Vec<NodeId> = level.iter().flat_map(|n| r.children(n)).collect();
            if next.is_empty() {
                return sizes;
            }
            sizes.push(next.len());
            level = next;
        }
    }

    #[test]
    fn docs_notify_md_states_the_numbers_the_code_uses() {
        let doc = include_str!("../../docs/notify.md");
        let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let ret = Retention::default();
        let lv = levels(199, FANOUT);
        let lv_text: Vec<String> = lv.iter().map(|n| n.to_string()).collect();
        assert_eq!(MAX_SEQ, (1 << 53) - 1);
        let phrases = [
            format!("(at most {} KiB;", MAX_PAYLOAD >> 10),
            format!(
                "carrying up to {MAX_BATCH} notes ({} MiB of payloads)",
                MAX_BATCH_BYTES >> 20
            ),
            format!(
                "`Backoff {{ base {} s, ×{}, max {} s, Equal jitter }}`",
                BACKOFF.base_ms / 1_000,
                BACKOFF.factor,
                BACKOFF.max_ms / 1_000
            ),
            format!(
                "opens after {} failures in a row for {} s",
                BREAKER.failure_threshold,
                BREAKER.open_ms / 1_000
            ),
            format!(
                "at most one per node every {} s (`RESUME_EARLY_GAP_MS`)",
                crate::outbox::RESUME_EARLY_GAP_MS / 1_000
            ),
            format!(
                "adds at most one `Deliver` per {} s to what the backoff sends",
                crate::outbox::RESUME_EARLY_GAP_MS / 1_000
            ),
            format!(
                "(smoothed round trips, {}..{} s, doubled at most {TIMEOUT_DOUBLINGS} times",
                MIN_TIMEOUT_MS / 1_000,
                MAX_TIMEOUT_MS / 1_000
            ),
            format!("within {} s, sends `Resume {{ up_to }}` itself", ASK_AFTER_MS / 1_000),
            format!("backoff {}..30 s with jitter, at most {MAX_ASKS} times", ASK_AFTER_MS / 1_000),
            format!("no answer within {APP_TIMEOUT_S} s is retried"),
            format!("A topic with {TREE_THRESHOLD} or more subscriber nodes (`TREE_THRESHOLD`)"),
            format!("costs the publisher at most {} copies", TREE_THRESHOLD - 1),
            format!("{} s after a change", ROSTER_AFTER_MS / 1_000),
            format!("and the fan-out ({FANOUT})"),
            format!(
                "a heap of fan-out {FANOUT} with the publisher at the root (at 200 nodes: {} members per level, {} hops)",
                lv_text.join(", "),
                lv.len()
            ),
            format!("handles only its {FANOUT} children's answers"),
            format!("and every {} s, a member sends `IHave", ANNOUNCE_EVERY_MS / 1_000),
            format!("does not have them {} s later", GRAFT_AFTER_MS / 1_000),
            format!("at most {MAX_GRAFT_TRIES} times (then"),
            format!(
                "at most {} members, fan-out 2..={MAX_FANOUT})",
                thousands(MAX_SUBSCRIBERS)
            ),
            format!(
                "a roster has at most {} members and fan-out {MAX_FANOUT}",
                thousands(MAX_SUBSCRIBERS)
            ),
            format!(
                "Each stream keeps its entries for {} hours (by the keeping node's wall clock), at most {} entries and {} MiB",
                ret.retention_ms / 3_600_000,
                thousands(ret.max_entries),
                ret.max_bytes >> 20
            ),
            format!(
                "(`max_age_s`, {MIN_MAX_AGE_S} s..={} days)",
                MAX_MAX_AGE_S / 86_400
            ),
            format!("(`max_count`, 1..={})", thousands(MAX_MAX_COUNT as usize)),
            format!("({INBOUND_PER_SECOND} messages per second, burst {INBOUND_BURST})"),
            format!(
                "at most {MAX_BATCH} notes and {} KiB of headers per `Deliver`",
                MAX_BODY >> 10
            ),
            "at most 2^53 - 1 (`MAX_SEQ`".to_string(),
            format!(
                "at most {MAX_VERIFYING} batches being verified ({MAX_VERIFYING_PER_SENDER} from one sending node"
            ),
            format!("cannot take every slot) and {MAX_PUBLISHING} publishes per topic being signed at once"),
            format!(
                "(at most {} and {} MiB of them per page)",
                p2p_common::api::notify::MAX_PAGE,
                MAX_PAGE_BYTES >> 20
            ),
            format!(
                "the same backoff (at most {} s apart), until",
                BACKOFF.max_ms / 1_000
            ),
            format!(
                "backoff {}..{} s with jitter, one in flight per stream, at most {} times",
                crate::catchup::RESTART_BACKOFF.base_ms / 1_000,
                crate::catchup::RESTART_BACKOFF.max_ms / 1_000,
                crate::catchup::MAX_RESTART_TRIES
            ),
            format!(
                "at least {} of its children, and more than half of the fan-out ({} at fan-out 8, {} at fan-out 4), lacked it; at {} such numbers within {} s the relay is demoted",
                crate::withhold::MIN_CHILDREN,
                crate::withhold::need(8),
                crate::withhold::need(4),
                crate::withhold::MIN_NUMBERS,
                crate::withhold::WINDOW_MS / 1_000
            ),
            format!(
                "one whose last {} acknowledgements that moved it on include {} answers to",
                crate::withhold::RETRY_WINDOW,
                crate::withhold::MIN_RETRIED
            ),
            format!(
                "so {} of {} happens about once in 400,000 windows",
                crate::withhold::MIN_RETRIED,
                crate::withhold::RETRY_WINDOW
            ),
            format!(
                "(its place among the publisher's tree children) is not judged again for those {} s",
                crate::withhold::DEMOTED_MS / 1_000
            ),
            format!(
                "before, or at most {} s after (the publisher pushes",
                crate::withhold::ACK_SLACK_MS / 1_000
            ),
            format!(
                "for {} s it ranks as a confirmed death",
                crate::withhold::DEMOTED_MS / 1_000
            ),
            format!(
                "at most {} numbers with a bit per child, forgotten with a roster that gives it other children and after {} s, and {} bits of acknowledgements, forgotten when it is no longer a tree child of the publisher; at most {} demotion marks, {} suspect children and a mark per seat per topic",
                crate::withhold::MAX_NUMBERS,
                crate::withhold::WINDOW_MS / 1_000,
                crate::withhold::RETRY_WINDOW,
                crate::withhold::MAX_DEMOTED,
                crate::withhold::MAX_SUSPECTS
            ),
            format!(
                "at most once per {} s per topic, `LIVENESS_ROSTER_GAP_MS`",
                LIVENESS_ROSTER_GAP_MS / 1_000
            ),
            format!(
                "at least {} s apart, `LIVENESS_NODE_GAP_MS`",
                LIVENESS_NODE_GAP_MS / 1_000
            ),
            format!(
                "`Ping`s (one in flight per node, {LIVE_CHECK_TIMEOUT_S} s each, {}..{} s apart",
                LIVE_CHECK_GAP_MS / 1_000,
                2 * LIVE_CHECK_GAP_MS / 1_000
            ),
            format!(
                "only once at least {LIVE_CHECK_TRIES} failed and the node's notify sent us nothing for {} s (`LIVE_SILENCE_MS`)",
                LIVE_SILENCE_MS / 1_000
            ),
            format!(
                "at most {LIVE_MAX_STRIKES} times (so at most {} s), and one fades per {} s (`STRIKE_DECAY_MS`; kept per node of the view, so for at most {} nodes)",
                (LIVE_SILENCE_MS << LIVE_MAX_STRIKES) / 1_000,
                crate::liveness::STRIKE_DECAY_MS / 1_000,
                thousands(crate::liveness::MAX_TRACKED)
            ),
            format!("at most {LIVE_MAX_CHECKS} at once (`LIVE_MAX_CHECKS`), started from a token bucket (burst {LIVE_CHECK_BURST}, one per {LIVE_CHECK_EVERY_MS} ms)"),
            format!(
                "has at most {LIVE_MAX_CHECKS} `Ping`s of ours in flight and {} new checks a second",
                1_000 / LIVE_CHECK_EVERY_MS
            ),
            format!(
                "taken about {} s after presence reports it (not 15 s), and up to {} s after",
                LIVE_SILENCE_MS / 1_000,
                (LIVE_SILENCE_MS << LIVE_MAX_STRIKES) / 1_000
            ),
            format!(
                "the next try waits {} s (`PAUSED_RETRY_MS`",
                crate::outbox::PAUSED_RETRY_MS / 1_000
            ),
            format!(
                "retried with backoff {}..{} s while presence is not up",
                crate::liveness::SUBSCRIBE_BACKOFF.base_ms / 1_000,
                crate::liveness::SUBSCRIBE_BACKOFF.max_ms / 1_000
            ),
            format!(
                "one of our topics (at most {})",
                thousands(crate::liveness::MAX_TRACKED)
            ),
            format!(
                "{} subscriber nodes per topic, {MAX_TOPICS} topics, {} app subscriptions",
                thousands(MAX_SUBSCRIBERS),
                thousands(MAX_LOCAL_SUBSCRIPTIONS)
            ),
        ];
        let missing: Vec<&String> = phrases
            .iter()
            .filter(|p| !doc.contains(p.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/notify.md does not say: {missing:#?}"
        );
        assert_eq!(thousands(1_024), "1,024");
        assert_eq!(thousands(100), "100");
    }
}

#[cfg(test)]
mod order_tests {
    use super::promote;
    use p2p_common::NodeId;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names
            .iter()
            .map(|n| format!("{n}.os").parse().unwrap())
            .collect()
    }

    /// Mixed ranks (`promote` takes any; the roster uses 0 and 1 only): a rank-1 interior
    /// member handled first does not use up the rank-0 leaves a rank-2 one after it
    /// needs, and a rank-2 member takes a rank-1 leaf's place when no rank-0 leaf is left;
    /// the first leaf of the best rank is chosen, each at most once.
    #[test]
    fn promote_searches_per_rank_and_moves_each_leaf_once() {
        // Ranks: a = 0, s = 1, d = 2.
        let rank = |n: &NodeId| match n.as_str().as_bytes()[0] {
            b's' => 1,
            b'd' => 2,
            _ => 0,
        };
        // Equal evidence for all: the name decides.
        let same = |_: &NodeId| (1, 0);
        let mut m = ids(&["s1", "d1", "a1", "d2", "s2", "a2", "d3", "s3"]);
        promote(&mut m, 4, &rank, &same);
        // s1 takes a2 (the only rank-0 leaf); d1, with no rank-0 leaf left, a rank-1 leaf,
        // s2 (by name); d2 takes s3. Leaves moved once each.
        assert_eq!(m, ids(&["a2", "s2", "a1", "s3", "d1", "s1", "d3", "d2"]));
        // Without better leaves, nothing moves.
        let mut m = ids(&["d1", "a1", "d2", "d3"]);
        promote(&mut m, 2, &rank, &same);
        assert_eq!(m, ids(&["d1", "a1", "d2", "d3"]));
        // All alive: the order stays.
        let mut m = ids(&["a3", "a1", "a2"]);
        promote(&mut m, 1, &rank, &same);
        assert_eq!(m, ids(&["a3", "a1", "a2"]));
    }

    /// Review 13c defect 2: the leaf that takes a dead relay's place is chosen by our own
    /// evidence, not by its place in the held order. With equal evidence the longest
    /// subscribed wins over a later subscriber (whatever their names and places); a leaf
    /// our deliveries have not failed to wins over an older subscriber they failed to.
    #[test]
    fn promote_chooses_by_evidence_then_longest_subscribed() {
        let rank = |n: &NodeId| u8::from(n.as_str().starts_with('d'));
        // (not failing: 0, failing: 1; subscription number: lower is longer subscribed).
        let since = |n: &NodeId| match n.as_str() {
            "a9.os" => 9, // the newest subscriber, lowest name
            "b2.os" => 2,
            "c5.os" => 5,
            _ => 0,
        };
        // None failing: b2 (subscribed before a9 and c5), though a9 sorts first by
        // name and c5 is last in the held order.
        let stale = |n: &NodeId| (1, since(n));
        let mut m2 = ids(&["d1", "a9", "b2", "c5"]);
        promote(&mut m2, 1, &rank, &stale);
        assert_eq!(m2[0].as_str(), "b2.os", "{m2:?}");
        let mut m3 = ids(&["d1", "c5", "a9", "b2"]);
        promote(&mut m3, 1, &rank, &stale);
        assert_eq!(m3[0].as_str(), "b2.os", "{m3:?}");
        // Our deliveries failed to all but c5: c5 wins, though b2 subscribed earlier.
        let sound = |n: &NodeId| (u8::from(n.as_str() != "c5.os"), since(n));
        let mut m4 = ids(&["d1", "a9", "b2", "c5"]);
        promote(&mut m4, 1, &rank, &sound);
        assert_eq!(m4[0].as_str(), "c5.os", "{m4:?}");
        // Two dead relays: the two best in that order, each moved once.
        let mut m5 = ids(&["d1", "d2", "a9", "b2", "c5", "x"]);
        promote(&mut m5, 2, &rank, &sound);
        assert_eq!(&m5[..2], &ids(&["c5", "x"])[..], "{m5:?}");
    }
}
