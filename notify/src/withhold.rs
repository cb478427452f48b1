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
//! A number counts against `p` once [`need`] of its children lacked it: at least
//! [`MIN_CHILDREN`] and more than half of the fan-out (not of `p`'s actual children: the
//! publisher's last tree child has only the newest subscribers as children, and two Sybils
//! that subscribe last would be "a majority" of two or three). `p` is demoted once
//! [`MIN_NUMBERS`] numbers count against it within [`WINDOW_MS`]. A relay with fewer
//! children than [`need`] is never judged by them; its withholding costs the publisher
//! little (fewer than half a fan-out of grafting members). Independent loss (one child
//! missing one push, or `p` missing a note: then `p` acknowledges it late or to a retried
//! push) does not add up to it.
//!
//! Retries: a number `p` acknowledged to a push sent again after a failure is excused (it
//! was catching up). So a withholder could fail every first push and acknowledge only the
//! retries (review 13f-b, defect 2); we see that ourselves: a relay whose last
//! [`RETRY_WINDOW`] acknowledgements that moved it on include [`MIN_RETRIED`] retries is
//! demoted too. A relay that was down acknowledges everything to one retry, and loss makes
//! each first push fail independently (about 36% under 20% loss each way).
//!
//! Framing: at most one demotion per seat (place among our tree children) per
//! [`DEMOTED_MS`], and the children whose evidence demoted a relay are not heard for as long
//! (they are its successor's children too). So a majority of Sybil children frames an honest
//! relay at most once per [`DEMOTED_MS`], and at most one mark per seat lasts at a time:
//! honest leaves are not used up, and a Sybil is not promoted for want of them.
//!
//! Bounds: per topic and per tree child of ours, at most [`MAX_NUMBERS`] numbers with a
//! bit per child (forgotten after the window, and with a roster that gives `p` other
//! children or makes it no longer our child) and [`RETRY_WINDOW`] bits of its
//! acknowledgements (forgotten when it is no longer our child); at most
//! [`MAX_DEMOTED`] marks and [`MAX_SUSPECTS`] suspect children per topic, each for
//! [`DEMOTED_MS`], dropped when the node no longer subscribes; a seat mark per seat. Marks are
//! in memory only: a publisher that restarts forgets them. Pure: no I/O, time is an input.

use p2p_common::api::notify::Roster;
use p2p_common::{Millis, NodeId};
use std::collections::BTreeMap;

/// How long evidence against a relay counts.
pub const WINDOW_MS: Millis = 120_000;
/// Numbers that must count against a relay (each lacked by [`need`] of its children).
pub const MIN_NUMBERS: usize = 5;
/// Children that must have lacked a number for it to count, whatever the fan-out (see
/// [`need`]).
pub const MIN_CHILDREN: usize = 3;
/// A number a child lacked counts only if its relay acknowledged it to us by this long
/// after: one that acknowledges it later (it was down, or missed it too) did not have it
/// to push.
pub const ACK_SLACK_MS: Millis = 2_000;
/// Numbers remembered per relay (the highest are kept).
pub const MAX_NUMBERS: usize = 8;
/// How long a demoted relay stays at the leaves (rosters signed meanwhile keep it there);
/// also how long a seat is not judged again after a demotion, and how long the children
/// whose evidence demoted a relay are not heard.
pub const DEMOTED_MS: Millis = 600_000;
/// Demoted marks kept per topic (past this the one ending first goes).
pub const MAX_DEMOTED: usize = 64;
/// Acknowledgements of ours remembered per relay, to see whether it answers only retries.
pub const RETRY_WINDOW: u32 = 16;
/// A relay whose last [`RETRY_WINDOW`] acknowledgements include at least this many that
/// answered a push sent again (its first push failed) is demoted: under 20% loss each way
/// an honest relay's first push fails about 36% of the time, so 15 of 16 happens about
/// once in 400,000 windows.
pub const MIN_RETRIED: u32 = 15;
/// Children marked suspect per topic (past this the one ending first goes).
pub const MAX_SUSPECTS: usize = 256;

/// Children of one relay that must have lacked a number for it to count against it: at
/// least [`MIN_CHILDREN`] and more than half of the fan-out (not of its actual children:
/// the publisher's last tree child has the newest subscribers as its few children). A relay
/// with fewer children is never judged by them.
pub fn need(fanout: u32) -> usize {
    MIN_CHILDREN.max(fanout as usize / 2 + 1)
}

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
    /// A bit per acknowledgement of ours that moved it on (the newest lowest): whether it
    /// answered a retry; `acks` of them so far (at most [`RETRY_WINDOW`]).
    retried: u32,
    acks: u32,
    /// The highest number it acknowledged to us.
    acked: u64,
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

