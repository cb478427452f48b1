//! Relays of our trees that withhold pushes (review 13d, defect 3): a tree child of ours
//! that acknowledges our pushes and answers our `Ping`s but never pushes on to its own
//! children. Its children hear of the numbers by `IHave` and graft, onto us among others;
//! we keep grafted links to them. This machine turns those grafts into evidence against
//! the relay and marks it demoted: the roster then puts it at the leaves, as a confirmed
//! death does (`crate::core::promote`).
//!
//! Evidence: a child `c` of relay `p` (children by our own roster, so nobody chooses whose
//! child it is) lacked number `n` (it grafted onto us from below `n`, or took `n` from us
//! on a grafted link), where `p` had `n`: its tree link acknowledged `n` to us before, or
//! within [`ACK_SLACK_MS`] after (the two answers race; a relay that was down, or missed
//! `n` too, acknowledges it later), and `n` was published since `p` has these children
//! (older numbers belong to the tree before). Only
//! our own tree children are judged: deeper relays acknowledge to their parents, so we
//! cannot tell one that withholds from one whose own parent was late.
//!
//! A number counts against `p` once at least [`MIN_CHILDREN`] and a majority of `p`'s
//! children lacked it; `p` is demoted once [`MIN_NUMBERS`] numbers count against it within
//! [`WINDOW_MS`]. So one member, or up to half of a relay's children (sibling Sybils),
//! grafting on every number cannot demote its honest parent, and independent loss (one
//! child missing one push, or `p` missing a note: then `p` acknowledges it late or to a
//! retried push) does not add up to it.
//!
//! Bounds: per topic and per tree child of ours, at most [`MAX_NUMBERS`] numbers with a
//! bit per child (forgotten after the window, and with a roster that gives `p` other
//! children or makes it no longer our child); at most
//! [`MAX_DEMOTED`] marks per topic, each for [`DEMOTED_MS`], dropped when the node no
//! longer subscribes. Pure: no I/O, time is an input.

use p2p_common::api::notify::Roster;
use p2p_common::{Millis, NodeId};
use std::collections::BTreeMap;

/// How long evidence against a relay counts.
pub const WINDOW_MS: Millis = 120_000;
/// Numbers that must count against a relay (each lacked by a majority of its children).
pub const MIN_NUMBERS: usize = 5;
/// Children that must have lacked a number for it to count (and more than half of them).
pub const MIN_CHILDREN: usize = 2;
/// A number a child lacked counts only if its relay acknowledged it to us by this long
/// after: one that acknowledges it later (it was down, or missed it too) did not have it
/// to push.
pub const ACK_SLACK_MS: Millis = 2_000;
/// Numbers remembered per relay (the highest are kept).
pub const MAX_NUMBERS: usize = 8;
/// How long a demoted relay stays at the leaves (rosters signed meanwhile keep it there).
pub const DEMOTED_MS: Millis = 600_000;
/// Demoted marks kept per topic (past this the one ending first goes).
pub const MAX_DEMOTED: usize = 64;

/// What we hold of one relay: its children (the bits are their places), the last number
/// published before they were its children (only later ones count), and per number a bit
/// per child that lacked it, and when it was first seen.
#[derive(Debug, Default)]
struct Evidence {
    children: Vec<NodeId>,
    base: u64,
    numbers: BTreeMap<u64, Mark>,
    /// The highest number the relay acknowledged to a push of ours that was a retry (it
    /// was behind, or our link to it failed): up to there it was catching up itself, and
    /// its children lacking those numbers is no evidence.
    caught_up: u64,
}

/// One number some children of a relay lacked.
#[derive(Debug)]
struct Mark {
    /// A bit per child (its place among the relay's children).
    bits: u32,
    /// When a child first lacked it.
    at: Millis,
    /// Whether the relay had it then: it acknowledged it to us by [`ACK_SLACK_MS`] after
    /// (None: not known yet). A relay that acknowledges it later missed it too.
    had: Option<bool>,
}

