//! Admission on direct evidence: the candidate table.
//!
//! A node we do not know becomes a member only when it speaks for itself: its own fact in a
//! message it sent us, its registration, or its answer to our probe. A fact *relayed* about
//! an unknown node (gossip, an ack's piggyback, a digest, a registry page) admits nobody; it
//! makes the node a *candidate*, which we probe directly, and the candidate's answer admits
//! it (with the relayed fact, or the newer one it says about itself).
//!
//! Everything is bounded: relayed facts count only from members (and our own bootstraps),
//! at most [`PER_MESSAGE`] nominations per message and a token bucket per relaying node
//! ([`BURST`], then [`PER_SECOND`]), the table holds at most [`CAPACITY`] candidates (the
//! oldest goes), every candidate is probed once, and one that did not answer is not probed
//! again for `retry_after_ms` however often it is named. So a liar naming 10,000 invented
//! nodes costs us at most `BURST` probes and then `PER_SECOND` a second, and fills no table.
//! A probe that timed out (a lost message) is retried up to [`RETRIES`] times after a short
//! jittered wait ([`CandidateTick`]); one answered `Offline` (no such node, or not up) is not.
//! Every probe, a retry too, is paid from the budget of the node that named the candidate.
//!
//! This machine owns its table, its budgets, its timer ([`CandidateTick`], wrapped by the
//! core's `Tick`) and its request context ([`CandidateCtx`], wrapped by the core's `Ctx`).
//! The core asks it about every fact a message brings ([`Candidates::admit`]) and merges
//! the admitted fact when a candidate answers.

use crate::members::Members;
use crate::node::Node;
use p2p_common::api::presence::{MemberStatus, Request, Update};
use p2p_common::api::PROTOCOL_VERSION;
use p2p_common::resilience::{BudgetConfig, SenderBudgets};
use p2p_common::{Effect, Millis, NodeId, SendErrorKind};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most candidates held at once (the oldest is dropped for a new one).
pub const CAPACITY: usize = 256;
/// Most nominations taken from one message (a registry page holds at most 100).
pub const PER_MESSAGE: usize = 128;
/// Nominations one relaying node may make: a burst (a bootstrap's pages at a join, the
/// gossip of a mass join), then a trickle.
pub const BURST: u32 = 256;
pub const PER_SECOND: u32 = 4;

/// Probes that timed out are retried this many times (a lost message must not leave a pair
/// of nodes strangers until the next digest exchange).
pub const RETRIES: u8 = 4;

/// The candidates' timer: retry the probe of `node`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CandidateTick {
    pub node: NodeId,
}

/// The context of a probe of a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateCtx {
    pub node: NodeId,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// The newest relayed fact about it (Alive): what we admit on its answer.
    fact: Update,
    /// Insertion order (the oldest goes first when the table is full).
    added: u64,
    /// `None` while our probe is out (or its retry is timed); after the last failure, when
    /// it may be probed again if someone names it.
    retry_at: Option<Millis>,
    /// Probes sent since it was (re)nominated.
    attempts: u8,
    /// Who named it (last): its budget pays for the retries.
    by: NodeId,
}

/// Counters, for `Stats` and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateStats {
    /// Probes of candidates sent.
    pub probed: u64,
    /// Candidates admitted on their own answer.
    pub admitted: u64,
    /// Relayed facts about unknown nodes not taken (per-message or per-sender budget).
    pub refused: u64,
    /// Candidates dropped for newer ones (table full).
    pub evicted: u64,
}

/// What to do about a relayed fact of an unknown node.
#[derive(Debug, PartialEq, Eq)]
pub enum Nomination {
    /// A new candidate (or one whose retry time came): probe it now.
    Probe(NodeId),
    /// Already a candidate (probe out, or failed recently): its fact is kept up to date.
    Known,
    /// Over a budget: ignored.
    Refused,
}

pub struct Candidates {
    table: BTreeMap<NodeId, Candidate>,
    next: u64,
    budgets: SenderBudgets,
    pub stats: CandidateStats,
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates {
            table: BTreeMap::new(),
            next: 0,
            budgets: SenderBudgets::new(BudgetConfig {
                per_second: PER_SECOND,
                burst: BURST,
                max_senders: 4_096,
            }),
            stats: CandidateStats::default(),
        }
    }
}

