//! The relay tree of a large topic (Plumtree-style): the publisher signs the topic's member
//! list (a [`Roster`]); every member derives the same `fanout`-ary tree from it, keeps a
//! durable outbox per child (the child's acknowledged number over our copy of the stream,
//! as [`crate::outbox`] does for direct subscribers) and pushes what it receives to its
//! children (eager links). Each member also announces what it has (`IHave`) to two lazy
//! peers on every step forward and every 30 s; a member that hears of numbers it lacks and
//! does not get them within 2 s grafts onto the announcer (`Graft`: push to me from
//! `up_to` on), then onto the publisher, with backoff, at most [`MAX_GRAFT_TRIES`] times. A
//! grafted link is pruned (`Prune`) once the tree parent delivers anything again (new
//! numbers or duplicates: the parent's link works), or once it only brings duplicates; the
//! node pushed to also drops it by itself [`GRAFT_LEASE_MS`] after the last `Graft` (a lost
//! `Prune`, or a grafter that lied, cannot keep it for ever; a grafter still behind grafts
//! again). `IHave` is taken only over a lazy link of the roster (from a member whose lazy
//! peers include us, or one of ours) and only up to [`MAX_AHEAD`] past what we have.
//! Acknowledgement is hop by hop: each node answers its parent, so the publisher handles
//! only its own children's answers.
//!
//! Relays forward the publisher's signed notes unchanged (receivers verify each one) and
//! never a lost range (only the publisher may say a number is lost). The same machine runs
//! the root of our own large topics: there, `lost` ranges are sent as the outbox does.
//!
//! Storage: `g <pub> <topic>` the roster (written forced), `c <pub> <topic> <child>` a tree
//! child's acknowledged number (lazy), `h <pub> <topic>` the epoch of the roster we held
//! when we left a stream (so that an old roster replayed after we subscribe again is not
//! taken; at most [`MAX_LEFT`]). Grafted links are not stored: a grafter grafts again.
//!
//! It owns its timers ([`Timer`]) and contexts ([`Ctx`]); the core wraps them.

use crate::outbox::MAX_BATCH_BYTES;
use crate::streams::{Entry, StreamKey, Streams};
use p2p_common::api::encode;
use p2p_common::api::notify::{
    Notification, RelayStats, Request, Roster, SeqRange, MAX_BATCH, PROCESS,
};
use p2p_common::resilience::{Backoff, BreakerConfig, Breakers, Jitter};
use p2p_common::service::log;
use p2p_common::{Address, Batch, Effect, Expect, Level, Millis, NodeId, ProcessId, Records};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How long a member waits for numbers a lazy peer announced before grafting.
pub const GRAFT_AFTER_MS: Millis = 2_000;
/// Grafts per gap before giving up (until the next announcement).
pub const MAX_GRAFT_TRIES: u32 = 6;
/// How often a member announces what it has to its lazy peers, even without news.
pub const ANNOUNCE_EVERY_MS: Millis = 30_000;
/// How long a grafted link lives after the `Graft` that made it (or renewed it).
pub const GRAFT_LEASE_MS: Millis = 60_000;
/// How far past our own last number an announcement is believed: a lazy peer that says it
/// is further ahead makes us graft for at most this many numbers at a time.
pub const MAX_AHEAD: u64 = MAX_BATCH as u64;
/// Streams left whose last roster epoch we remember; past this the longest-left is
/// forgotten.
pub const MAX_LEFT: usize = 1_024;
/// How long a relay that cannot serve a child's gap waits before probing it again (the
/// child grafts onto the publisher for the gap meanwhile; the probe's answer says how far
/// it got, and once it is past what we dropped we push to it again).
pub const GAP_PROBE_MS: Millis = 5_000;
/// Timeout of a push to a child (seconds).
const PUSH_TIMEOUT_S: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Push to `node` again.
    Retry { stream: StreamKey, node: NodeId },
    /// Are we still behind what was announced?
    Behind { stream: StreamKey },
    /// Announce to the lazy peers.
    Announce { stream: StreamKey },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    /// A `Deliver` to `node` carrying up to `up_to`, and roster `epoch` (0: none).
    Push {
        stream: StreamKey,
        node: NodeId,
        up_to: u64,
        epoch: u64,
    },
}

type Eff = Effect<Ctx, Timer>;

/// One node we push to.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// What it acknowledged (None: not known yet; the first push is an empty probe).
    pub acked: Option<u64>,
    /// The roster epoch it has acknowledged.
    epoch: u64,
    in_flight: bool,
    waiting: bool,
    attempt: u32,
    /// It grafted onto us (it is not our tree child).
    pub grafted: bool,
    /// A grafted link is dropped once this time has passed.
    lease_until: Millis,
    /// Payload copies pushed on this link (retries included).
    pub sent: u64,
    /// Pushes that failed.
    pub failed: u64,
    /// Numbers it acknowledged beyond what it had when we first heard from it, each once.
    pub delivered: u64,
    /// The highest number it ever acknowledged to us: `delivered` counts from here (a
    /// `Graft` below it, from a node that lost what it had or says so, re-sends those
    /// numbers, and they are not counted again).
    counted: Option<u64>,
    /// We no longer hold what it lacks next (a relay keeps an entry only until its children
    /// of the time have it; this child is new, after a roster change): at this mark of its
    /// we told it what we have (`IHave`), so it grafts onto the publisher for the gap.
    gap_told: Option<u64>,
}

#[derive(Debug, Clone)]
struct Behind {
    up_to: u64,
    from: NodeId,
    tries: u32,
}

/// Our part in one stream's tree.
#[derive(Debug, Clone)]
pub struct Tree {
    pub roster: Roster,
    pub links: BTreeMap<NodeId, Link>,
    /// Nodes we grafted onto (pruned when our parent delivers again).
    grafted_from: BTreeSet<NodeId>,
    behind: Option<Behind>,
    announcing: bool,
    pub stats: RelayStats,
    /// Pushes that failed, on every link (also the ones gone since).
    pub failed: u64,
    /// `delivered` of links gone since (a roster change, a prune, an expired lease), so a
    /// tree's count never goes down.
    pub delivered_gone: u64,
    /// What each roster member whose link is gone had acknowledged to us at most, so a
    /// new link to it counts only past that (at most the roster's members).
    counted_gone: BTreeMap<NodeId, u64>,
}

impl Tree {
    /// Drop the link to `n`, keeping its counts.
    fn drop_link(&mut self, n: &NodeId) -> Option<Link> {
        let l = self.links.remove(n)?;
        self.delivered_gone += l.delivered;
        if let Some(c) = l.counted {
            let e = self.counted_gone.entry(n.clone()).or_insert(c);
            *e = (*e).max(c);
        }
        Some(l)
    }

