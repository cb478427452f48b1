//! The member table and SWIM's merge rules: which gossiped fact wins, which status change
//! each one causes, and Lifeguard's suspicion timeout.

use p2p_common::api::presence::{Config, EventKind, MemberStatus, NodeInfo, Update};
use p2p_common::{Millis, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Highest incarnation accepted (JSON's exact-integer limit, 2^53).
pub const MAX_INCARNATION: u64 = 1 << 53;
/// Largest step up from a known incarnation a relayed fact may take (strictly less than
/// this). Real steps are 1 (restart, refutation, new info); a huge one can only be forged.
/// A node's own fact, sent by the node itself (direct evidence: Hyperware authenticates the
/// sender), may take any step up to [`MAX_INCARNATION`], so a subject's refutation of any
/// claim a relay could have planted (below ours + this) always reaches each peer.
pub const MAX_INCARNATION_JUMP: u64 = 1 << 16;

/// What [`Members::apply`] needs to know besides the fact.
pub struct Limits<'a> {
    pub me: &'a NodeId,
    /// The node that sent the message carrying the fact (None: our own or a stored fact).
    pub sender: Option<&'a NodeId>,
    /// Most members kept.
    pub capacity: usize,
    /// Most origins counted per suspicion (the first suspecter plus K confirmations).
    pub max_origins: usize,
}

impl<'a> Limits<'a> {
    /// The limits our settings set.
    pub fn of(me: &'a NodeId, sender: Option<&'a NodeId>, cfg: &Config) -> Limits<'a> {
        Limits {
            me,
            sender,
            capacity: cfg.max_members as usize,
            max_origins: cfg.suspicion_confirmations as usize + 1,
        }
    }
}

/// A suspicion in progress: since when, and who independently suspects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    pub start: Millis,
    pub origins: BTreeSet<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub info: NodeInfo,
    pub status: MemberStatus,
    pub incarnation: u64,
    pub status_since: Millis,
    /// How old the status already was when this process started (restored from the wall
    /// time on disk; 0 once the status changes in this life). Retention counts it.
    pub carried_ms: Millis,
    /// Last direct evidence (ack, probe, message from it).
    pub last_seen: Millis,
    /// Whether `info` came from the node (not a placeholder with only its id).
    pub has_info: bool,
    pub suspicion: Option<Suspicion>,
}

impl Member {
    /// The status changed now.
    pub fn set_status_since(&mut self, now: Millis) {
        self.status_since = now;
        self.carried_ms = 0;
    }
    /// How long the member has had its status, lives before this one included.
    pub fn status_age(&self, now: Millis) -> Millis {
        now.saturating_sub(self.status_since)
            .saturating_add(self.carried_ms)
    }
}

/// What applying a fact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing new (older or equal fact).
    Stale,
    /// Accepted; `event` is the status change to report, if any. Accepted facts are gossiped on.
    Changed { event: Option<EventKind> },
    /// A new independent confirmation of an existing suspicion (gossip it on).
    Confirmed,
    /// Unknown node, table full.
    Full,
}

/// Persisted form of a member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedMember {
    pub node: NodeId,
    pub info: NodeInfo,
    pub status: MemberStatus,
    pub incarnation: u64,
    pub has_info: bool,
    /// How long the member has had its status (from the wall time on disk; 0 = unknown).
    #[serde(default)]
    pub age_ms: Millis,
}

#[derive(Debug, Default)]
pub struct Members {
    map: BTreeMap<NodeId, Member>,
    /// Dead or left members evicted to make room since the caller last drained this.
    pub evicted: Vec<NodeId>,
}

