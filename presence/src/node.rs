//! Our own node: who we are, what we say about ourselves (info, incarnation, joined or
//! left, the bootstrap list), our settings, and the refutation of claims about us.
//!
//! Every other part reads it; only the core changes it (a local operation, a refutation, a
//! restart). It has no timers and sends nothing itself: [`Node::send`] only builds the
//! message to another node's presence for whichever part asks.

use crate::members::{MAX_INCARNATION, MAX_INCARNATION_JUMP};
use p2p_common::api::encode;
use p2p_common::api::presence::{Config, MemberStatus, NodeInfo, Request, Update};
use p2p_common::{Address, Effect, Expect, Millis, NodeId};

pub struct Node {
    pub our: Address,
    pub me: NodeId,
    pub cfg: Config,
    pub info: NodeInfo,
    pub incarnation: u64,
    pub left: bool,
    pub joined: bool,
    pub bootstrap: Vec<NodeId>,
    /// `wall - mono` at the input being handled: converts our monotonic times for users.
    pub wall_offset: i64,
    /// The highest non-Alive claim about us not yet refuted, and when we last refuted.
    pending_refute: Option<u64>,
    last_refute: Option<Millis>,
    /// Refutations so far (for `Stats`).
    pub refutations: u64,
}

impl Node {
    pub fn new(our: Address, cfg: Config) -> Node {
        let me = our.node.clone();
        Node {
            info: NodeInfo::new(me.clone()),
            our,
            me,
            cfg,
            incarnation: 0,
            left: false,
            joined: false,
            bootstrap: Vec::new(),
            wall_offset: 0,
            pending_refute: None,
            last_refute: None,
            refutations: 0,
        }
    }

    /// A monotonic time of ours as wall time, for users (0 stays 0: never).
    pub fn to_wall(&self, mono: Millis) -> Millis {
        if mono == 0 {
            return 0;
        }
        (mono as i64).saturating_add(self.wall_offset).max(0) as Millis
    }

    /// The presence process on `node`.
    pub fn presence_at(&self, node: &NodeId) -> Address {
        Address::new(node.clone(), self.our.process.clone())
    }

    /// Our status as we say it: Alive, or Left after a `Leave`.
    pub fn status(&self) -> MemberStatus {
        if self.left {
            MemberStatus::Left
        } else {
            MemberStatus::Alive
        }
    }

    /// Our own fact, with our info.
    pub fn self_update(&self) -> Update {
        Update {
            node: self.me.clone(),
            status: self.status(),
            incarnation: self.incarnation,
            info: Some(self.info.clone()),
            origin: self.me.clone(),
        }
    }

    /// Our own fact without the info (for piggybacks: a node always learns its prober).
    pub fn liveness(&self) -> Update {
        let mut me = self.self_update();
        me.info = None;
        me
    }

    /// A fact about `node` with us as its origin (a verdict of our failure detector).
    pub fn fact_by_us(&self, node: NodeId, status: MemberStatus, incarnation: u64) -> Update {
        Update {
            node,
            status,
            incarnation,
            info: None,
            origin: self.me.clone(),
        }
    }

    /// `req` to the presence process on `to`; with `expect`, awaited for that many seconds
    /// with that context.
    pub fn send<C, T>(&self, to: &NodeId, req: &Request, expect: Option<(u64, C)>) -> Effect<C, T> {
        Effect::Send {
            to: self.presence_at(to),
            body: encode(req),
            blob: None,
            expect: expect.map(|(timeout_s, ctx)| Expect { timeout_s, ctx }),
        }
    }

    /// A new incarnation of ours (new info, a rejoin, a restart).
    pub fn bump(&mut self) {
        self.incarnation = bump(self.incarnation);
    }

    /// `Join` with the checked `bootstrap` list: joined, not left; a rejoin after a `Leave`
    /// moves to a new incarnation.
    pub fn join(&mut self, bootstrap: Vec<NodeId>) {
        let rejoin = self.left;
        self.left = false;
        self.joined = true;
        self.bootstrap = bootstrap;
        if rejoin {
            self.bump();
        }
    }

    /// A claim about ourselves; whether to refute now ([`Self::refute`]).
    ///
    /// Any non-Alive claim at or above our incarnation is refuted by moving past it (as SWIM
    /// and memberlist do) — a forged claim one above ours would otherwise stand. A claim
    /// [`MAX_INCARNATION_JUMP`] or more above ours is one no peer accepts either, so it is
    /// ignored. Refutations are at most one per gossip interval (a stream of claims costs
    /// one incarnation step and one forced write per interval; the highest claim waits for
    /// the next interval), and they do not move our local health: strangers' claims say
    /// nothing about our probing.
    pub fn on_claim(&mut self, u: &Update, now: Millis) -> bool {
        if self.left || u.incarnation < self.incarnation {
            return false;
        }
        // Our own fact echoed back is no claim; an Alive claim above ours (a forged info, a
        // forged incarnation) is refuted like a suspicion.
        if u.status == MemberStatus::Alive && u.incarnation == self.incarnation {
            return false;
        }
        // Only claims a relay could plant: peers refuse relayed jumps of MAX_INCARNATION_JUMP
        // or more, and take our refutation (at most that far) when we send it ourselves.
        if u.incarnation >= self.incarnation.saturating_add(MAX_INCARNATION_JUMP) {
            return false;
        }
        let claim = self
            .pending_refute
            .map_or(u.incarnation, |c| c.max(u.incarnation));
        self.pending_refute = Some(claim);
        self.last_refute
            .is_none_or(|t| now >= t.saturating_add(self.cfg.gossip_interval_ms))
    }

    /// Move past the highest claim about us seen since the last refutation; the claim moved
    /// past, if any (the caller writes the new incarnation, forced, before saying it).
    pub fn refute(&mut self, now: Millis) -> Option<u64> {
        let claim = self.pending_refute.take()?;
        if claim < self.incarnation {
            return None;
        }
        self.incarnation = bump(claim);
        self.last_refute = Some(now);
        self.refutations += 1;
        Some(claim)
    }
}

/// The next incarnation, never past [`MAX_INCARNATION`].
pub fn bump(incarnation: u64) -> u64 {
    incarnation.saturating_add(1).min(MAX_INCARNATION)
}