impl Evidence {
    /// The relay acknowledged up to `acked` by `now`.
    fn settle(&mut self, acked: u64, now: Millis) {
        let caught_up = self.caught_up;
        for (n, m) in self.numbers.iter_mut().filter(|(_, m)| m.had.is_none()) {
            let late = now > m.at.saturating_add(ACK_SLACK_MS);
            if *n <= acked || late {
                m.had = Some(*n <= acked && *n > caught_up && !late);
            }
        }
    }
}

#[derive(Debug, Default)]
struct TopicState {
    /// The roster this evidence is about, and the last number published when it was
    /// signed (a relay with new children counts only later ones).
    epoch: u64,
    base: u64,
    relays: BTreeMap<NodeId, Evidence>,
    /// Demoted nodes, until when.
    demoted: BTreeMap<NodeId, Millis>,
}

#[derive(Debug, Default)]
pub struct Withhold {
    topics: BTreeMap<String, TopicState>,
    /// Relays demoted so far (all topics).
    pub demotions: u64,
}

impl Withhold {
    /// We signed `roster` of our topic when its stream was at `last`: evidence is kept only
    /// of relays that are still our tree children with the same children (a demotion moves
    /// one subtree; the others keep counting).
    pub fn new_roster(&mut self, roster: &Roster, last: u64) {
        let t = self.topics.entry(roster.topic.clone()).or_default();
        t.epoch = roster.epoch;
        t.base = last;
        t.relays.retain(|p, e| {
            roster.parent(p) == Some(&roster.publisher) && roster.children(p) == e.children
        });
    }