impl Members {
    pub fn get(&self, n: &NodeId) -> Option<&Member> {
        self.map.get(n)
    }
    pub fn get_mut(&mut self, n: &NodeId) -> Option<&mut Member> {
        self.map.get_mut(n)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.map.iter()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn remove(&mut self, n: &NodeId) -> Option<Member> {
        self.map.remove(n)
    }
    /// Members that are Alive or Suspect (the ones we probe and gossip to).
    pub fn live(&self) -> impl Iterator<Item = &NodeId> {
        self.map
            .iter()
            .filter(|(_, m)| matches!(m.status, MemberStatus::Alive | MemberStatus::Suspect))
            .map(|(n, _)| n)
    }
    /// Whether `n` is a member we believe alive (Alive or Suspect).
    pub fn is_live(&self, n: &NodeId) -> bool {
        self.map
            .get(n)
            .is_some_and(|m| matches!(m.status, MemberStatus::Alive | MemberStatus::Suspect))
    }
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// The origin to give a fact about `n` with `status` that we relay: a suspicion keeps a
    /// real suspecter (relaying it must not look like an independent confirmation); any
    /// other fact is ours (`me`).
    pub fn origin_of(&self, n: &NodeId, status: MemberStatus, me: &NodeId) -> NodeId {
        self.map
            .get(n)
            .filter(|_| status == MemberStatus::Suspect)
            .and_then(|m| m.suspicion.as_ref())
            .and_then(|s| s.origins.iter().next())
            .unwrap_or(me)
            .clone()
    }

    /// Apply one fact about another node (never ourselves: the caller handles those).
    ///
    /// Facts come from other nodes and are not trusted: an info that is not the node's own
    /// or breaks the limits is dropped; an incarnation beyond [`MAX_INCARNATION`], or more
    /// than [`MAX_INCARNATION_JUMP`] past the known one, is refused (so nobody can push a
    /// node to where it could no longer refute); a suspicion counts only origins that are
    /// ourselves (`me`) or live members, at most `max_origins` of them.
    pub fn apply(&mut self, u: &Update, now: Millis, limits: &Limits) -> Applied {
        if u.incarnation > MAX_INCARNATION {
            return Applied::Stale;
        }
        let info = u
            .info
            .as_ref()
            .filter(|i| i.node_id == u.node && i.validate().is_ok());
        // Only the node itself leaves.
        if u.status == MemberStatus::Left && u.origin != u.node {
            return Applied::Stale;
        }
        // A suspicion or a death counts only from ourselves or a live member.
        if matches!(u.status, MemberStatus::Suspect | MemberStatus::Dead)
            && u.origin != *limits.me
            && !self.is_live(&u.origin)
        {
            return Applied::Stale;
        }
        let Some(m) = self.map.get_mut(&u.node) else {
            // Only an Alive fact introduces a node; a suspicion or death of a stranger is noise.
            if u.status != MemberStatus::Alive {
                return Applied::Stale;
            }
            if self.map.len() >= limits.capacity {
                // Dead and left members make room first (the oldest verdict goes).
                let victim = self
                    .map
                    .iter()
                    .filter(|(_, m)| matches!(m.status, MemberStatus::Dead | MemberStatus::Left))
                    .min_by_key(|(_, m)| std::cmp::Reverse(m.status_age(now)))
                    .map(|(n, _)| n.clone());
                match victim {
                    Some(v) => {
                        self.map.remove(&v);
                        self.evicted.push(v);
                    }
                    None => return Applied::Full,
                }
            }
            self.map.insert(
                u.node.clone(),
                Member {
                    info: info
                        .cloned()
                        .unwrap_or_else(|| NodeInfo::new(u.node.clone())),
                    status: MemberStatus::Alive,
                    incarnation: u.incarnation,
                    status_since: now,
                    carried_ms: 0,
                    last_seen: 0,
                    has_info: info.is_some(),
                    suspicion: None,
                },
            );
            return Applied::Changed {
                event: Some(EventKind::NodeJoined),
            };
        };
        // Relayed jumps of MAX_INCARNATION_JUMP or more are refused; the subject refutes every
        // claim below that, and its refutation (up to MAX_INCARNATION_JUMP above what we
        // know) is accepted when it comes from the node itself.
        if limits.sender != Some(&u.node)
            && u.incarnation >= m.incarnation.saturating_add(MAX_INCARNATION_JUMP)
        {
            return Applied::Stale;
        }
        // Only a node raises its own incarnation, and it does so with Alive: a suspicion or a
        // verdict about an incarnation we have not seen is a forgery (or from a life we will
        // hear about first), and is dropped.
        if u.status != MemberStatus::Alive && u.incarnation > m.incarnation {
            return Applied::Stale;
        }
        let newer = u.incarnation > m.incarnation;
        let same = u.incarnation == m.incarnation;
        match u.status {
            MemberStatus::Alive => {
                if !newer {
                    // Same incarnation may still bring the info we lacked.
                    if same && !m.has_info {
                        if let Some(i) = info {
                            m.info = i.clone();
                            m.has_info = true;
                        }
                    }
                    return Applied::Stale;
                }
                let event = match m.status {
                    MemberStatus::Alive => None,
                    MemberStatus::Suspect => Some(EventKind::NodeAlive),
                    MemberStatus::Dead | MemberStatus::Left => Some(EventKind::NodeJoined),
                };
                // A newer incarnation without info leaves ours stale: ask for it again.
                match info {
                    Some(i) => {
                        m.info = i.clone();
                        m.has_info = true;
                    }
                    None => m.has_info = false,
                }
                m.incarnation = u.incarnation;
                if m.status != MemberStatus::Alive {
                    m.set_status_since(now);
                }
                m.status = MemberStatus::Alive;
                m.suspicion = None;
                Applied::Changed { event }
            }
            MemberStatus::Suspect => match m.status {
                MemberStatus::Alive if newer || same => {
                    m.status = MemberStatus::Suspect;
                    m.incarnation = u.incarnation;
                    m.set_status_since(now);
                    m.suspicion = Some(Suspicion {
                        start: now,
                        origins: BTreeSet::from([u.origin.clone()]),
                    });
                    Applied::Changed {
                        event: Some(EventKind::NodeSuspect),
                    }
                }
                MemberStatus::Suspect if newer => {
                    m.incarnation = u.incarnation;
                    m.suspicion = Some(Suspicion {
                        start: now,
                        origins: BTreeSet::from([u.origin.clone()]),
                    });
                    Applied::Changed { event: None }
                }
                MemberStatus::Suspect if same => {
                    let s = m.suspicion.get_or_insert_with(|| Suspicion {
                        start: now,
                        origins: BTreeSet::new(),
                    });
                    if s.origins.len() < limits.max_origins && s.origins.insert(u.origin.clone()) {
                        Applied::Confirmed
                    } else {
                        Applied::Stale
                    }
                }
                _ => Applied::Stale,
            },
            MemberStatus::Dead | MemberStatus::Left => {
                let terminal = matches!(m.status, MemberStatus::Dead | MemberStatus::Left);
                // Left beats Dead at the same incarnation (a graceful leave is not a failure).
                let upgrade_to_left =
                    u.status == MemberStatus::Left && m.status == MemberStatus::Dead && same;
                if !(newer || same) || (terminal && !newer && !upgrade_to_left) {
                    return Applied::Stale;
                }
                if m.status == u.status && same {
                    return Applied::Stale;
                }
                let event = Some(if u.status == MemberStatus::Dead {
                    EventKind::NodeDead
                } else {
                    EventKind::NodeLeft
                });
                m.status = u.status;
                m.incarnation = u.incarnation;
                m.set_status_since(now);
                m.suspicion = None;
                Applied::Changed { event }
            }
        }
    }

    /// Forget dead and left members older than `retention`.
    /// Forget dead and left members past `retention`; the ones forgotten.
    pub fn gc(&mut self, now: Millis, retention: Millis) -> Vec<NodeId> {
        let gone: Vec<NodeId> = self
            .map
            .iter()
            .filter(|(_, m)| {
                matches!(m.status, MemberStatus::Dead | MemberStatus::Left)
                    && m.status_age(now) > retention
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            self.map.remove(n);
        }
        gone
    }

    pub fn save(&self) -> Vec<SavedMember> {
        self.map
            .iter()
            .map(|(n, m)| SavedMember {
                node: n.clone(),
                info: m.info.clone(),
                status: m.status,
                incarnation: m.incarnation,
                has_info: m.has_info,
                age_ms: 0,
            })
            .collect()
    }

    /// Restore after a restart. A member we last saw alive or suspect is taken as alive
    /// (and will be probed); dead and left stay so.
    pub fn restore(&mut self, saved: Vec<SavedMember>, me: &NodeId, now: Millis) {
        for s in saved.into_iter().filter(|s| &s.node != me) {
            let status = match s.status {
                MemberStatus::Suspect => MemberStatus::Alive,
                st => st,
            };
            let has_info = s.has_info && s.info.node_id == s.node;
            self.map.insert(
                s.node.clone(),
                Member {
                    info: if has_info {
                        s.info
                    } else {
                        NodeInfo::new(s.node)
                    },
                    status,
                    incarnation: s.incarnation,
                    status_since: now,
                    // A suspicion is not restored (the member is probed afresh).
                    carried_ms: if s.status == MemberStatus::Suspect {
                        0
                    } else {
                        s.age_ms
                    },
                    last_seen: 0,
                    has_info,
                    suspicion: None,
                },
            );
        }
    }
}

/// Lifeguard's suspicion timeout: starts at `max` and falls logarithmically to `min` as
/// independent confirmations arrive (`confirmations` beyond the first suspecter, of `k`).
pub fn suspicion_timeout(min: Millis, max: Millis, confirmations: usize, k: u32) -> Millis {
    if k == 0 || max <= min {
        return min;
    }
    let c = confirmations.min(k as usize) as f64;
    let frac = (c + 1.0).ln() / (k as f64 + 1.0).ln();
    let t = max as f64 - (max - min) as f64 * frac;
    (t.round() as Millis).max(min)
}

/// Floor of the suspicion timeout for a cluster of `n` members: `mult × log10(n) × unit`
/// (the time gossip needs to spread a refutation), and never below `floor`.
pub fn suspicion_min(n: usize, mult: f64, unit: Millis, floor: Millis) -> Millis {
    let scaled = mult * (n.max(1) as f64).log10() * unit as f64;
    (scaled.round() as Millis).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }
    fn up(node: &str, status: MemberStatus, inc: u64, origin: &str) -> Update {
        Update {
            node: id(node),
            status,
            incarnation: inc,
            info: None,
            origin: id(origin),
        }
    }
    use MemberStatus::*;

    fn lim(cap: usize) -> Limits<'static> {
        static ME: std::sync::OnceLock<NodeId> = std::sync::OnceLock::new();
        Limits {
            me: ME.get_or_init(|| id("me.os")),
            sender: None,
            capacity: cap,
            max_origins: 4,
        }
    }