/// A seat (a place among the publisher's tree children) whose relay was demoted.
#[derive(Debug)]
struct Seat {
    until: Millis,
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
    /// Seats (by place) demoted lately: not judged again until then.
    seats: BTreeMap<usize, Seat>,
    /// Children whose evidence demoted a relay: not heard until then.
    suspects: BTreeMap<NodeId, Millis>,
}

/// Insert `node` until `until` in `map` of at most `max` entries (past it the one ending
/// first goes).
fn mark(map: &mut BTreeMap<NodeId, Millis>, node: &NodeId, until: Millis, max: usize) {
    if !map.contains_key(node) && map.len() >= max {
        let first = map.iter().min_by_key(|(_, u)| **u).map(|(n, _)| n.clone());
        if let Some(f) = first {
            map.remove(&f);
        }
    }
    map.insert(node.clone(), until);
}

#[derive(Debug, Default)]
pub struct Withhold {
    topics: BTreeMap<String, TopicState>,
    /// Relays demoted so far (all topics).
    pub demotions: u64,
}

impl Withhold {
    /// We signed `roster` of our topic when its stream was at `last`: evidence is kept only
    /// of relays that are still our tree children, and their children's marks only if they
    /// have the same children (a demotion moves one subtree; the others keep counting). What
    /// a relay acknowledged to retries is kept: a roster signed often does not reset it.
    pub fn new_roster(&mut self, roster: &Roster, last: u64) {
        let t = self.topics.entry(roster.topic.clone()).or_default();
        t.epoch = roster.epoch;
        t.base = last;
        t.relays.retain(|p, e| {
            let kids = roster.children(p);
            if kids != e.children {
                e.children = kids;
                e.base = last;
                e.numbers.clear();
            }
            roster.parent(p) == Some(&roster.publisher)
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
            t.suspects.retain(|n, until| *until > now && subscribes(n));
            t.seats.retain(|_, s| s.until > now);
        }
    }

    /// The evidence held of `relay`, our tree child in `roster` (made or reset to its
    /// children there), and its seat; None if it is not our tree child.
    fn evidence<'a>(
        t: &'a mut TopicState,
        roster: &Roster,
        relay: &NodeId,
        last: u64,
    ) -> Option<(&'a mut Evidence, usize)> {
        if roster.parent(relay) != Some(&roster.publisher) {
            return None;
        }
        let seat = roster.members.iter().position(|m| m == relay)?;
        if t.epoch != roster.epoch {
            // No roster signed since we started: only numbers from now on count.
            t.epoch = roster.epoch;
            t.base = last;
            t.relays.clear();
        }
        let children = roster.children(relay);
        let base = t.base;
        let e = t.relays.entry(relay.clone()).or_default();
        if e.children != children {
            *e = Evidence {
                children,
                base,
                caught_up: e.caught_up,
                retried: e.retried,
                acks: e.acks,
                acked: e.acked,
                ..Evidence::default()
            };
        }
        Some((e, seat))
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
        if parent == roster.publisher {
            return None;
        }
        let siblings = roster.children(&parent);
        let bit = siblings.iter().position(|c| c == child)?;
        let t = self.topics.entry(roster.topic.clone()).or_default();
        if t.demoted.contains_key(&parent) || t.suspects.contains_key(child) {
            return None;
        }
        let (e, seat) = Self::evidence(t, roster, &parent, last)?;
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
        self.judge(&roster.topic, &parent, seat, need(roster.fanout), now)
    }

    /// Our tree child `relay` of `roster` (of our topic, whose stream is at `last`)
    /// acknowledged up to `acked` to a push of ours (`retry`: one sent again after a
    /// failure): the numbers its children lacked up to there, seen at most
    /// [`ACK_SLACK_MS`] before, it had, unless this was a retry (it was catching up
    /// itself). And a relay that answers only retries ([`MIN_RETRIED`] of its last
    /// [`RETRY_WINDOW`] acknowledgements) is demoted: by failing every first push it would
    /// otherwise excuse every number.
    pub fn relay_acked(
        &mut self,
        roster: &Roster,
        last: u64,
        relay: &NodeId,
        acked: u64,
        retry: bool,
        now: Millis,
    ) -> Option<NodeId> {
        let t = self.topics.entry(roster.topic.clone()).or_default();
        if t.demoted.contains_key(relay) {
            return None;
        }
        let (e, seat) = Self::evidence(t, roster, relay, last)?;
        if acked > e.acked {
            e.acked = acked;
            e.retried = (e.retried << 1 | u32::from(retry)) & ((1 << RETRY_WINDOW) - 1);
            e.acks = (e.acks + 1).min(RETRY_WINDOW);
        }
        if retry {
            e.caught_up = e.caught_up.max(acked);
        }
        e.settle(acked, now);
        self.judge(&roster.topic, relay, seat, need(roster.fanout), now)
    }