/// What [`Candidates::admit`] counted for one message (its one summary log line).
#[derive(Debug, Default)]
pub struct Tally {
    /// Candidates nominated (and probed) from this message.
    pub nominated: usize,
    /// Facts about unknown nodes ignored: relayed by a non-member, or over a budget.
    pub refused: usize,
}

impl Candidates {
    /// Whether the fact `u`, in a message from `sender` (`None`: our own verdict), is for
    /// the member table. A fact about a node we do not know, relayed by someone else, is
    /// not: if the relay is a live member or our bootstrap, the node becomes a candidate
    /// (and is probed now, or was recently); what a stranger relays is ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn admit<C: From<CandidateCtx>, T>(
        &mut self,
        u: &Update,
        sender: Option<&NodeId>,
        members: &Members,
        node: &Node,
        tally: &mut Tally,
        now: Millis,
        out: &mut Vec<Effect<C, T>>,
    ) -> bool {
        let Some(s) = sender else {
            return true;
        };
        if *s == u.node {
            // It speaks for itself: a member now, a candidate no more.
            self.forget(s);
            return true;
        }
        if members.get(&u.node).is_some() {
            return true;
        }
        if !members.is_live(s) && !node.bootstrap.contains(s) {
            tally.refused += 1;
            return false;
        }
        match self.nominate(u, s, &mut tally.nominated, now) {
            Nomination::Probe(n) => out.push(probe(node, &n)),
            Nomination::Known => {}
            Nomination::Refused => tally.refused += 1,
        }
        false
    }

    /// Our probe of a candidate failed: a timed-out one is retried after a short wait
    /// ([`Self::on_failed`]).
    pub fn on_send_failed<C, T: From<CandidateTick>>(
        &mut self,
        ctx: &CandidateCtx,
        kind: SendErrorKind,
        node: &Node,
        now: Millis,
        rng: &mut impl Rng,
        out: &mut Vec<Effect<C, T>>,
    ) {
        let timed_out = kind == SendErrorKind::Timeout;
        let cool_off = node.cfg.probe_interval_ms;
        if let Some(after) = self.on_failed(ctx, timed_out, now, cool_off, rng) {
            let t = CandidateTick {
                node: ctx.node.clone(),
            };
            out.push(Effect::timer(after, t.into()));
        }
    }

    /// The retry timer of a candidate fired: probe it again if it still is one.
    pub fn on_tick<C: From<CandidateCtx>, T>(
        &mut self,
        t: &CandidateTick,
        node: &Node,
        out: &mut Vec<Effect<C, T>>,
    ) {
        if self.on_retry(t) {
            out.push(probe(node, &t.node));
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn contains(&self, node: &NodeId) -> bool {
        self.table.contains_key(node)
    }

    /// `by` (a member, or our bootstrap) relayed `fact` about a node we do not know.
    /// Only Alive facts nominate (we would not admit on anything else); `taken` counts this
    /// message's nominations so far (the caller's per-message cap).
    pub fn nominate(
        &mut self,
        fact: &Update,
        by: &NodeId,
        taken: &mut usize,
        now: Millis,
    ) -> Nomination {
        if fact.status != MemberStatus::Alive {
            return Nomination::Known;
        }
        if let Some(c) = self.table.get_mut(&fact.node) {
            if fact.incarnation > c.fact.incarnation
                || (fact.incarnation == c.fact.incarnation && c.fact.info.is_none())
            {
                c.fact = fact.clone();
            }
            return match c.retry_at {
                Some(at) if now >= at => {
                    if !self.budgets.allow(by, 1, now) {
                        self.stats.refused += 1;
                        return Nomination::Refused;
                    }
                    c.by = by.clone();
                    c.retry_at = None;
                    c.attempts = 1;
                    self.stats.probed += 1;
                    Nomination::Probe(fact.node.clone())
                }
                _ => Nomination::Known,
            };
        }
        if *taken >= PER_MESSAGE || !self.budgets.allow(by, 1, now) {
            self.stats.refused += 1;
            return Nomination::Refused;
        }
        *taken += 1;
        if self.table.len() >= CAPACITY {
            if let Some(oldest) = self
                .table
                .iter()
                .min_by_key(|(_, c)| c.added)
                .map(|(n, _)| n.clone())
            {
                self.table.remove(&oldest);
                self.stats.evicted += 1;
            }
        }
        self.next += 1;
        self.table.insert(
            fact.node.clone(),
            Candidate {
                fact: fact.clone(),
                added: self.next,
                retry_at: None,
                attempts: 1,
                by: by.clone(),
            },
        );
        self.stats.probed += 1;
        Nomination::Probe(fact.node.clone())
    }

    /// The candidate answered our probe (any answer: it is there and speaks for itself):
    /// the fact to admit it with, if it is still ours to admit.
    pub fn on_answer(&mut self, ctx: &CandidateCtx) -> Option<Update> {
        let c = self.table.remove(&ctx.node)?;
        self.stats.admitted += 1;
        Some(c.fact)
    }

    /// Our probe of the candidate failed (`timed_out`: no answer; else `Offline`). A timeout
    /// is retried up to [`RETRIES`] times: the wait before the retry is returned (500 ms
    /// doubled per attempt, ± 50%, drawn from `rng`). Otherwise the candidate is not probed
    /// again before `now + cool_off`.
    pub fn on_failed(
        &mut self,
        ctx: &CandidateCtx,
        timed_out: bool,
        now: Millis,
        cool_off: Millis,
        rng: &mut impl Rng,
    ) -> Option<Millis> {
        let c = self.table.get_mut(&ctx.node)?;
        if timed_out && c.attempts <= RETRIES && self.budgets.allow(&c.by, 1, now) {
            let base: Millis = 500 << (c.attempts - 1);
            return Some(rng.gen_range(base / 2..=base + base / 2));
        }
        c.retry_at = Some(now.saturating_add(cool_off));
        None
    }

    /// The retry timer of `node` fired: probe it again if it is still a candidate.
    pub fn on_retry(&mut self, t: &CandidateTick) -> bool {
        match self.table.get_mut(&t.node) {
            Some(c) if c.retry_at.is_none() && c.attempts <= RETRIES => {
                c.attempts += 1;
                self.stats.probed += 1;
                true
            }
            _ => false,
        }
    }

    /// The node became a member by other means (it spoke to us itself).
    pub fn forget(&mut self, node: &NodeId) {
        self.table.remove(node);
    }
}

/// Our probe of candidate `target`. It carries only our own fact (the candidate learns us
/// from us), not dissemination's piggyback: probes of nodes a liar invented must not use
/// up the retransmissions of real facts. Not a failure verdict, only an admission: no
/// hurry, room for a slow node (twice the probe timeout).
fn probe<C: From<CandidateCtx>, T>(node: &Node, target: &NodeId) -> Effect<C, T> {
    let timeout_s = node
        .cfg
        .probe_timeout_ms
        .saturating_mul(2)
        .div_ceil(1000)
        .max(1);
    let req = Request::Probe {
        seq: 0,
        updates: vec![node.liveness()],
        protocol_version: PROTOCOL_VERSION,
    };
    let ctx = CandidateCtx {
        node: target.clone(),
    };
    node.send(target, &req, Some((timeout_s, ctx.into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn alive(node: &str, inc: u64) -> Update {
        Update {
            node: id(node),
            status: MemberStatus::Alive,
            incarnation: inc,
            info: None,
            origin: id("relay.os"),
        }
    }

    #[test]
    fn a_relayed_fact_makes_a_candidate_probed_once_and_admitted_on_its_answer() {
        let mut c = Candidates::default();
        let by = id("relay.os");
        let mut taken = 0;
        assert_eq!(
            c.nominate(&alive("new.os", 1), &by, &mut taken, 0),
            Nomination::Probe(id("new.os"))
        );
        // Named again while the probe is out: no second probe, the newer fact kept.
        assert_eq!(
            c.nominate(&alive("new.os", 2), &by, &mut taken, 10),
            Nomination::Known
        );
        assert_eq!(taken, 1);
        let fact = c.on_answer(&CandidateCtx { node: id("new.os") }).unwrap();
        assert_eq!(fact.incarnation, 2);
        assert!(c.is_empty());
        assert_eq!(c.on_answer(&CandidateCtx { node: id("new.os") }), None);
        assert_eq!((c.stats.probed, c.stats.admitted), (1, 1));
    }

    #[test]
    fn a_candidate_that_did_not_answer_waits_before_the_next_probe() {
        let mut c = Candidates::default();
        let by = id("relay.os");
        let mut taken = 0;
        c.nominate(&alive("gone.os", 1), &by, &mut taken, 0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let ctx = CandidateCtx {
            node: id("gone.os"),
        };
        let t = CandidateTick {
            node: id("gone.os"),
        };
        // Timeouts are retried, RETRIES times, after a growing wait.
        for k in 0..RETRIES {
            let wait = c.on_failed(&ctx, true, 0, 5_000, &mut rng).unwrap();
            let base = 500u64 << k;
            assert!((base / 2..=base + base / 2).contains(&wait), "{wait}");
            assert!(c.on_retry(&t));
        }
        assert_eq!(c.on_failed(&ctx, true, 0, 5_000, &mut rng), None);
        assert!(!c.on_retry(&t), "no retry past the last");
        assert_eq!(
            c.nominate(&alive("gone.os", 1), &by, &mut taken, 4_999),
            Nomination::Known
        );
        assert_eq!(
            c.nominate(&alive("gone.os", 1), &by, &mut taken, 5_000),
            Nomination::Probe(id("gone.os"))
        );
        assert_eq!(c.stats.probed, 2 + u64::from(RETRIES));
        // Offline is not retried.
        assert_eq!(c.on_failed(&ctx, false, 5_000, 5_000, &mut rng), None);
        assert!(!c.on_retry(&t));
    }

    #[test]
    fn retries_are_paid_from_the_budget_of_whoever_named_the_candidate() {
        let mut c = Candidates::default();
        let liar = id("liar.os");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut names = Vec::new();
        for m in 0..2 {
            let mut taken = 0;
            for k in 0..PER_MESSAGE {
                let n = format!("f{m}x{k}.os");
                assert!(matches!(
                    c.nominate(&alive(&n, 1), &liar, &mut taken, 0),
                    Nomination::Probe(_)
                ));
                names.push(n);
            }
        }
        // The burst is spent on first probes: no timeout is retried.
        for n in &names {
            let ctx = CandidateCtx { node: id(n) };
            assert_eq!(c.on_failed(&ctx, true, 0, 5_000, &mut rng), None);
        }
        // A second later, PER_SECOND retries are affordable, then no more.
        let retried = names
            .iter()
            .filter(|n| {
                let ctx = CandidateCtx { node: id(n) };
                c.table.get_mut(&ctx.node).unwrap().retry_at = None;
                c.on_failed(&ctx, true, 1_000, 5_000, &mut rng).is_some()
            })
            .count();
        assert_eq!(retried, PER_SECOND as usize);
    }

    #[test]
    fn nominations_are_capped_per_message_per_sender_and_in_total() {
        let mut c = Candidates::default();
        let liar = id("liar.os");
        let mut probes = 0;
        // One message naming 10,000 nodes: at most PER_MESSAGE taken.
        let mut taken = 0;
        for k in 0..10_000 {
            if let Nomination::Probe(_) =
                c.nominate(&alive(&format!("f{k}.os"), 1), &liar, &mut taken, 0)
            {
                probes += 1;
            }
        }
        assert_eq!(probes, PER_MESSAGE);
        // Many messages at the same moment: the sender's burst, no more.
        for m in 0..100 {
            let mut taken = 0;
            for k in 0..100 {
                if let Nomination::Probe(_) =
                    c.nominate(&alive(&format!("g{m}x{k}.os"), 1), &liar, &mut taken, 0)
                {
                    probes += 1;
                }
            }
        }
        assert_eq!(probes, BURST as usize);
        assert!(c.len() <= CAPACITY);
        // Another relay has a budget of its own; the table stays at its capacity.
        let other = id("other.os");
        for k in 0..200 {
            let mut taken = 0;
            c.nominate(&alive(&format!("h{k}.os"), 1), &other, &mut taken, 0);
        }
        assert_eq!(c.len(), CAPACITY);
        assert_eq!(c.stats.evicted, (BURST as u64 + 200) - CAPACITY as u64);
        // Non-Alive facts nominate nobody.
        let mut dead = alive("d.os", 1);
        dead.status = MemberStatus::Dead;
        let mut taken = 0;
        assert_eq!(c.nominate(&dead, &other, &mut taken, 0), Nomination::Known);
        assert!(!c.contains(&id("d.os")));
    }
}