    #[test]
    fn swim_precedence() {
        let mut m = Members::default();
        assert_eq!(
            m.apply(&up("b.os", Suspect, 1, "a.os"), 0, &lim(10)),
            Applied::Stale,
            "no suspicion of strangers"
        );
        for peer in ["a.os", "c.os"] {
            m.apply(&up(peer, Alive, 1, peer), 0, &lim(10));
        }
        assert!(matches!(
            m.apply(&up("b.os", Alive, 1, "b.os"), 0, &lim(10)),
            Applied::Changed {
                event: Some(EventKind::NodeJoined)
            }
        ));
        assert_eq!(
            m.apply(&up("b.os", Alive, 1, "b.os"), 0, &lim(10)),
            Applied::Stale
        );
        // Suspect at the same incarnation overrides Alive.
        assert!(matches!(
            m.apply(&up("b.os", Suspect, 1, "a.os"), 5, &lim(10)),
            Applied::Changed {
                event: Some(EventKind::NodeSuspect)
            }
        ));
        // Alive at the same incarnation does not clear it; a second origin confirms it.
        assert_eq!(
            m.apply(&up("b.os", Alive, 1, "b.os"), 6, &lim(10)),
            Applied::Stale
        );
        assert_eq!(
            m.apply(&up("b.os", Suspect, 1, "c.os"), 6, &lim(10)),
            Applied::Confirmed
        );
        assert_eq!(
            m.apply(&up("b.os", Suspect, 1, "c.os"), 6, &lim(10)),
            Applied::Stale
        );
        assert_eq!(
            m.get(&id("b.os"))
                .unwrap()
                .suspicion
                .as_ref()
                .unwrap()
                .origins
                .len(),
            2
        );
        // The refutation: Alive at a higher incarnation.
        assert!(matches!(
            m.apply(&up("b.os", Alive, 2, "b.os"), 7, &lim(10)),
            Applied::Changed {
                event: Some(EventKind::NodeAlive)
            }
        ));
        assert!(m.get(&id("b.os")).unwrap().suspicion.is_none());
        // An old suspicion is ignored.
        assert_eq!(
            m.apply(&up("b.os", Suspect, 1, "a.os"), 8, &lim(10)),
            Applied::Stale
        );
        // Dead at the same incarnation wins; Alive at the same one cannot undo it.
        assert!(matches!(
            m.apply(&up("b.os", Dead, 2, "a.os"), 9, &lim(10)),
            Applied::Changed {
                event: Some(EventKind::NodeDead)
            }
        ));
        assert_eq!(
            m.apply(&up("b.os", Alive, 2, "b.os"), 10, &lim(10)),
            Applied::Stale
        );
        assert_eq!(
            m.apply(&up("b.os", Suspect, 2, "a.os"), 10, &lim(10)),
            Applied::Stale
        );
        // Left upgrades Dead at the same incarnation; a rejoin needs a higher one.
        assert!(matches!(
            m.apply(&up("b.os", Left, 2, "b.os"), 11, &lim(10)),
            Applied::Changed {
                event: Some(EventKind::NodeLeft)
            }
        ));
        assert_eq!(
            m.apply(&up("b.os", Dead, 2, "a.os"), 12, &lim(10)),
            Applied::Stale
        );
        assert!(matches!(
            m.apply(&up("b.os", Alive, 3, "b.os"), 13, &lim(10)),
            Applied::Changed {
                event: Some(EventKind::NodeJoined)
            }
        ));
    }

