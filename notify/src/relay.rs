//! The relay tree of a large topic (Plumtree-style): the publisher signs the topic's member
//! list (a [`Roster`]); every member derives the same `fanout`-ary tree from it, keeps a
//! durable outbox per child (the child's acknowledged number over our copy of the stream,
//! as [`crate::outbox`] does for direct subscribers) and pushes what it receives to its
//! children (eager links). Each member also announces what it has (`IHave`) to two lazy
//! peers on every step forward and every 30 s; a member that hears of numbers it lacks and
//! does not get them within 2 s grafts onto the announcer (`Graft`: push to me from
//! `up_to` on), then onto the publisher, with backoff, at most [`MAX_GRAFT_TRIES`] times. A
//! grafted link is pruned (`Prune`) once the tree parent delivers again, or once it only
//! brings duplicates. Acknowledgement is hop by hop: each node answers its parent, so the
//! publisher handles only its own children's answers.
//!
//! Relays forward the publisher's signed notes unchanged (receivers verify each one) and
//! never a lost range (only the publisher may say a number is lost). The same machine runs
//! the root of our own large topics: there, `lost` ranges are sent as the outbox does.
//!
//! Storage: `g <pub> <topic>` the roster (written forced), `c <pub> <topic> <child>` a tree
//! child's acknowledged number (lazy). Grafted links are not stored: a grafter grafts again.
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
}

#[derive(Debug, Serialize, Deserialize)]
struct LinkRecord {
    acked: u64,
}

fn roster_key(k: &StreamKey) -> Vec<u8> {
    format!("g {} {}", k.publisher, k.topic).into_bytes()
}
fn link_key(k: &StreamKey, node: &NodeId) -> Vec<u8> {
    format!("c {} {} {node}", k.publisher, k.topic).into_bytes()
}
fn address(node: &NodeId) -> Address {
    Address::new(node.clone(), ProcessId::ours(PROCESS))
}

#[derive(Debug)]
pub struct Relays {
    me: NodeId,
    pub trees: BTreeMap<StreamKey, Tree>,
    backoff: Backoff,
    breakers: Breakers,
}

