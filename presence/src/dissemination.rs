//! Dissemination: how facts spread. Piggyback on every probe, ack and probe request;
//! gossip rounds to a few random members every gossip interval while facts are pending;
//! and anti-entropy, the digest exchange (`PushPull`) with a random member and a random
//! dead one every minute (sooner, twice, after a `Join`).
//!
//! It owns the queue of facts to spread ([`Broadcasts`]), its timer ([`DisseminationTick`],
//! wrapped by the core's `Tick`) and its request context ([`PushPullCtx`], wrapped by the
//! core's `Ctx`). It reads the member table and our node; randomness is the core's. What a
//! digest or its answer brings is merged by the core (admission, the member table), and the
//! core checks that a digest's sender is a member before [`Dissemination::answer`] answers.

use crate::detector::random_live;
use crate::gossip::{retransmit_limit, Broadcasts};
use crate::members::{Member, Members};
use crate::node::Node;
use p2p_common::api::presence::{MemberStatus, Request, Response, Update};
use p2p_common::api::PROTOCOL_VERSION;
use p2p_common::{Effect, Millis, NodeId};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Timeout of digest exchanges (seconds).
const PUSH_PULL_TIMEOUT_S: u64 = 10;
/// Most members in one digest or answer (= the largest `max_members`).
const MAX_PUSH_PULL: usize = p2p_common::api::presence::MAX_MEMBERS as usize;
/// Largest answer to a digest exchange (bytes).
const MAX_PUSH_PULL_BYTES: usize = 2 << 20;
/// Entries a digest exchange answers with at least (more for a longer digest: 2× its size).
const PUSH_PULL_MIN_ANSWER: usize = 128;
/// Bytes a digest exchange answers with at least (more for a longer digest: 2× its size):
/// room for the minimum number of entries with small infos, while large infos cannot make
/// a short digest buy megabytes.
const PUSH_PULL_MIN_ANSWER_BYTES: usize = 32 << 10;
/// Digest exchanges soon after a `Join` (each within half to one and a half periods of the
/// one before), before the minute-long rhythm: a fact a joiner missed in the join's gossip
/// comes with the first one instead of 30–60 s later.
const EARLY_PUSH_PULLS: u8 = 2;

/// Dissemination's timer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DisseminationTick {
    /// The next digest exchange.
    PushPull,
}

/// The context of our digest exchange with `peer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushPullCtx {
    pub peer: NodeId,
}

#[derive(Debug, Default)]
pub struct Dissemination {
    broadcasts: Broadcasts,
    /// Early digest exchanges still to come after a join (see [`EARLY_PUSH_PULLS`]).
    early_push_pulls: u8,
    /// Gossip messages sent, and digest exchanges sent and served (for `Stats`).
    pub gossip_sent: u64,
    pub push_pulls: u64,
}

impl Dissemination {
    /// Queue a fact to spread.
    pub fn push(&mut self, u: Update) {
        self.broadcasts.push(u);
    }

    /// Queue our own fact (new incarnation, new info, a leave).
    pub fn announce(&mut self, node: &Node) {
        self.broadcasts.push(node.self_update());
    }

    /// Piggyback for a message to `to`: pending facts (those about `to` first), and our own
    /// liveness (without info) when there is room, so a node always learns its prober.
    pub fn piggyback(
        &mut self,
        node: &Node,
        members: &Members,
        to: Option<&NodeId>,
    ) -> Vec<Update> {
        let max = node.cfg.max_updates_per_message as usize;
        let limit = retransmit_limit(node.cfg.retransmit_mult, members.live_count() + 1);
        let mut ups = self.broadcasts.take(max, limit, to);
        // Buddy system: a member we suspect hears about it from the probe itself.
        if let Some(t) = to {
            if let Some(m) = members.get(t) {
                if m.status == MemberStatus::Suspect
                    && !ups
                        .iter()
                        .any(|u| &u.node == t && u.status == MemberStatus::Suspect)
                {
                    ups.push(Update {
                        node: t.clone(),
                        status: MemberStatus::Suspect,
                        incarnation: m.incarnation,
                        info: None,
                        origin: members.origin_of(t, MemberStatus::Suspect, &node.me),
                    });
                }
            }
        }
        if ups.len() < max && !ups.iter().any(|u| u.node == node.me) {
            ups.push(node.liveness());
        }
        ups
    }

    /// Push pending facts to `gossip_fanout` random members.
    pub fn gossip_round<C, T>(
        &mut self,
        node: &Node,
        members: &Members,
        rng: &mut ChaCha8Rng,
        out: &mut Vec<Effect<C, T>>,
    ) {
        if self.broadcasts.is_empty() {
            return;
        }
        for t in random_live(members, rng, node.cfg.gossip_fanout as usize, &[]) {
            let updates = self.piggyback(node, members, Some(&t));
            if updates.is_empty() {
                break;
            }
            self.gossip_sent += 1;
            out.push(node.send(&t, &Request::Gossip { updates }, None));
        }
    }

    /// After a `Join`: the first digest exchange soon, not in 30–60 s (the periodic timer is
    /// re-armed from it).
    pub fn joined<C, T: From<DisseminationTick>>(
        &mut self,
        node: &Node,
        rng: &mut ChaCha8Rng,
        out: &mut Vec<Effect<C, T>>,
    ) {
        self.early_push_pulls = EARLY_PUSH_PULLS - 1;
        let first = early_delay(node, rng);
        out.push(Effect::timer(first, DisseminationTick::PushPull.into()));
    }