    #[test]
    fn untrusted_facts_are_bounded() {
        let mut m = Members::default();
        for peer in ["a.os", "b.os", "c.os", "d.os", "e.os", "f.os"] {
            m.apply(&up(peer, Alive, 1, peer), 0, &lim(100));
        }
        // A suspicion from a node we do not know counts for nothing.
        assert_eq!(
            m.apply(&up("b.os", Suspect, 1, "ghost.os"), 1, &lim(100)),
            Applied::Stale
        );
        // Origins are capped (first suspecter + K confirmations).
        assert!(matches!(
            m.apply(&up("b.os", Suspect, 1, "a.os"), 1, &lim(100)),
            Applied::Changed { .. }
        ));
        for o in ["c.os", "d.os", "e.os"] {
            assert_eq!(
                m.apply(&up("b.os", Suspect, 1, o), 1, &lim(100)),
                Applied::Confirmed
            );
        }
        assert_eq!(
            m.apply(&up("b.os", Suspect, 1, "f.os"), 1, &lim(100)),
            Applied::Stale
        );
        assert_eq!(
            m.get(&id("b.os"))
                .unwrap()
                .suspicion
                .as_ref()
                .unwrap()
                .origins
                .len(),
            4
        );
        // Incarnations: nothing past 2^53, no giant leaps.
        assert_eq!(
            m.apply(&up("c.os", Alive, u64::MAX, "c.os"), 2, &lim(100)),
            Applied::Stale
        );
        assert_eq!(
            m.apply(
                &up("c.os", Dead, MAX_INCARNATION_JUMP + 2, "a.os"),
                2,
                &lim(100)
            ),
            Applied::Stale
        );
        assert!(matches!(
            m.apply(&up("c.os", Alive, 2, "c.os"), 2, &lim(100)),
            Applied::Changed { .. }
        ));
        // Info that is not the node's own, or breaks the limits, is dropped (the fact stays).
        let mut forged = up("g.os", Alive, 1, "g.os");
        forged.info = Some(NodeInfo::new(id("a.os")));
        assert!(matches!(
            m.apply(&forged, 3, &lim(100)),
            Applied::Changed { .. }
        ));
        let g = m.get(&id("g.os")).unwrap();
        assert_eq!((g.info.node_id.as_str(), g.has_info), ("g.os", false));
        let mut huge = up("h.os", Alive, 1, "h.os");
        let mut info = NodeInfo::new(id("h.os"));
        info.app_version = "x".repeat(10_000);
        huge.info = Some(info);
        m.apply(&huge, 3, &lim(100));
        assert!(m.get(&id("h.os")).unwrap().info.app_version.is_empty());
    }