    /// Whether `node` is marked demoted in `topic` (marks end at [`Self::purge`]).
    pub fn demoted(&self, topic: &str, node: &NodeId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.demoted.contains_key(node))
    }

    /// Drop the marks of `topic` that ended by `now` or whose node no longer subscribes.
    pub fn purge(&mut self, topic: &str, subscribes: &dyn Fn(&NodeId) -> bool, now: Millis) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.demoted.retain(|n, until| *until > now && subscribes(n));
        }
    }

    /// `child` of our `roster` (of our topic) lacked numbers `from..=to`: it grafted onto
    /// us from `from - 1`, or took them from us on a grafted link. `acked` gives what a tree
    /// child of ours acknowledged to us; `last` is our stream's last number. Returns the
    /// relay this demotes, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn lacked(
        &mut self,
        roster: &Roster,
        acked: &dyn Fn(&NodeId) -> Option<u64>,
        last: u64,
        child: &NodeId,
        from: u64,
        to: u64,
        now: Millis,
    ) -> Option<NodeId> {
        let parent = roster.parent(child)?.clone();
        if parent == roster.publisher || roster.parent(&parent) != Some(&roster.publisher) {
            return None;
        }
        let siblings = roster.children(&parent);
        let bit = siblings.iter().position(|c| c == child)?;
        let t = self.topics.entry(roster.topic.clone()).or_default();
        if t.epoch != roster.epoch {
            // No roster signed since we started: only numbers from now on count.
            t.epoch = roster.epoch;
            t.base = last;
            t.relays.clear();
        }
        if t.demoted.contains_key(&parent) {
            return None;
        }
        let e = t.relays.entry(parent.clone()).or_default();
        if e.children != siblings {
            *e = Evidence {
                children: siblings,
                base: t.base,
                numbers: BTreeMap::new(),
                caught_up: e.caught_up,
            };
        }
        // Published since the relay has these children.
        let hi = to.min(last);
        let lo = from
            .max(e.base + 1)
            .max(hi.saturating_sub(MAX_NUMBERS as u64 - 1));
        if hi < lo {
            return None;
        }
        let had = acked(&parent).unwrap_or(0);
        e.settle(had, now);
        e.numbers
            .retain(|_, m| now < m.at.saturating_add(WINDOW_MS));
        for n in lo..=hi {
            e.numbers
                .entry(n)
                .or_insert(Mark {
                    bits: 0,
                    at: now,
                    had: None,
                })
                .bits |= 1 << bit;
        }
        while e.numbers.len() > MAX_NUMBERS {
            e.numbers.pop_first();
        }
        e.settle(had, now);
        self.judge(&roster.topic, &parent, now)
    }

    /// Our tree child `relay` of `topic` acknowledged up to `acked` to a push of ours
    /// (`retry`: one sent again after a failure): the numbers its children lacked up to
    /// there, seen at most [`ACK_SLACK_MS`] before, it had, unless this was a retry (it
    /// was catching up itself).
    pub fn relay_acked(
        &mut self,
        topic: &str,
        relay: &NodeId,
        acked: u64,
        retry: bool,
        now: Millis,
    ) -> Option<NodeId> {
        let t = self.topics.get_mut(topic)?;
        if !retry && !t.relays.contains_key(relay) {
            return None;
        }
        let e = t.relays.entry(relay.clone()).or_default();
        if retry {
            e.caught_up = e.caught_up.max(acked);
        }
        e.settle(acked, now);
        self.judge(topic, relay, now)
    }

    /// Demote `relay` if the evidence held is enough.
    fn judge(&mut self, topic: &str, relay: &NodeId, now: Millis) -> Option<NodeId> {
        let t = self.topics.get_mut(topic)?;
        let e = t.relays.get(relay)?;
        let need = MIN_CHILDREN.max(e.children.len() / 2 + 1);
        let counted = e
            .numbers
            .values()
            .filter(|m| m.had == Some(true) && m.bits.count_ones() as usize >= need)
            .count();
        if e.children.len() < need || counted < MIN_NUMBERS {
            return None;
        }
        t.relays.remove(relay);
        if t.demoted.len() >= MAX_DEMOTED {
            let first = t
                .demoted
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(n, _)| n.clone());
            if let Some(f) = first {
                t.demoted.remove(&f);
            }
        }
        t.demoted
            .insert(relay.clone(), now.saturating_add(DEMOTED_MS));
        self.demotions += 1;
        Some(relay.clone())
    }

    /// Relays with evidence held in `topic` (for tests of the bounds).
    pub fn tracked(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.relays.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 members, fan-out 4: the publisher's children are m00..m03; m00's are m04..m07,
    /// m04's m20..m23.
    fn roster() -> Roster {
        let members: Vec<NodeId> = (0..30)
            .map(|i| format!("m{i:02}.os").parse().unwrap())
            .collect();
        Roster {
            publisher: "alice.os".parse().unwrap(),
            topic: "news".into(),
            epoch: 3,
            fanout: 4,
            members,
            signature: vec![],
            index: Default::default(),
        }
    }

    fn id(i: usize) -> NodeId {
        format!("m{i:02}.os").parse().unwrap()
    }

    const K: u64 = MIN_NUMBERS as u64;

    /// The relay m00 acknowledged everything up to 100.
    fn acked(_: &NodeId) -> Option<u64> {
        Some(100)
    }

    #[test]
    fn a_majority_of_children_lacking_enough_numbers_demotes_their_relay() {
        let r = roster();
        assert_eq!(r.children(&id(0)), vec![id(4), id(5), id(6), id(7)]);
        let mut w = Withhold::default();
        w.new_roster(&r, 10);
        let mut now = 1_000;
        let mut demoted = None;
        // Children m04, m05, m06 (3 of 4) each lack MIN_NUMBERS numbers from 11 on, one
        // number at a time.
        for n in 11..11 + K {
            for c in [4, 5, 6] {
                assert_eq!(demoted, None, "demoted early, at {n} by m{c:02}");
                demoted = w.lacked(&r, &acked, 100, &id(c), n, n, now);
                now += 1_000;
            }
        }
        assert_eq!(demoted, Some(id(0)));
        assert_eq!(w.demotions, 1);
        assert!(w.demoted("news", &id(0)));
        assert_eq!(w.tracked("news"), 0, "its evidence is forgotten");
        // Marked once: more evidence does not count it again.
        assert_eq!(w.lacked(&r, &acked, 100, &id(7), 11, 10 + K, now), None);
        assert_eq!(w.demotions, 1);
        // The mark stays for DEMOTED_MS, and goes when the node leaves.
        w.purge("news", &|_| true, now + DEMOTED_MS - 10_000);
        assert!(w.demoted("news", &id(0)));
        w.purge("news", &|_| true, now + DEMOTED_MS);
        assert!(!w.demoted("news", &id(0)));
        let mut w2 = Withhold::default();
        w2.new_roster(&r, 0);
        for c in [4, 5, 6] {
            w2.lacked(&r, &acked, 100, &id(c), 1, K, now);
        }
        assert!(w2.demoted("news", &id(0)));
        w2.purge("news", &|n| n != &id(0), now);
        assert!(!w2.demoted("news", &id(0)));
    }

    #[test]
    fn one_child_on_many_numbers_or_many_children_on_one_number_does_not_demote() {
        let r = roster();
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        // One child, every number (one graft each, and one range).
        for n in 1..=50 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(4), n, n, n * 1_000), None);
        }
        assert_eq!(w.lacked(&r, &acked, 100, &id(4), 1, 100, 60_000), None);
        // Two of four children (sibling Sybils): not a majority.
        for n in 51..=60 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(5), n, n, 60_000), None);
        }
        // Every child, but on one number too few.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for c in 4..=7 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(c), 7, 5 + K, 1_000), None);
        }
        // Numbers the relay acknowledged only later than ACK_SLACK_MS after its children
        // lacked them (it was down, or missed them too) do not count; acknowledged within
        // it (its answer and theirs race), they do.
        let behind = |_: &NodeId| Some(20);
        for (late, want) in [(ACK_SLACK_MS + 1, None), (ACK_SLACK_MS, Some(id(0)))] {
            let mut w = Withhold::default();
            w.new_roster(&r, 20);
            for c in 4..=7 {
                assert_eq!(w.lacked(&r, &behind, 100, &id(c), 21, 20 + K, 1_000), None);
            }
            assert_eq!(
                w.relay_acked("news", &id(0), 20 + K, false, 1_000 + late),
                want
            );
        }
        // Acknowledged in time, but to a push we sent again (it was catching up itself).
        let mut w = Withhold::default();
        w.new_roster(&r, 20);
        for c in 4..=7 {
            assert_eq!(w.lacked(&r, &behind, 100, &id(c), 21, 20 + K, 1_000), None);
        }
        assert_eq!(w.relay_acked("news", &id(0), 20 + K, true, 1_500), None);
        for c in 4..=7 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(c), 21, 20 + K, 2_000), None);
        }
        // Nor numbers from before the roster, nor evidence past the window.
        let mut w = Withhold::default();
        w.new_roster(&r, 50);
        for c in 4..=7 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(c), 40, 50, 1_000), None);
        }
        for (i, n) in [51u64, 52, 53].into_iter().enumerate() {
            let at = 1_000 + i as u64 * WINDOW_MS;
            for c in 4..=7 {
                assert_eq!(w.lacked(&r, &acked, 100, &id(c), n, n, at), None);
            }
        }
        // The publisher's own children and deeper members' children are not judged here.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for c in 0..=3 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(c), 1, 10, 1_000), None);
        }
        assert_eq!(r.children(&id(4)), vec![id(20), id(21), id(22), id(23)]);
        for c in 20..=23 {
            assert_eq!(w.lacked(&r, &acked, 100, &id(c), 1, 10, 1_000), None);
        }
        assert_eq!(w.tracked("news"), 0);
        // A new roster that gives the relay other children forgets what was held of it;
        // one that leaves its children as they were does not.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for c in [4, 5, 6] {
            w.lacked(&r, &acked, 100, &id(c), 1, K - 1, 1_000);
        }
        let mut r4 = r.clone();
        r4.epoch = 4;
        r4.members.swap(5, 25);
        r4.index = Default::default();
        w.new_roster(&r4, K - 1);
        for c in [4, 25, 6] {
            assert_eq!(w.lacked(&r4, &acked, 100, &id(c), K, K, 2_000), None);
        }
        let mut r5 = r.clone();
        r5.epoch = 5;
        r5.members.swap(1, 2);
        r5.index = Default::default();
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for c in [4, 5, 6] {
            w.lacked(&r, &acked, 100, &id(c), 1, K - 1, 1_000);
        }
        w.new_roster(&r5, K - 1);
        let mut got = None;
        for c in [4, 5, 6] {
            got = w.lacked(&r5, &acked, 100, &id(c), K, K, 2_000);
        }
        assert_eq!(
            got,
            Some(id(0)),
            "m00 kept its children: the numbers before count"
        );
    }
}