    /// Demote `relay` (at `seat` among our tree children) if the evidence held is enough:
    /// [`MIN_NUMBERS`] numbers each lacked by `need` of its children, or acknowledgements
    /// that are nearly all retries; at most one demotion per seat per [`DEMOTED_MS`].
    fn judge(
        &mut self,
        topic: &str,
        relay: &NodeId,
        seat: usize,
        need: usize,
        now: Millis,
    ) -> Option<NodeId> {
        let t = self.topics.get_mut(topic)?;
        if t.seats.get(&seat).is_some_and(|s| s.until > now) {
            return None;
        }
        let e = t.relays.get(relay)?;
        let counted: Vec<&Mark> = e
            .numbers
            .values()
            .filter(|m| m.had == Some(true) && m.bits.count_ones() as usize >= need)
            .collect();
        let by_children = e.children.len() >= need && counted.len() >= MIN_NUMBERS;
        let by_retries = e.acks >= RETRY_WINDOW && e.retried.count_ones() >= MIN_RETRIED;
        if !by_children && !by_retries {
            return None;
        }
        let until = now.saturating_add(DEMOTED_MS);
        if by_children {
            // Its accusers are not heard for a while: if the relay was honest they framed
            // it, and they are the successor's children too.
            let bits = counted.iter().fold(0u32, |b, m| b | m.bits);
            let accusers: Vec<NodeId> = e
                .children
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, c)| c.clone())
                .collect();
            for c in &accusers {
                mark(&mut t.suspects, c, until, MAX_SUSPECTS);
            }
        }
        t.relays.remove(relay);
        t.seats.insert(seat, Seat { until });
        mark(&mut t.demoted, relay, until, MAX_DEMOTED);
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
                w.relay_acked(&r, 100, &id(0), 20 + K, false, 1_000 + late),
                want
            );
        }
        // Acknowledged in time, but to a push we sent again (it was catching up itself).
        let mut w = Withhold::default();
        w.new_roster(&r, 20);
        for c in 4..=7 {
            assert_eq!(w.lacked(&r, &behind, 100, &id(c), 21, 20 + K, 1_000), None);
        }
        assert_eq!(w.relay_acked(&r, 100, &id(0), 20 + K, true, 1_500), None);
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

    /// `members` members at fan-out `fanout`.
    fn roster_n(members: usize, fanout: u32) -> Roster {
        Roster {
            members: (0..members).map(id).collect(),
            fanout,
            ..roster()
        }
    }

    #[test]
    fn a_relay_with_fewer_children_than_half_the_fanout_is_never_judged() {
        // 34 members at fan-out 8: the publisher's 4th child (m03) has m32 and m33.
        for (members, kids) in [(34, 2), (35, 3)] {
            let r = roster_n(members, 8);
            assert_eq!(r.children(&id(3)).len(), kids);
            let mut w = Withhold::default();
            w.new_roster(&r, 0);
            for n in 1..=40 {
                for c in r.children(&id(3)) {
                    assert_eq!(w.lacked(&r, &acked, 100, &c, 1, n, n * 1_000), None);
                }
            }
            assert_eq!(w.demotions, 0, "{kids} children framed their relay");
        }
        // A full relay at fan-out 8 needs 5 of its 8 children: 4 are not enough.
        let r = roster_n(72, 8);
        let kids = r.children(&id(0));
        assert_eq!(kids.len(), 8);
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for c in &kids[..4] {
            assert_eq!(w.lacked(&r, &acked, 100, c, 1, K, 1_000), None);
        }
        assert_eq!(
            w.lacked(&r, &acked, 100, &kids[4], 1, K, 1_000),
            Some(id(0))
        );
        assert_eq!(
            need(2),
            3,
            "at fan-out 2 no relay is judged by its children"
        );
    }

    #[test]
    fn a_seat_is_demoted_once_and_its_accusers_are_not_heard_against_the_successor() {
        let r = roster();
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        let mut got = None;
        for c in [4, 5, 6] {
            got = w.lacked(&r, &acked, 100, &id(c), 1, K, 1_000);
        }
        assert_eq!(got, Some(id(0)));
        // The next roster puts leaf m29 in m00's seat, with m00's children.
        let mut r2 = r.clone();
        r2.epoch = 4;
        r2.members.swap(0, 29);
        r2.index = Default::default();
        assert_eq!(r2.children(&id(29)), vec![id(4), id(5), id(6), id(7)]);
        w.new_roster(&r2, K);
        // The same accusers: not heard.
        for c in [4, 5, 6] {
            assert_eq!(
                w.lacked(&r2, &acked, 100, &id(c), K + 1, 3 * K, 2_000),
                None
            );
        }
        assert_eq!(w.tracked("news"), 0, "suspects' grafts hold no evidence");
        // Nor is the seat judged again by others (m07) within DEMOTED_MS.
        assert_eq!(
            w.lacked(&r2, &acked, 100, &id(7), K + 1, 3 * K, 2_000),
            None
        );
        assert_eq!(w.demotions, 1);
        // After it, the seat may be judged again, and the suspects heard.
        let later = 1_000 + DEMOTED_MS;
        w.purge("news", &|_| true, later);
        assert!(!w.demoted("news", &id(0)));
        let mut got = None;
        for c in [4, 5, 6] {
            got = w.lacked(&r2, &acked, 100, &id(c), K + 1, 2 * K, later);
        }
        assert_eq!(got, Some(id(29)));
        // Other seats are judged meanwhile: m01's children demote it.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for c in [4, 5, 6] {
            w.lacked(&r, &acked, 100, &id(c), 1, K, 1_000);
        }
        assert_eq!(r.children(&id(1)), vec![id(8), id(9), id(10), id(11)]);
        let mut got = None;
        for c in [8, 9, 10] {
            got = w.lacked(&r, &acked, 100, &id(c), 1, K, 1_000);
        }
        assert_eq!(got, Some(id(1)));
    }

    #[test]
    fn a_relay_that_answers_only_retries_is_demoted_one_that_fails_some_first_pushes_is_not() {
        let r = roster();
        let w16 = u64::from(RETRY_WINDOW);
        // Every acknowledgement answers a retry: demoted at the 16th.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for n in 1..w16 {
            assert_eq!(w.relay_acked(&r, 100, &id(0), n, true, n * 3_000), None);
        }
        assert_eq!(
            w.relay_acked(&r, 100, &id(0), w16, true, 60_000),
            Some(id(0))
        );
        // A roster that gives it other children keeps what it acknowledged to retries.
        let mut w2 = Withhold::default();
        w2.new_roster(&r, 0);
        for n in 1..10 {
            assert_eq!(w2.relay_acked(&r, 100, &id(0), n, true, n * 3_000), None);
        }
        let mut r6 = r.clone();
        r6.epoch = 6;
        r6.members.swap(5, 25);
        r6.index = Default::default();
        w2.new_roster(&r6, 10);
        let got: Vec<_> = (10..=w16)
            .filter_map(|n| w2.relay_acked(&r6, 100, &id(0), n, true, n * 3_000))
            .collect();
        assert_eq!(got, vec![id(0)]);
        // Its successor in the seat is not judged again within DEMOTED_MS.
        let mut r2 = r.clone();
        r2.epoch = 4;
        r2.members.swap(0, 29);
        r2.index = Default::default();
        w.new_roster(&r2, w16);
        for n in 1..=2 * w16 {
            assert_eq!(w.relay_acked(&r2, 100, &id(29), n, true, 60_000 + n), None);
        }
        // 14 of 16 (two first pushes answered): not. Nor answers that do not move it on.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        for n in 1..=3 * w16 {
            let retry = n % 8 != 0;
            assert_eq!(w.relay_acked(&r, 100, &id(0), n, retry, n * 3_000), None);
            assert_eq!(w.relay_acked(&r, 100, &id(0), n, true, n * 3_000), None);
        }
        // A relay that was down acknowledges everything to one retry, then answers.
        let mut w = Withhold::default();
        w.new_roster(&r, 0);
        assert_eq!(w.relay_acked(&r, 100, &id(0), 50, true, 1_000), None);
        for n in 51..=80 {
            assert_eq!(w.relay_acked(&r, 100, &id(0), n, false, n * 3_000), None);
        }
        // A leaf of ours, or a deeper relay, is not judged this way.
        let small = roster_n(3, 4);
        let mut w = Withhold::default();
        for n in 1..=w16 {
            assert_eq!(w.relay_acked(&r, 100, &id(4), n, true, n * 3_000), None);
            let _ = w.relay_acked(&small, 100, &id(0), n, true, n * 3_000);
        }
        assert_eq!(
            w.demotions, 1,
            "a leaf of ours answering retries is demoted too"
        );
    }
}