    #[test]
    fn a_newer_incarnation_without_info_marks_ours_stale_and_restore_keeps_that() {
        let mut m = Members::default();
        let mut with = up("a.os", Alive, 1, "a.os");
        let mut info = NodeInfo::new(id("a.os"));
        info.app_version = "v1".into();
        with.info = Some(info);
        m.apply(&with, 0, &lim(10));
        assert!(m.get(&id("a.os")).unwrap().has_info);
        m.apply(&up("a.os", Alive, 2, "a.os"), 1, &lim(10));
        assert!(
            !m.get(&id("a.os")).unwrap().has_info,
            "v1 is older than incarnation 2"
        );
        let saved = m.save();
        let mut r = Members::default();
        r.restore(saved, &id("me.os"), 5);
        assert!(!r.get(&id("a.os")).unwrap().has_info);
        // A saved entry for ourselves is never restored as a member.
        let mut bad = r.save();
        bad[0].node = id("me.os");
        let mut r2 = Members::default();
        r2.restore(bad, &id("me.os"), 5);
        assert!(r2.is_empty());
    }

    #[test]
    fn capacity_and_gc() {
        let mut m = Members::default();
        assert!(matches!(
            m.apply(&up("a.os", Alive, 1, "a.os"), 0, &lim(1)),
            Applied::Changed { .. }
        ));
        assert_eq!(
            m.apply(&up("b.os", Alive, 1, "b.os"), 0, &lim(1)),
            Applied::Full
        );
        m.apply(&up("a.os", Dead, 1, "me.os"), 100, &lim(1));
        assert_eq!(m.gc(150, 100).len(), 0);
        assert_eq!(m.gc(201, 100).len(), 1);
        assert!(m.is_empty());
    }