    /// The digest exchange timer: re-arm it, then exchange with a random live member and a
    /// random dead one (so the halves of a healed partition, which declared each other dead
    /// and stopped probing, merge).
    pub fn on_tick<C: From<PushPullCtx>, T: From<DisseminationTick>>(
        &mut self,
        node: &Node,
        members: &Members,
        rng: &mut ChaCha8Rng,
        out: &mut Vec<Effect<C, T>>,
    ) {
        let next = if self.early_push_pulls > 0 {
            self.early_push_pulls -= 1;
            early_delay(node, rng)
        } else {
            let jitter = rng.gen_range(0..=node.cfg.push_pull_interval_ms / 4);
            node.cfg.push_pull_interval_ms + jitter
        };
        out.push(Effect::timer(next, DisseminationTick::PushPull.into()));
        if node.left {
            return;
        }
        if let Some(peer) = random_live(members, rng, 1, &[]).pop() {
            self.push_pull_with(node, members, &peer, out);
        }
        let dead: Vec<NodeId> = members
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Dead)
            .map(|(n, _)| n.clone())
            .collect();
        if let Some(peer) = dead.choose(rng).cloned() {
            self.push_pull_with(node, members, &peer, out);
        }
    }

    /// Send our digest to `peer`, asking for the infos we lack.
    pub fn push_pull_with<C: From<PushPullCtx>, T>(
        &mut self,
        node: &Node,
        members: &Members,
        peer: &NodeId,
        out: &mut Vec<Effect<C, T>>,
    ) {
        let want_info: Vec<NodeId> = members
            .iter()
            .filter(|(_, m)| !m.has_info && m.status == MemberStatus::Alive)
            .map(|(n, _)| n.clone())
            .take(MAX_PUSH_PULL)
            .collect();
        self.push_pulls += 1;
        let req = Request::PushPull {
            members: digest(node, members),
            want_info,
            protocol_version: PROTOCOL_VERSION,
        };
        let ctx = PushPullCtx { peer: peer.clone() }.into();
        out.push(node.send(peer, &req, Some((PUSH_PULL_TIMEOUT_S, ctx))));
    }

    /// The answer to a member's digest `theirs` (a request of `size` bytes): what it lacks
    /// or has older, bounded relative to the digest — twice its entries (at least
    /// [`PUSH_PULL_MIN_ANSWER`]) and twice its bytes (at least
    /// [`PUSH_PULL_MIN_ANSWER_BYTES`]) — so a short digest does not buy our table.
    pub fn answer(
        &self,
        node: &Node,
        members: &Members,
        theirs: &[Update],
        want_info: &[NodeId],
        size: usize,
    ) -> Response {
        let entries = theirs.len().saturating_mul(2).max(PUSH_PULL_MIN_ANSWER);
        let bytes = size
            .saturating_mul(2)
            .clamp(PUSH_PULL_MIN_ANSWER_BYTES, MAX_PUSH_PULL_BYTES);
        Response::PushPull {
            members: delta_for(node, members, theirs, want_info, entries, bytes),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// The wait before an early digest exchange: half to one and a half periods (never later
/// than the periodic one would be).
fn early_delay(node: &Node, rng: &mut ChaCha8Rng) -> Millis {
    let p = node.cfg.probe_interval_ms;
    rng.gen_range(p / 2..=p + p / 2)
        .min(node.cfg.push_pull_interval_ms)
}

/// Our view in brief: every member's status and incarnation, infos left out (ours in).
fn digest(node: &Node, members: &Members) -> Vec<Update> {
    let mut v = vec![node.self_update()];
    v.extend(
        members
            .iter()
            .take(MAX_PUSH_PULL)
            .map(|(n, m)| fact(node, members, n, m, false)),
    );
    v
}

/// The fact we hold about member `n`. A suspicion keeps a real suspecter as its origin:
/// relaying it must not look like an independent confirmation.
fn fact(node: &Node, members: &Members, n: &NodeId, m: &Member, with_info: bool) -> Update {
    Update {
        node: n.clone(),
        status: m.status,
        incarnation: m.incarnation,
        info: (with_info && m.status == MemberStatus::Alive && m.has_info).then(|| m.info.clone()),
        origin: members.origin_of(n, m.status, &node.me),
    }
}

/// What a peer whose digest is `theirs` lacks or has older, with infos where it needs them
/// (new or newer alive members, and the ones it asked for): at most `max_entries` entries
/// and `max_bytes` bytes (the rest comes with the next exchange).
fn delta_for(
    node: &Node,
    members: &Members,
    theirs: &[Update],
    want_info: &[NodeId],
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Update> {
    let known: BTreeMap<&NodeId, (MemberStatus, u64)> = theirs
        .iter()
        .map(|u| (&u.node, (u.status, u.incarnation)))
        .collect();
    let wanted: BTreeSet<&NodeId> = want_info.iter().collect();
    let mut out = Vec::new();
    let mine = std::iter::once(node.self_update())
        .chain(members.iter().map(|(n, m)| fact(node, members, n, m, true)));
    let mut bytes = 0;
    for mut u in mine {
        let with_info = match known.get(&u.node) {
            None => true,
            Some(&(_, inc)) if inc < u.incarnation => true,
            Some(&(st, inc)) if inc == u.incarnation && st != u.status => false,
            _ if wanted.contains(&u.node) => true,
            _ => continue,
        };
        if !with_info || u.status != MemberStatus::Alive {
            u.info = None;
        }
        bytes += serde_json::to_vec(&u).map_or(0, |b| b.len());
        if bytes > max_bytes || out.len() >= max_entries.min(MAX_PUSH_PULL) {
            break;
        }
        out.push(u);
    }
    out
}