    /// What a new link to `n` has been counted up to already (a link of it that is gone).
    fn counted_before(&mut self, n: &NodeId) -> Option<u64> {
        self.counted_gone.remove(n)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LinkRecord {
    acked: u64,
}

fn roster_key(k: &StreamKey) -> Vec<u8> {
    format!("g {} {}", k.publisher, k.topic).into_bytes()
}
fn left_key(k: &StreamKey) -> Vec<u8> {
    format!("h {} {}", k.publisher, k.topic).into_bytes()
}
fn link_key(k: &StreamKey, node: &NodeId) -> Vec<u8> {
    format!("c {} {} {node}", k.publisher, k.topic).into_bytes()
}
/// Tell `to` (one-way) that we hold `k` up to `up_to`, counted as an announcement.
fn i_have(k: &StreamKey, to: &NodeId, up_to: u64, stats: &mut RelayStats, out: &mut Vec<Eff>) {
    stats.announcements += 1;
    out.push(Effect::notify(
        address(to),
        encode(&Request::IHave {
            publisher: k.publisher.clone(),
            topic: k.topic.clone(),
            up_to,
        }),
    ));
}

fn address(node: &NodeId) -> Address {
    Address::new(node.clone(), ProcessId::ours(PROCESS))
}

#[derive(Debug)]
pub struct Relays {
    me: NodeId,
    pub trees: BTreeMap<StreamKey, Tree>,
    /// Streams we left: the roster epoch we held then, and when we left (a counter).
    left: BTreeMap<StreamKey, (u64, u64)>,
    left_count: u64,
    backoff: Backoff,
    breakers: Breakers,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeftRecord {
    epoch: u64,
}

impl Relays {
    pub fn new(me: NodeId) -> Self {
        Relays {
            me,
            trees: BTreeMap::new(),
            left: BTreeMap::new(),
            left_count: 0,
            backoff: Backoff {
                base_ms: 1_000,
                max_ms: 30_000,
                factor: 2,
                jitter: Jitter::Equal,
            },
            breakers: Breakers::new(
                BreakerConfig {
                    failure_threshold: 5,
                    open_ms: 30_000,
                    half_open_max_calls: 1,
                    success_threshold: 1,
                },
                4_096,
            ),
        }
    }

    pub fn get(&self, k: &StreamKey) -> Option<&Tree> {
        self.trees.get(k)
    }

    /// The epoch of the roster we hold for `k`, or held when we left it (0: none): only a
    /// newer roster is taken.
    pub fn epoch(&self, k: &StreamKey) -> u64 {
        match self.trees.get(k) {
            Some(t) => t.roster.epoch,
            None => self.left.get(k).map_or(0, |l| l.0),
        }
    }

    /// Remember that we left `k` holding roster `epoch`.
    fn remember_left(&mut self, k: &StreamKey, epoch: u64, batch: &mut Batch) {
        self.left_count += 1;
        self.left.insert(k.clone(), (epoch, self.left_count));
        batch.ops.push((
            left_key(k),
            Some(serde_json::to_vec(&LeftRecord { epoch }).expect("serializes")),
        ));
        if self.left.len() > MAX_LEFT {
            let oldest = self
                .left
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(o) = oldest {
                self.left.remove(&o);
                batch.ops.push((left_key(&o), None));
            }
        }
    }

    /// We sent `node` a restart's `Graft` of `k` (to our parent in the roster we held). It
    /// counts as a graft: if a newer roster gives us another parent, that parent's next
    /// delivery prunes it, or the old parent would keep pushing to us on a grafted link
    /// until its lease ends. (Pruning a node that is still our parent does nothing: its
    /// link to us is a tree link.)
    pub fn restart_grafted(&mut self, k: &StreamKey, node: &NodeId) {
        if let Some(t) = self.trees.get_mut(k) {
            t.grafted_from.insert(node.clone());
        }
    }

    /// Our tree parent in `k`.
    pub fn parent(&self, k: &StreamKey) -> Option<NodeId> {
        self.trees.get(k)?.roster.parent(&self.me).cloned()
    }

    /// The lowest number a node we push to may still need (None: no links).
    pub fn min_acked(&self, k: &StreamKey) -> Option<u64> {
        self.trees
            .get(k)?
            .links
            .values()
            .map(|l| l.acked.unwrap_or(0))
            .min()
    }

    /// Take a (verified, newer) roster: our children follow from it. `hint` gives what a
    /// new child is known to have and the highest number it acknowledged to us before (the
    /// publisher knows its direct subscribers' acknowledgements: those are counted
    /// `delivered` already, in its outbox, and the link counts only past them); the others
    /// are probed.
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        &mut self,
        k: &StreamKey,
        roster: Roster,
        hint: &dyn Fn(&NodeId) -> Option<(u64, u64)>,
        streams: &Streams,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) {
        if self.epoch(k) >= roster.epoch {
            return;
        }
        if self.left.remove(k).is_some() {
            batch.ops.push((left_key(k), None));
        }
        batch.ops.push((
            roster_key(k),
            Some(serde_json::to_vec(&roster).expect("serializes")),
        ));
        let children: BTreeSet<NodeId> = roster.children(&self.me).into_iter().collect();
        let me = self.me.clone();
        let t = self.trees.entry(k.clone()).or_insert_with(|| Tree {
            roster: roster.clone(),
            links: BTreeMap::new(),
            grafted_from: BTreeSet::new(),
            behind: None,
            announcing: false,
            failed: 0,
            delivered_gone: 0,
            counted_gone: BTreeMap::new(),
            stats: RelayStats {
                publisher: k.publisher.clone(),
                topic: k.topic.clone(),
                epoch: 0,
                children: 0,
                grafted: 0,
                payloads: 0,
                announcements: 0,
                grafts: 0,
                prunes: 0,
            },
        });
        t.roster = roster;
        t.stats.epoch = t.roster.epoch;
        let gone: Vec<NodeId> = t
            .links
            .iter()
            .filter(|(n, l)| !children.contains(*n) && !(l.grafted && t.roster.contains(n)))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(l) = t.drop_link(&n) {
                if !l.grafted {
                    batch.ops.push((link_key(k, &n), None));
                }
            }
        }
        let roster = &t.roster;
        t.counted_gone.retain(|n, _| roster.contains(n));
        for c in &children {
            let before = if t.links.contains_key(c) {
                None
            } else {
                t.counted_before(c)
            };
            let l = t.links.entry(c.clone()).or_insert_with(|| {
                let h = hint(c);
                Link {
                    acked: h.map(|h| h.0),
                    counted: h.map(|h| h.1).max(before),
                    ..Link::default()
                }
            });
            l.grafted = false;
        }
        let announce = !t.announcing && t.roster.contains(&me);
        if announce {
            t.announcing = true;
            out.push(Effect::timer(
                ANNOUNCE_EVERY_MS,
                Timer::Announce { stream: k.clone() },
            ));
        }
        self.pump_all(k, streams, now, out);
    }

    /// Forget `k` (we no longer subscribe).
    pub fn remove(&mut self, k: &StreamKey, batch: &mut Batch) {
        if let Some(t) = self.trees.remove(k) {
            batch.ops.push((roster_key(k), None));
            for (n, l) in &t.links {
                if !l.grafted {
                    batch.ops.push((link_key(k, n), None));
                }
            }
            self.remember_left(k, t.roster.epoch, batch);
        }
    }

    pub fn pump_all(&mut self, k: &StreamKey, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        let nodes: Vec<NodeId> = self
            .trees
            .get(k)
            .map(|t| t.links.keys().cloned().collect())
            .unwrap_or_default();
        for n in nodes {
            self.pump(k, &n, streams, now, out);
        }
    }

    /// Push to `node` what it lacks of `k` (or the roster it lacks), if it may be sent now.
    pub fn pump(
        &mut self,
        k: &StreamKey,
        node: &NodeId,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let Some(stream) = streams.get(k) else {
            return;
        };
        let root = k.publisher == self.me;
        let Some(t) = self.trees.get_mut(k) else {
            return;
        };
        let epoch = t.roster.epoch;
        let Some(l) = t.links.get_mut(node) else {
            return;
        };
        if l.grafted && now >= l.lease_until && !l.in_flight {
            // Its lease is over (once no push is out; a retry still due finds no link): a
            // grafter still behind grafts again.
            t.drop_link(node);
            out.push(log(
                Level::Debug,
                format!("{k}: grafted link to {node} expired"),
            ));
            return;
        }
        if l.in_flight || l.waiting {
            return;
        }
        let needs_roster = l.epoch < epoch;
        let mut lost = None;
        let mut notes: Vec<Notification> = Vec::new();
        let mut blob = Vec::new();
        let up_to;
        match l.acked {
            // A probe: the answer says what it has.
            None => up_to = stream.last,
            Some(a) => {
                let mut from = a + 1;
                let mut to = a;
                if root && from < stream.first && a < stream.last {
                    lost = Some(SeqRange {
                        from,
                        to: stream.first - 1,
                    });
                    from = stream.first;
                    to = stream.first - 1;
                }
                if !root && from < stream.first && a < stream.last && !needs_roster {
                    // We cannot serve its gap (only the publisher may say what is lost, and
                    // it keeps its whole retention): say what we have, once per mark of
                    // its, so it grafts for the gap and we push the rest after it.
                    if l.gap_told != Some(a) {
                        l.gap_told = Some(a);
                        i_have(k, node, stream.last, &mut t.stats, out);
                    }
                    // Probe it again later: what it got meanwhile (by its graft) does not
                    // reach us otherwise.
                    l.acked = None;
                    l.waiting = true;
                    out.push(Effect::timer(
                        GAP_PROBE_MS,
                        Timer::Retry {
                            stream: k.clone(),
                            node: node.clone(),
                        },
                    ));
                    return;
                }
                for (&seq, e) in stream.entries.range(from..) {
                    match e {
                        Entry::Note { note, payload, .. } if seq == to + 1 => {
                            if notes.len() >= MAX_BATCH
                                || (!notes.is_empty()
                                    && blob.len() + payload.len() > MAX_BATCH_BYTES)
                            {
                                break;
                            }
                            notes.push(note.clone());
                            blob.extend_from_slice(payload);
                            to = seq;
                        }
                        // A relay never forwards a lost range, nor past a hole.
                        _ => break,
                    }
                }
                if notes.is_empty() && lost.is_none() && !needs_roster {
                    return;
                }
                up_to = to;
            }
        }
        if let Err(r) = self.breakers.check(node, now) {
            l.waiting = true;
            out.push(Effect::timer(
                r.retry_after_ms.max(1),
                Timer::Retry {
                    stream: k.clone(),
                    node: node.clone(),
                },
            ));
            return;
        }
        l.in_flight = true;
        t.stats.payloads += notes.len() as u64;
        l.sent += notes.len() as u64;
        let roster = needs_roster.then(|| t.roster.clone());
        let body = encode(&Request::Deliver {
            topic: k.topic.clone(),
            lost,
            notes,
            publisher: (!root).then(|| k.publisher.clone()),
            roster,
            // The root says how far its stream reaches: a lost range without notes ends
            // there (receivers refuse one that does not).
            last: root.then_some(stream.last),
        });
        out.push(Effect::Send {
            to: address(node),
            body,
            blob: Some(blob),
            expect: Some(Expect {
                timeout_s: PUSH_TIMEOUT_S,
                ctx: Ctx::Push {
                    stream: k.clone(),
                    node: node.clone(),
                    up_to,
                    epoch: if needs_roster { epoch } else { 0 },
                },
            }),
        });
    }

    /// Whether the push now out to `node` in `stream` is a retry (an earlier one failed).
    pub fn retrying(&self, stream: &StreamKey, node: &NodeId) -> bool {
        self.trees
            .get(stream)
            .and_then(|t| t.links.get(node))
            .is_some_and(|l| l.attempt > 0)
    }

    /// Our link to `node` in `stream`, if we still have it.
    fn link_mut(&mut self, stream: &StreamKey, node: &NodeId) -> Option<&mut Link> {
        self.trees.get_mut(stream)?.links.get_mut(node)
    }

    /// A push to `node` of `stream` ended (`ok`: answered `Delivered`): the breaker hears of
    /// it, a failure is counted, and the link, if we still have it, may be sent the next
    /// push.
    fn settle(
        &mut self,
        stream: &StreamKey,
        node: &NodeId,
        ok: bool,
        now: Millis,
    ) -> Option<&mut Link> {
        if ok {
            self.breakers.on_success(node, now);
        } else {
            self.breakers.on_failure(node, now);
            if let Some(t) = self.trees.get_mut(stream) {
                t.failed += 1;
            }
        }
        let l = self.link_mut(stream, node)?;
        l.in_flight = false;
        if !ok {
            l.failed += 1;
        }
        Some(l)
    }

    /// Whether `Delivered { up_to: their_up_to }` in answer to `ctx` moves the link on (a
    /// probe or a roster-only push always does): a push of notes the node answers without
    /// taking any is a failure, backed off like one, not sent again at once.
    pub fn is_progress(&self, ctx: &Ctx, their_up_to: u64) -> bool {
        let Ctx::Push {
            stream,
            node,
            up_to,
            ..
        } = ctx;
        match self
            .trees
            .get(stream)
            .and_then(|t| t.links.get(node))
            .and_then(|l| l.acked)
        {
            Some(a) => *up_to <= a || their_up_to.min(*up_to) > a,
            None => true,
        }
    }

    /// `node` answered `Delivered { up_to }`.
    pub fn on_pushed(
        &mut self,
        ctx: Ctx,
        their_up_to: u64,
        streams: &Streams,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) {
        let Ctx::Push {
            stream,
            node,
            up_to,
            epoch,
        } = ctx;
        let Some(l) = self.settle(&stream, &node, true, now) else {
            return;
        };
        l.attempt = 0;
        l.epoch = l.epoch.max(epoch);
        let new = their_up_to.min(up_to);
        let before = l.acked;
        l.acked = Some(match l.acked {
            // A probe, or a node that lost what it had: believe it (it only hurts itself).
            None => new,
            Some(a) => a.max(new),
        });
        if let (Some(b), Some(a)) = (before, l.acked) {
            // Numbers below what we still hold went as a lost range, not delivered.
            let lost_to = streams
                .get(&stream)
                .map_or(0, |s| s.first.saturating_sub(1));
            let from = b.max(l.counted.unwrap_or(0)).max(lost_to.min(a));
            l.delivered += a.saturating_sub(from);
        }
        l.counted = l.counted.max(l.acked);
        if l.acked != before && !l.grafted {
            batch.ops.push((
                link_key(&stream, &node),
                Some(
                    serde_json::to_vec(&LinkRecord {
                        acked: l.acked.unwrap_or(0),
                    })
                    .expect("serializes"),
                ),
            ));
        }
        self.pump(&stream, &node, streams, now, out);
    }

    /// A push failed: back off, then try again.
    pub fn on_failed(&mut self, ctx: Ctx, rng: &mut dyn RngCore, now: Millis, out: &mut Vec<Eff>) {
        let Ctx::Push { stream, node, .. } = ctx;
        let backoff = self.backoff;
        let Some(l) = self.settle(&stream, &node, false, now) else {
            return;
        };
        let delay = backoff.delay(l.attempt, rng).max(100);
        l.attempt = l.attempt.saturating_add(1);
        l.waiting = true;
        if l.attempt.is_power_of_two() {
            // A first failure is Debug: a link that fails once per number (and then
            // succeeds) would otherwise log at Info once per notification.
            let level = if l.attempt > 1 {
                Level::Info
            } else {
                Level::Debug
            };
            out.push(log(
                level,
                format!(
                    "{stream}: push to {node} failed {} times in a row; next try in {delay} ms",
                    l.attempt
                ),
            ));
        }
        out.push(Effect::timer(delay, Timer::Retry { stream, node }));
    }

    pub fn on_timer(&mut self, timer: Timer, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        match timer {
            Timer::Retry { stream, node } => {
                if let Some(l) = self.link_mut(&stream, &node) {
                    l.waiting = false;
                }
                self.pump(&stream, &node, streams, now, out);
            }
            Timer::Behind { stream } => self.behind_check(&stream, streams, out),
            Timer::Announce { stream } => {
                let Some(t) = self.trees.get_mut(&stream) else {
                    return;
                };
                let last = streams.get(&stream).map_or(0, |s| s.last);
                if last > 0 {
                    Self::announce(&self.me, &stream, t, last, out);
                }
                out.push(Effect::timer(ANNOUNCE_EVERY_MS, Timer::Announce { stream }));
            }
        }
    }

    fn announce(me: &NodeId, k: &StreamKey, t: &mut Tree, up_to: u64, out: &mut Vec<Eff>) {
        for p in t.roster.lazy_peers(me) {
            i_have(k, &p, up_to, &mut t.stats, out);
        }
    }

    /// A `Deliver` of `k` from `from` was taken: `new` numbers extended our stream, or it
    /// brought nothing new (`dup_only`: duplicates, or an empty probe).
    pub fn on_received(
        &mut self,
        k: &StreamKey,
        from: &NodeId,
        new: bool,
        dup_only: bool,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let me = self.me.clone();
        let Some(t) = self.trees.get_mut(k) else {
            return;
        };
        let parent = t.roster.parent(&me).cloned();
        let last = streams.get(k).map_or(0, |s| s.last);
        let from_parent = parent.as_ref() == Some(from);
        // Our parent's link works again (whether it brought news, only what a grafted link
        // brought first, or an empty probe after its restart): the grafted links are no
        // longer needed (if the parent is still behind, it catches up and pushes; if it
        // stays behind, the announcements make us graft again). A grafted link that brings
        // nothing new is not needed either.
        let behind = t.behind.as_ref().is_some_and(|b| last < b.up_to);
        let pruned: Vec<NodeId> = if from_parent && (new || (dup_only && !behind)) {
            std::mem::take(&mut t.grafted_from).into_iter().collect()
        } else if dup_only && (t.grafted_from.remove(from) || from == &k.publisher) {
            // Also the publisher when we pruned it already: our `Prune` expects no answer
            // and may have been lost, and while its grafted link lives the publisher counts
            // its pushes against our parent (review 13f-c). One `Prune` per such push.
            vec![from.clone()]
        } else {
            Vec::new()
        };
        for g in pruned {
            t.stats.prunes += 1;
            out.push(Effect::notify(
                address(&g),
                encode(&Request::Prune {
                    publisher: k.publisher.clone(),
                    topic: k.topic.clone(),
                }),
            ));
        }
        if new {
            if t.behind.as_ref().is_some_and(|b| last >= b.up_to) {
                t.behind = None;
            }
            Self::announce(&me, k, t, last, out);
            self.pump_all(k, streams, now, out);
        }
    }

    /// A lazy peer says it has `k` up to `up_to`. Taken only over a lazy link of the roster
    /// (`from` announces to us, or we to it), or from our tree parent (which says so when
    /// it no longer holds what we lack next: we graft onto the publisher for it), so one
    /// member can make at most the few members linked to it graft, and only [`MAX_AHEAD`]
    /// numbers past our last at a time.
    pub fn on_ihave(
        &mut self,
        k: &StreamKey,
        from: &NodeId,
        up_to: u64,
        streams: &Streams,
        out: &mut Vec<Eff>,
    ) -> bool {
        let me = self.me.clone();
        let Some(t) = self.trees.get_mut(k) else {
            return false;
        };
        let from_parent = t.roster.parent(&me) == Some(from);
        if !t.roster.contains(from)
            || !(from_parent
                || t.roster.lazy_peers(from).contains(&me)
                || t.roster.lazy_peers(&me).contains(from))
        {
            return false;
        }
        let last = streams.get(k).map_or(0, |s| s.last);
        let up_to = up_to.min(last.saturating_add(MAX_AHEAD));
        if up_to > last {
            match &mut t.behind {
                Some(b) => {
                    if up_to > b.up_to {
                        b.up_to = up_to;
                        b.from = from.clone();
                    }
                }
                None => {
                    t.behind = Some(Behind {
                        up_to,
                        from: from.clone(),
                        tries: 0,
                    });
                    out.push(Effect::timer(
                        GRAFT_AFTER_MS,
                        Timer::Behind { stream: k.clone() },
                    ));
                }
            }
        } else if up_to < last {
            // It is behind us: tell it (once; it grafts onto us if it stays behind).
            i_have(k, from, last, &mut t.stats, out);
        }
        true
    }

    fn behind_check(&mut self, k: &StreamKey, streams: &Streams, out: &mut Vec<Eff>) {
        let last = streams.get(k).map_or(0, |s| s.last);
        let me = self.me.clone();
        let Some(t) = self.trees.get_mut(k) else {
            return;
        };
        let parent = t.roster.parent(&me).cloned();
        let Some(b) = t.behind.as_mut() else {
            return;
        };
        if last >= b.up_to || b.tries >= MAX_GRAFT_TRIES {
            if b.tries >= MAX_GRAFT_TRIES {
                out.push(log(
                    Level::Warn,
                    format!(
                        "{k}: still behind {} (at {last}) after {} grafts; waiting for news",
                        b.up_to, b.tries
                    ),
                ));
            }
            t.behind = None;
            return;
        }
        b.tries += 1;
        // The announcer first, then the publisher, alternately (only the publisher when
        // the announcer is our parent: it told us it cannot serve the gap).
        let target = if b.tries % 2 == 1 && Some(&b.from) != parent.as_ref() {
            b.from.clone()
        } else {
            k.publisher.clone()
        };
        let delay = GRAFT_AFTER_MS << b.tries.min(4);
        if Some(&target) != parent.as_ref() {
            t.grafted_from.insert(target.clone());
        }
        t.stats.grafts += 1;
        out.push(Effect::notify(
            address(&target),
            encode(&Request::Graft {
                publisher: k.publisher.clone(),
                topic: k.topic.clone(),
                up_to: last,
            }),
        ));
        out.push(Effect::timer(delay, Timer::Behind { stream: k.clone() }));
    }

    /// `from` (a member: the caller checked it subscribes) asks us to push `k` to it from
    /// `up_to` on; also how a member that restarted resumes its link with its parent.
    pub fn on_graft(
        &mut self,
        k: &StreamKey,
        from: &NodeId,
        up_to: u64,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> bool {
        let last = streams.get(k).map_or(0, |s| s.last);
        let Some(t) = self.trees.get_mut(k) else {
            return false;
        };
        if !t.roster.contains(from) || from == &self.me {
            return false;
        }
        let before = if t.links.contains_key(from) {
            None
        } else {
            t.counted_before(from)
        };
        let l = t.links.entry(from.clone()).or_insert_with(|| Link {
            grafted: true,
            counted: before,
            ..Link::default()
        });
        if l.grafted {
            l.lease_until = now.saturating_add(GRAFT_LEASE_MS);
        }
        l.acked = Some(up_to.min(last));
        l.attempt = 0;
        if l.waiting {
            l.waiting = false;
            out.push(Effect::CancelTimer(Timer::Retry {
                stream: k.clone(),
                node: from.clone(),
            }));
        }
        // Its breaker stays: only a push of ours that succeeds closes it.
        self.pump(k, from, streams, now, out);
        true
    }

    /// `from` no longer needs our pushes on a grafted link.
    pub fn on_prune(&mut self, k: &StreamKey, from: &NodeId) -> bool {
        let Some(t) = self.trees.get_mut(k) else {
            return false;
        };
        if t.links.get(from).is_some_and(|l| l.grafted) {
            t.drop_link(from);
            return true;
        }
        false
    }

    pub fn stats(&self) -> Vec<RelayStats> {
        self.trees
            .values()
            .map(|t| RelayStats {
                children: t.links.values().filter(|l| !l.grafted).count() as u32,
                grafted: t.links.values().filter(|l| l.grafted).count() as u32,
                ..t.stats.clone()
            })
            .collect()
    }

    /// Rebuild from records (`g ...`, `c ...`, `h ...`); returns how many were unreadable.
    /// Timers are set by [`Relays::start`].
    pub fn restore(&mut self, records: &Records) -> usize {
        let mut bad = 0;
        for (key, v) in records.range(b"h ".to_vec()..b"h!".to_vec()) {
            let parsed = std::str::from_utf8(&key[2..]).ok().and_then(|rest| {
                let (p, t) = rest.split_once(' ')?;
                Some(StreamKey::new(&NodeId::parse(p).ok()?, t))
            });
            match (parsed, serde_json::from_slice::<LeftRecord>(v)) {
                (Some(k), Ok(r)) => {
                    self.left_count += 1;
                    self.left.insert(k, (r.epoch, self.left_count));
                }
                _ => bad += 1,
            }
        }
        for (_, v) in records.range(b"g ".to_vec()..b"g!".to_vec()) {
            match serde_json::from_slice::<Roster>(v) {
                Ok(r) => {
                    let k = StreamKey::new(&r.publisher, &r.topic);
                    let mut b = Batch::lazy();
                    let mut o = Vec::new();
                    self.adopt(&k, r, &|_| None, &Streams::default(), 0, &mut b, &mut o);
                    if let Some(t) = self.trees.get_mut(&k) {
                        t.announcing = false;
                    }
                }
                Err(_) => bad += 1,
            }
        }
        for (key, v) in records.range(b"c ".to_vec()..b"c!".to_vec()) {
            let parsed = std::str::from_utf8(&key[2..]).ok().and_then(|rest| {
                let mut it = rest.splitn(3, ' ');
                let p = NodeId::parse(it.next()?).ok()?;
                let t = it.next()?.to_string();
                let n = NodeId::parse(it.next()?).ok()?;
                Some((StreamKey::new(&p, &t), n))
            });
            match (parsed, serde_json::from_slice::<LinkRecord>(v)) {
                (Some((k, n)), Ok(r)) => {
                    if let Some(l) = self.trees.get_mut(&k).and_then(|t| t.links.get_mut(&n)) {
                        l.acked = Some(r.acked);
                    }
                }
                _ => bad += 1,
            }
        }
        bad
    }

    /// After a restart: announce timers, and resume every link (the children may need what
    /// we had not sent). Returns, per stream, our tree parent to resume with.
    pub fn start(&mut self, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        let keys: Vec<StreamKey> = self.trees.keys().cloned().collect();
        for k in keys {
            if let Some(t) = self.trees.get_mut(&k) {
                if !t.announcing && t.roster.contains(&self.me) {
                    t.announcing = true;
                    out.push(Effect::timer(
                        ANNOUNCE_EVERY_MS,
                        Timer::Announce { stream: k.clone() },
                    ));
                }
            }
            self.pump_all(&k, streams, now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(n: usize, fanout: u32) -> Roster {
        let mut members: Vec<NodeId> = (0..n)
            .map(|i| format!("n{i:03}.os").parse().unwrap())
            .collect();
        members.sort();
        Roster {
            publisher: "alice.os".parse().unwrap(),
            topic: "news".into(),
            epoch: 1,
            fanout,
            members,
            signature: vec![],
            index: Default::default(),
        }
    }

    fn key() -> StreamKey {
        StreamKey::new(&"alice.os".parse().unwrap(), "news")
    }

    /// A `Graft` does not close the grafter's circuit breaker (a peer must not reset what
    /// protects us from it): nothing is pushed to it while the breaker is open.
    #[test]
    fn a_graft_does_not_reset_the_grafters_breaker() {
        let me: NodeId = "n000.os".parse().unwrap();
        let (mut r, streams) = member(&me, 3);
        let grafter: NodeId = "n010.os".parse().unwrap();
        let now = 1_000;
        for _ in 0..crate::outbox::BREAKER.failure_threshold {
            r.breakers.on_failure(&grafter, now);
        }
        let mut out = Vec::new();
        assert!(r.on_graft(&key(), &grafter, 1, &streams, now + 10, &mut out));
        let pushes = out
            .iter()
            .filter(|e| matches!(e, Effect::Send { to, .. } if to.node == grafter))
            .count();
        assert_eq!(pushes, 0, "pushed to an open breaker: {out:?}");
        assert!(matches!(
            r.breakers.state(&grafter),
            p2p_common::resilience::BreakerState::Open { .. }
        ));
    }

    /// `delivered` counts each number once per link: a member that grafts again from
    /// below what it acknowledged (its storage went back, or it says so) is sent those
    /// numbers again, and its second acknowledgement of them adds nothing; a graft at what
    /// it has, or an answer repeating it, adds nothing either.
    #[test]
    fn a_graft_from_below_does_not_count_delivered_twice() {
        let r0 = roster(20, 2);
        let grafter = r0.members[17].clone();
        let (mut r, streams) = root_of(r0, 3);
        let push = |up_to| push_to(&grafter, up_to);
        let delivered = |r: &Relays| r.trees[&key()].links[&grafter].delivered;
        let (mut out, mut b) = (Vec::new(), Batch::lazy());
        assert!(r.on_graft(&key(), &grafter, 0, &streams, 1_000, &mut out));
        r.on_pushed(push(3), 3, &streams, 1_100, &mut b, &mut out);
        assert_eq!(delivered(&r), 3);
        // The same again: a graft at what it has, then the answer repeated.
        assert!(r.on_graft(&key(), &grafter, 3, &streams, 1_200, &mut out));
        r.on_pushed(push(3), 3, &streams, 1_300, &mut b, &mut out);
        assert_eq!(delivered(&r), 3);
        // From below: 1..=3 go again, counted once in all.
        for up_to in [0, 1, 2] {
            assert!(r.on_graft(&key(), &grafter, up_to, &streams, 1_400, &mut out));
            r.on_pushed(push(3), 3, &streams, 1_500, &mut b, &mut out);
            assert_eq!(delivered(&r), 3, "a graft from {up_to} counted again");
        }
    }

    /// A grafted link that is pruned (or whose lease ends) keeps its count in the tree's,
    /// and the same member grafting again from below is not counted again.
    #[test]
    fn a_pruned_link_keeps_its_count_and_a_new_one_counts_past_it() {
        let r0 = roster(20, 2);
        let grafter = r0.members[17].clone();
        let (mut r, streams) = root_of(r0, 3);
        let push = |up_to| push_to(&grafter, up_to);
        let total = |r: &Relays| {
            let t = &r.trees[&key()];
            t.delivered_gone + t.links.values().map(|l| l.delivered).sum::<u64>()
        };
        let (mut out, mut b) = (Vec::new(), Batch::lazy());
        assert!(r.on_graft(&key(), &grafter, 0, &streams, 1_000, &mut out));
        r.on_pushed(push(2), 2, &streams, 1_100, &mut b, &mut out);
        assert_eq!(total(&r), 2);
        assert!(r.on_prune(&key(), &grafter));
        assert!(!r.trees[&key()].links.contains_key(&grafter));
        assert_eq!(total(&r), 2, "the pruned link's count stays");
        // It grafts again from 0: 1..=2 go again (not counted), 3 is new.
        assert!(r.on_graft(&key(), &grafter, 0, &streams, 1_200, &mut out));
        r.on_pushed(push(3), 3, &streams, 1_300, &mut b, &mut out);
        assert_eq!(total(&r), 3);
    }

    /// A member that grafts from below what retention still holds is sent a lost range and
    /// the rest: only the rest counts as delivered (review 13f-b defect 4).
    #[test]
    fn numbers_lost_to_retention_are_not_counted_delivered_on_a_link() {
        let me: NodeId = "alice.os".parse().unwrap();
        let r0 = roster(20, 2);
        let grafter = r0.members[17].clone();
        // Retention dropped 1..=12.
        let streams = stream_of(13, 15);
        let mut b = Batch::forced();
        let mut r = Relays::new(me);
        let mut out = Vec::new();
        r.adopt(&key(), r0, &|_| None, &streams, 0, &mut b, &mut out);
        assert!(r.on_graft(&key(), &grafter, 0, &streams, 1_000, &mut out));
        let push = push_to(&grafter, 15);
        r.on_pushed(push, 15, &streams, 1_100, &mut b, &mut out);
        assert_eq!(r.trees[&key()].links[&grafter].delivered, 3);
    }

    /// Our push of `key()` up to `up_to` to `node` (roster epoch 1).
    fn push_to(node: &NodeId, up_to: u64) -> Ctx {
        Ctx::Push {
            stream: key(),
            node: node.clone(),
            up_to,
            epoch: 1,
        }
    }

    /// The publisher's (alice.os's) relays of `r0` with its stream of `n` notes.
    fn root_of(r0: Roster, n: u64) -> (Relays, Streams) {
        let me: NodeId = "alice.os".parse().unwrap();
        let streams = stream_of(1, n);
        let mut r = Relays::new(me);
        r.adopt(
            &key(),
            r0,
            &|_| None,
            &streams,
            0,
            &mut Batch::forced(),
            &mut Vec::new(),
        );
        (r, streams)
    }

    /// alice.os's stream of notes `from..=to` (those before `from` dropped).
    fn stream_of(from: u64, to: u64) -> Streams {
        let me: NodeId = "alice.os".parse().unwrap();
        let mut streams = Streams::default();
        let mut b = Batch::forced();
        streams.ensure(&key(), from.saturating_sub(1), false, &mut b);
        for seq in from..=to {
            let note = Notification {
                id: key().note_id(seq),
                publisher: me.clone(),
                topic: "news".into(),
                seq,
                at: 0,
                kind: p2p_common::api::notify::PayloadKind::Blob,
                size: 1,
                signature: vec![0; 64],
            };
            streams.append(&key(), note, vec![7], 0, &mut b);
        }
        streams
    }

    /// At the root, a subscriber that was sent the stream directly and became a tree
    /// child: its outbox counted what it acknowledged (up to 10 here); it said since that
    /// it has only 3 (restored older storage), so the link sends 4..=10 again, and they are
    /// not counted a second time (the topic's `delivered` adds the two).
    #[test]
    fn a_root_link_counts_only_past_the_outbox_acknowledgements() {
        let me: NodeId = "alice.os".parse().unwrap();
        let r0 = roster(20, 2);
        let child = r0.children(&me)[0].clone();
        let streams = stream_of(1, 12);
        let mut b = Batch::forced();
        let mut r = Relays::new(me.clone());
        let mut out = Vec::new();
        let hint = |n: &NodeId| (n == &child).then_some((3, 10));
        r.adopt(&key(), r0.clone(), &hint, &streams, 0, &mut b, &mut out);
        assert_eq!(r.trees[&key()].links[&child].acked, Some(3));
        let push = |up_to| push_to(&child, up_to);
        r.on_pushed(push(10), 10, &streams, 100, &mut b, &mut out);
        assert_eq!(r.trees[&key()].links[&child].delivered, 0);
        // What it had not acknowledged before counts.
        r.on_pushed(push(12), 12, &streams, 200, &mut b, &mut out);
        assert_eq!(r.trees[&key()].links[&child].delivered, 2);
    }

    /// `me`'s relays of a 20-member, fan-out-2 roster, with a received stream at `last`.
    fn member(me: &NodeId, last: u64) -> (Relays, Streams) {
        let mut streams = Streams::default();
        let mut b = Batch::forced();
        streams.ensure(&key(), last, true, &mut b);
        let mut r = Relays::new(me.clone());
        let mut out = Vec::new();
        r.adopt(
            &key(),
            roster(20, 2),
            &|_| None,
            &streams,
            0,
            &mut b,
            &mut out,
        );
        (r, streams)
    }

    fn prunes_to(out: &[Eff]) -> Vec<NodeId> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send { to, body, .. }
                    if matches!(
                        serde_json::from_slice::<Request>(body),
                        Ok(Request::Prune { .. })
                    ) =>
                {
                    Some(to.node.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_delivery_of_duplicates_from_the_parent_prunes_the_grafts() {
        let r0 = roster(20, 2);
        let me = r0.members[10].clone();
        let parent = r0.parent(&me).unwrap().clone();
        assert_ne!(parent, r0.publisher);
        let (mut r, streams) = member(&me, 3);
        let other = r0.members[15].clone();
        let t = r.trees.get_mut(&key()).unwrap();
        t.grafted_from.insert(r0.publisher.clone());
        t.grafted_from.insert(other.clone());
        // The publisher's grafted push came first; the parent's copy brings duplicates only.
        let mut out = Vec::new();
        r.on_received(&key(), &parent, false, true, &streams, 0, &mut out);
        let mut pruned = prunes_to(&out);
        pruned.sort();
        let mut want = vec![r0.publisher.clone(), other];
        want.sort();
        assert_eq!(pruned, want);
        assert!(r.trees[&key()].grafted_from.is_empty());
        assert_eq!(r.trees[&key()].stats.prunes, 2);
        // A grafted link that brings only duplicates is pruned.
        let mut out = Vec::new();
        let g = r0.members[3].clone();
        r.trees
            .get_mut(&key())
            .unwrap()
            .grafted_from
            .insert(g.clone());
        r.on_received(&key(), &g, false, true, &streams, 0, &mut out);
        assert_eq!(prunes_to(&out), vec![g.clone()]);
        // Another member's push of duplicates, once pruned, is not pruned again; the
        // publisher's is, at each push (our `Prune` expects no answer and may have been
        // lost, and the publisher counts a grafted link's pushes against our parent,
        // review 13f-c).
        let mut out = Vec::new();
        r.on_received(&key(), &g, false, true, &streams, 0, &mut out);
        r.on_received(&key(), &r0.members[6], false, true, &streams, 0, &mut out);
        assert!(prunes_to(&out).is_empty());
        r.on_received(&key(), &r0.publisher, false, true, &streams, 0, &mut out);
        r.on_received(&key(), &r0.publisher, false, true, &streams, 0, &mut out);
        assert_eq!(
            prunes_to(&out),
            vec![r0.publisher.clone(), r0.publisher.clone()]
        );
        // Our parent's duplicates prune nobody more (no grafts left).
        let mut out = Vec::new();
        r.on_received(&key(), &parent, false, true, &streams, 0, &mut out);
        assert!(prunes_to(&out).is_empty());
    }

    /// A restart's `Graft` went to the parent of the roster we held; a newer roster gave
    /// us another parent: its next delivery prunes the old one (seen in notify_tree's
    /// honest repair: restarted relays, now leaves, left grafted links at the publisher).
    #[test]
    fn a_restart_graft_to_a_former_parent_is_pruned_when_the_parent_delivers() {
        let r0 = roster(20, 2);
        let me = r0.members[10].clone();
        let parent = r0.parent(&me).unwrap().clone();
        let (mut r, streams) = member(&me, 3);
        let former = r0.publisher.clone();
        r.restart_grafted(&key(), &former);
        let mut out = Vec::new();
        r.on_received(&key(), &parent, true, false, &streams, 0, &mut out);
        assert_eq!(prunes_to(&out), vec![former]);
        assert!(r.trees[&key()].grafted_from.is_empty());
    }

    #[test]
    fn a_grafted_link_lasts_its_lease_from_the_last_graft() {
        let r0 = roster(20, 2);
        let me = r0.members[1].clone();
        let grafter = r0.members[17].clone();
        assert!(!r0.children(&me).contains(&grafter));
        let (mut r, streams) = member(&me, 3);
        let mut out = Vec::new();
        assert!(r.on_graft(&key(), &grafter, 3, &streams, 1_000, &mut out));
        let link = |r: &Relays| r.trees[&key()].links.get(&grafter).map(|l| l.grafted);
        assert_eq!(link(&r), Some(true));
        // The push that carries the roster is out until its answer, even past the lease.
        assert!(r.trees[&key()].links[&grafter].in_flight);
        r.pump(&key(), &grafter, &streams, 1_000 + GRAFT_LEASE_MS, &mut out);
        assert_eq!(link(&r), Some(true));
        let ctx = Ctx::Push {
            stream: key(),
            node: grafter.clone(),
            up_to: 3,
            epoch: 1,
        };
        let mut b = Batch::lazy();
        r.on_pushed(ctx, 3, &streams, 2_000, &mut b, &mut out);
        assert!(!r.trees[&key()].links[&grafter].in_flight);
        r.pump(
            &key(),
            &grafter,
            &streams,
            1_000 + GRAFT_LEASE_MS - 1,
            &mut out,
        );
        assert_eq!(link(&r), Some(true));
        // A new Graft renews it.
        assert!(r.on_graft(&key(), &grafter, 3, &streams, 30_000, &mut out));
        r.pump(&key(), &grafter, &streams, 1_000 + GRAFT_LEASE_MS, &mut out);
        assert_eq!(link(&r), Some(true));
        r.pump(
            &key(),
            &grafter,
            &streams,
            30_000 + GRAFT_LEASE_MS,
            &mut out,
        );
        assert_eq!(link(&r), None, "the lease is over");
        // A tree child's link has no lease.
        let child = r0.children(&me)[0].clone();
        r.pump(&key(), &child, &streams, 10 * GRAFT_LEASE_MS, &mut out);
        assert!(r.trees[&key()].links.contains_key(&child));
    }

    #[test]
    fn ihave_is_taken_only_over_a_lazy_link_and_only_a_batch_ahead() {
        let r0 = roster(20, 2);
        let me = r0.members[10].clone();
        let (mut r, streams) = member(&me, 3);
        let ours = r0.lazy_peers(&me);
        let theirs: Vec<NodeId> = r0
            .members
            .iter()
            .filter(|m| r0.lazy_peers(m).contains(&me))
            .cloned()
            .collect();
        let stranger = r0
            .members
            .iter()
            .find(|m| **m != me && !ours.contains(m) && !theirs.contains(m))
            .unwrap()
            .clone();
        let mut out = Vec::new();
        assert!(!r.on_ihave(&key(), &stranger, 1_000_000, &streams, &mut out));
        assert!(out.is_empty());
        assert!(r.trees[&key()].behind.is_none());
        for from in ours.iter().chain(&theirs) {
            assert!(r.on_ihave(&key(), from, 1_000_000, &streams, &mut out));
        }
        assert_eq!(
            r.trees[&key()].behind.as_ref().unwrap().up_to,
            3 + MAX_AHEAD
        );
    }

    #[test]
    fn a_left_streams_roster_epoch_is_remembered_across_restarts() {
        let r0 = roster(20, 2);
        let me = r0.members[7].clone();
        let (mut r, streams) = member(&me, 3);
        let mut records = Records::new();
        let apply = |records: &mut Records, b: Batch| {
            for (k, v) in b.ops {
                match v {
                    Some(v) => records.insert(k, v),
                    None => records.remove(&k),
                };
            }
        };
        let mut b = Batch::lazy();
        r.remove(&key(), &mut b);
        apply(&mut records, b);
        assert!(r.get(&key()).is_none());
        assert_eq!(r.epoch(&key()), 1, "the epoch we left with");
        // After a restart too.
        let mut r = Relays::new(me.clone());
        assert_eq!(r.restore(&records), 0);
        assert!(r.get(&key()).is_none());
        assert_eq!(r.epoch(&key()), 1);
        // The old roster again: not taken; a newer one is, and the mark goes.
        let mut b = Batch::forced();
        let mut out = Vec::new();
        r.adopt(&key(), r0.clone(), &|_| None, &streams, 0, &mut b, &mut out);
        assert!(r.get(&key()).is_none());
        let mut newer = r0.clone();
        newer.epoch = 2;
        r.adopt(&key(), newer, &|_| None, &streams, 0, &mut b, &mut out);
        assert_eq!(r.get(&key()).map(|t| t.roster.epoch), Some(2));
        apply(&mut records, b);
        assert!(!records.keys().any(|k| k.starts_with(b"h ")));
        // Bounded: past MAX_LEFT streams, the longest-left is forgotten.
        let mut r = Relays::new(me.clone());
        let mut b = Batch::lazy();
        for i in 0..=MAX_LEFT {
            let k = StreamKey::new(&r0.publisher, &format!("t{i}"));
            r.remember_left(&k, 5, &mut b);
        }
        assert_eq!(r.left.len(), MAX_LEFT);
        assert_eq!(r.epoch(&StreamKey::new(&r0.publisher, "t0")), 0);
        assert_eq!(r.epoch(&StreamKey::new(&r0.publisher, "t1")), 5);
    }

    #[test]
    fn a_push_settles_the_same_way_answered_or_failed() {
        let r0 = roster(20, 2);
        let me = r0.members[1].clone();
        let child = r0.children(&me)[0].clone();
        let (mut r, streams) = member(&me, 3);
        let ctx = || Ctx::Push {
            stream: key(),
            node: child.clone(),
            up_to: 3,
            epoch: 1,
        };
        let link = |r: &Relays| r.trees[&key()].links[&child].clone();
        // adopt sent the child a probe with the roster.
        assert!(link(&r).in_flight);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let mut out = Vec::new();
        r.on_failed(ctx(), &mut rng, 1_000, &mut out);
        let l = link(&r);
        assert!(!l.in_flight && l.waiting);
        assert_eq!((l.failed, l.attempt, r.trees[&key()].failed), (1, 1, 1));
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::SetTimer {
                timer: Timer::Retry { .. },
                ..
            }
        )));
        let mut out = Vec::new();
        r.on_timer(
            Timer::Retry {
                stream: key(),
                node: child.clone(),
            },
            &streams,
            2_000,
            &mut out,
        );
        assert!(link(&r).in_flight, "the retry pushed again");
        let mut b = Batch::lazy();
        r.on_pushed(ctx(), 3, &streams, 3_000, &mut b, &mut out);
        let l = link(&r);
        assert!(!l.in_flight && !l.waiting);
        assert_eq!((l.acked, l.attempt, l.failed), (Some(3), 0, 1));
        assert!(
            !b.ops.is_empty(),
            "a tree child's acknowledgement is stored"
        );
    }

    #[test]
    fn the_tree_covers_every_member_once_and_is_shallow() {
        let r = roster(199, 8);
        assert!(r.well_formed());
        let root = r.children(&r.publisher);
        assert_eq!(root.len(), 8);
        let mut seen = BTreeSet::new();
        let mut level = vec![r.publisher.clone()];
        let mut depth = 0;
        while !level.is_empty() {
            let mut next = Vec::new();
            for n in &level {
                for c in r.children(n) {
                    assert_eq!(r.parent(&c), Some(n));
                    assert!(seen.insert(c.clone()), "{c} twice");
                    next.push(c);
                }
            }
            level = next;
            depth += 1;
        }
        assert_eq!(seen.len(), 199);
        assert_eq!(depth - 1, 3, "levels below the publisher");
        for m in &r.members {
            let lazy = r.lazy_peers(m);
            assert_eq!(lazy.len(), 2);
            assert!(!lazy.contains(m));
        }
        // The order is the publisher's: unsorted is well formed, a duplicate is not.
        let mut other = r.clone();
        other.members.swap(0, 1);
        assert!(other.well_formed());
        assert_eq!(other.children(&other.publisher)[0], r.members[1]);
        let mut bad = r.clone();
        bad.members[5] = bad.members[100].clone();
        assert!(!bad.well_formed());
        bad = roster(3, 1);
        assert!(!bad.well_formed());
    }
}