    #[test]
    fn suspicion_timeout_falls_with_confirmations() {
        assert_eq!(suspicion_timeout(1_000, 6_000, 0, 3), 6_000);
        assert_eq!(suspicion_timeout(1_000, 6_000, 3, 3), 1_000);
        assert_eq!(suspicion_timeout(1_000, 6_000, 9, 3), 1_000);
        let t1 = suspicion_timeout(1_000, 6_000, 1, 3);
        let t2 = suspicion_timeout(1_000, 6_000, 2, 3);
        assert!(6_000 > t1 && t1 > t2 && t2 > 1_000, "{t1} {t2}");
        assert_eq!(suspicion_min(100, 3.0, 500, 2_000), 3_000);
        assert_eq!(suspicion_min(1_000, 3.0, 500, 2_000), 4_500);
        assert_eq!(
            suspicion_min(3, 3.0, 500, 2_000),
            2_000,
            "never below the floor"
        );
    }

    #[test]
    fn verdicts_need_a_known_incarnation_and_a_credible_origin() {
        let mut m = Members::default();
        m.apply(&up("a.os", Alive, 1, "a.os"), 0, &lim(8));
        m.apply(&up("b.os", Alive, 4, "b.os"), 0, &lim(8));
        // Above the incarnation we know: only the node itself raises it, with Alive.
        assert_eq!(
            m.apply(&up("b.os", Dead, 5, "a.os"), 1, &lim(8)),
            Applied::Stale
        );
        assert_eq!(
            m.apply(&up("b.os", Suspect, 5, "a.os"), 1, &lim(8)),
            Applied::Stale
        );
        // Dead from a non-member, Left from anyone but the node: refused.
        assert_eq!(
            m.apply(&up("b.os", Dead, 4, "x.os"), 1, &lim(8)),
            Applied::Stale
        );
        assert_eq!(
            m.apply(&up("b.os", Left, 4, "a.os"), 1, &lim(8)),
            Applied::Stale
        );
        assert!(matches!(
            m.apply(&up("b.os", Left, 4, "b.os"), 1, &lim(8)),
            Applied::Changed { .. }
        ));
        // A relayed jump of MAX_INCARNATION_JUMP is refused, one below it accepted.
        assert_eq!(
            m.apply(
                &up("a.os", Alive, 1 + MAX_INCARNATION_JUMP, "a.os"),
                2,
                &lim(8)
            ),
            Applied::Stale
        );
        assert!(matches!(
            m.apply(&up("a.os", Alive, MAX_INCARNATION_JUMP, "a.os"), 2, &lim(8)),
            Applied::Changed { .. }
        ));
    }

    #[test]
    fn a_node_itself_may_take_any_step_a_relay_only_a_small_one() {
        let mut m = Members::default();
        let a = id("a.os");
        let relay = id("r.os");
        let from = |s: &'static NodeId| Limits {
            sender: Some(s),
            ..lim(8)
        };
        let a: &'static NodeId = Box::leak(Box::new(a));
        let relay: &'static NodeId = Box::leak(Box::new(relay));
        assert!(matches!(
            m.apply(&up("a.os", Alive, 1, "a.os"), 1, &from(a)),
            Applied::Changed { .. }
        ));
        // From a relay: MAX_INCARNATION_JUMP above is refused, exactly the boundary.
        assert_eq!(
            m.apply(
                &up("a.os", Alive, 1 + MAX_INCARNATION_JUMP, "a.os"),
                2,
                &from(relay)
            ),
            Applied::Stale
        );
        // From a.os itself (its refutation of a claim at 1 + MAX_INCARNATION_JUMP - 1): taken.
        assert!(matches!(
            m.apply(
                &up("a.os", Alive, 1 + MAX_INCARNATION_JUMP, "a.os"),
                2,
                &from(a)
            ),
            Applied::Changed { .. }
        ));
        assert_eq!(m.get(a).unwrap().incarnation, 1 + MAX_INCARNATION_JUMP);
        // Any step up to MAX_INCARNATION from the node itself, nothing past it.
        assert!(matches!(
            m.apply(&up("a.os", Alive, MAX_INCARNATION, "a.os"), 3, &from(a)),
            Applied::Changed { .. }
        ));
        assert_eq!(
            m.apply(&up("a.os", Alive, MAX_INCARNATION + 1, "a.os"), 4, &from(a)),
            Applied::Stale
        );
    }
}