impl Relays {
    pub fn new(me: NodeId) -> Self {
        Relays {
            me,
            trees: BTreeMap::new(),
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

    /// The epoch of the roster we hold for `k` (0: none).
    pub fn epoch(&self, k: &StreamKey) -> u64 {
        self.trees.get(k).map_or(0, |t| t.roster.epoch)
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
    /// new child is known to have (the publisher knows its direct subscribers'
    /// acknowledgements); the others are probed.
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        &mut self,
        k: &StreamKey,
        roster: Roster,
        hint: &dyn Fn(&NodeId) -> Option<u64>,
        streams: &Streams,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) {
        if self.epoch(k) >= roster.epoch {
            return;
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
            if let Some(l) = t.links.remove(&n) {
                if !l.grafted {
                    batch.ops.push((link_key(k, &n), None));
                }
            }
        }
        for c in &children {
            let l = t.links.entry(c.clone()).or_insert_with(|| Link {
                acked: hint(c),
                ..Link::default()
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
        let roster = needs_roster.then(|| t.roster.clone());
        let body = encode(&Request::Deliver {
            topic: k.topic.clone(),
            lost,
            notes,
            publisher: (!root).then(|| k.publisher.clone()),
            roster,
            last: None,
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
        self.breakers.on_success(&node, now);
        let Some(l) = self
            .trees
            .get_mut(&stream)
            .and_then(|t| t.links.get_mut(&node))
        else {
            return;
        };
        l.in_flight = false;
        l.attempt = 0;
        l.epoch = l.epoch.max(epoch);
        let new = their_up_to.min(up_to);
        let before = l.acked;
        l.acked = Some(match l.acked {
            // A probe, or a node that lost what it had: believe it (it only hurts itself).
            None => new,
            Some(a) => a.max(new),
        });
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
        self.breakers.on_failure(&node, now);
        let Some(l) = self
            .trees
            .get_mut(&stream)
            .and_then(|t| t.links.get_mut(&node))
        else {
            return;
        };
        l.in_flight = false;
        let delay = self.backoff.delay(l.attempt, rng).max(100);
        l.attempt = l.attempt.saturating_add(1);
        l.waiting = true;
        if l.attempt.is_power_of_two() {
            out.push(log(
                Level::Info,
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
                if let Some(l) = self
                    .trees
                    .get_mut(&stream)
                    .and_then(|t| t.links.get_mut(&node))
                {
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
            t.stats.announcements += 1;
            out.push(Effect::notify(
                address(&p),
                encode(&Request::IHave {
                    publisher: k.publisher.clone(),
                    topic: k.topic.clone(),
                    up_to,
                }),
            ));
        }
    }

    /// A `Deliver` of `k` from `from` was taken: `new` numbers extended our stream, or it
    /// brought only duplicates (`dup_only`).
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
        if new {
            if t.behind.as_ref().is_some_and(|b| last >= b.up_to) {
                t.behind = None;
            }
            if from_parent {
                for g in std::mem::take(&mut t.grafted_from) {
                    t.stats.prunes += 1;
                    out.push(Effect::notify(
                        address(&g),
                        encode(&Request::Prune {
                            publisher: k.publisher.clone(),
                            topic: k.topic.clone(),
                        }),
                    ));
                }
            }
            Self::announce(&me, k, t, last, out);
            self.pump_all(k, streams, now, out);
        } else if dup_only && !from_parent && t.grafted_from.remove(from) {
            t.stats.prunes += 1;
            out.push(Effect::notify(
                address(from),
                encode(&Request::Prune {
                    publisher: k.publisher.clone(),
                    topic: k.topic.clone(),
                }),
            ));
        }
    }

    /// A lazy peer (a member of the roster) says it has `k` up to `up_to`.
    pub fn on_ihave(
        &mut self,
        k: &StreamKey,
        from: &NodeId,
        up_to: u64,
        streams: &Streams,
        out: &mut Vec<Eff>,
    ) -> bool {
        let Some(t) = self.trees.get_mut(k) else {
            return false;
        };
        if !t.roster.contains(from) {
            return false;
        }
        let last = streams.get(k).map_or(0, |s| s.last);
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
            t.stats.announcements += 1;
            out.push(Effect::notify(
                address(from),
                encode(&Request::IHave {
                    publisher: k.publisher.clone(),
                    topic: k.topic.clone(),
                    up_to: last,
                }),
            ));
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
        // The announcer first, then the publisher, alternately.
        let target = if b.tries % 2 == 1 {
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
        let l = t.links.entry(from.clone()).or_insert_with(|| Link {
            grafted: true,
            ..Link::default()
        });
        l.acked = Some(up_to.min(last));
        l.attempt = 0;
        if l.waiting {
            l.waiting = false;
            out.push(Effect::CancelTimer(Timer::Retry {
                stream: k.clone(),
                node: from.clone(),
            }));
        }
        self.breakers.remove(from);
        self.pump(k, from, streams, now, out);
        true
    }

    /// `from` no longer needs our pushes on a grafted link.
    pub fn on_prune(&mut self, k: &StreamKey, from: &NodeId) -> bool {
        let Some(t) = self.trees.get_mut(k) else {
            return false;
        };
        if t.links.get(from).is_some_and(|l| l.grafted) {
            t.links.remove(from);
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

    /// Rebuild from records (`g ...`, `c ...`); returns how many were unreadable. Timers
    /// are set by [`Relays::start`].
    pub fn restore(&mut self, records: &Records) -> usize {
        let mut bad = 0;
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
        }
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
        let mut bad = r.clone();
        bad.members.swap(0, 1);
        assert!(!bad.well_formed());
        bad = roster(3, 1);
        assert!(!bad.well_formed());
    }
}
