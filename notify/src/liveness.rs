//! What our own node's presence process says of the nodes notify cares about (the
//! subscriber nodes of our topics): alive, suspect, dead or left, and since when. notify
//! subscribes to presence's events at start (a local request; presence's word is local, so
//! no remote node takes part in it), and again after presence dropped the subscription;
//! while presence is not there (not installed, not started yet) it tries again with
//! backoff. Events about nodes we do not track are answered and ignored, so the view holds
//! at most the nodes [`Liveness::track`] admits (our topics' subscribers), bounded by
//! [`MAX_TRACKED`].
//!
//! Presence takes a death from any member's gossip, so the core takes a `NodeDead` or
//! `NodeLeft` only once its own `Ping` to the node failed; then the node goes to the
//! leaves of our large topics' rosters and the outbox's retries to it pause (see
//! docs/notify.md).
//!
//! It owns its timer ([`Timer`]) and context ([`Ctx`]); the core wraps them.

use p2p_common::api::encode;
use p2p_common::api::presence::{self, EventKind, PresenceEvent, SubscriberMessage};
use p2p_common::resilience::{Backoff, Jitter};
use p2p_common::service::log;
use p2p_common::{Address, Effect, Expect, Level, Millis, NodeId, ProcessId};
use rand::RngCore;
use std::collections::BTreeMap;

/// Retries of the subscription while presence does not answer: 1 s, doubling, at most
/// 60 s apart, with jitter (a local request: cheap, and presence may start late).
pub const SUBSCRIBE_BACKOFF: Backoff = Backoff {
    base_ms: 1_000,
    max_ms: 60_000,
    factor: 2,
    jitter: Jitter::Equal,
};
/// Timeout of the `Subscribe` to presence (seconds).
const SUBSCRIBE_TIMEOUT_S: u64 = 5;
/// Most nodes whose liveness we keep (every subscriber node of every topic is at most
/// 256 × 1,000, but a node is usually in several topics; past this, the longest unchanged
/// entry goes).
pub const MAX_TRACKED: usize = 4_096;
/// A node's strikes (checks of ours it answered while presence said it was dead) fade,
/// one per this time since the last.
pub const STRIKE_DECAY_MS: Millis = 600_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Subscribe to presence again.
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    /// Our `Subscribe` to presence.
    Subscribe,
}

type Eff = Effect<Ctx, Timer>;

/// What presence says of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl Status {
    /// Whether an outbox should stop retrying to it.
    pub fn is_down(s: Option<Status>) -> bool {
        matches!(s, Some(Status::Dead) | Some(Status::Left))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub status: Status,
    pub incarnation: u64,
    /// When we learnt it (our monotonic clock).
    pub since: Millis,
}

/// How the subscription to presence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// Not asked yet (before start).
    Idle,
    /// A `Subscribe` is out.
    Asking,
    /// Waiting to ask again.
    Waiting,
    /// Presence answered `Subscribed`.
    Subscribed,
}

/// A change of a tracked node's status, for the core to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub node: NodeId,
    pub before: Option<Status>,
    pub after: Status,
}

#[derive(Debug)]
pub struct Liveness {
    me: NodeId,
    pub views: BTreeMap<NodeId, View>,
    pub sub: Sub,
    attempt: u32,
    /// The last event number presence sent us (a jump: events were missed).
    last_seq: Option<u64>,
    /// Events taken, ignored (untracked nodes), and gaps in presence's numbering seen.
    pub events: u64,
    pub ignored: u64,
    pub gaps: u64,
    /// A node the last event pushed out of the view (past [`MAX_TRACKED`]): the core
    /// forgets what it derived from it.
    pub evicted: Option<NodeId>,
    /// What our own traffic says of the nodes in the view (never more nodes than
    /// `views`): how often its notify answered a check of a death presence reported.
    marks: BTreeMap<NodeId, Mark>,
}

/// Our own evidence about a node in the view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    /// Checks of ours it answered while presence said it was dead or gone, and when the
    /// last one was: each raises the silence the next check needs (decaying).
    pub strikes: u32,
    pub struck_at: Millis,
}

impl Liveness {
    pub fn new(me: NodeId) -> Self {
        Liveness {
            me,
            views: BTreeMap::new(),
            sub: Sub::Idle,
            attempt: 0,
            last_seq: None,
            events: 0,
            ignored: 0,
            gaps: 0,
            evicted: None,
            marks: BTreeMap::new(),
        }
    }

    /// The presence process of our node.
    pub fn presence(&self) -> Address {
        Address::new(self.me.clone(), ProcessId::ours(presence::PROCESS))
    }

    /// Whether `from` is our node's presence (the only sender of its events we take).
    pub fn is_presence(&self, from: &Address) -> bool {
        from.node == self.me && from.process == ProcessId::ours(presence::PROCESS)
    }

    pub fn status(&self, node: &NodeId) -> Option<Status> {
        self.views.get(node).map(|v| v.status)
    }

    /// Ask presence for its events (at start, after it dropped us, on the retry timer).
    pub fn subscribe(&mut self, out: &mut Vec<Eff>) {
        if matches!(self.sub, Sub::Asking) {
            return;
        }
        self.sub = Sub::Asking;
        out.push(Effect::Send {
            to: self.presence(),
            body: encode(&presence::Request::Subscribe {}),
            blob: None,
            expect: Some(Expect {
                timeout_s: SUBSCRIBE_TIMEOUT_S,
                ctx: Ctx::Subscribe,
            }),
        });
    }

    /// Presence answered our `Subscribe` (`ok`: `Subscribed`), or did not (not running,
    /// refused): on failure, ask again after the backoff.
    pub fn on_answer(&mut self, ok: bool, why: &str, rng: &mut dyn RngCore, out: &mut Vec<Eff>) {
        if ok {
            self.sub = Sub::Subscribed;
            self.attempt = 0;
            out.push(log(
                Level::Info,
                "subscribed to presence events".to_string(),
            ));
            return;
        }
        let delay = SUBSCRIBE_BACKOFF.delay(self.attempt, rng).max(100);
        self.attempt = self.attempt.saturating_add(1);
        self.sub = Sub::Waiting;
        if self.attempt.is_power_of_two() {
            out.push(log(
                Level::Info,
                format!(
                    "presence did not take our subscription ({why}); {} tries, next in {delay} ms \
                     (until then rosters and retries ignore liveness)",
                    self.attempt
                ),
            ));
        }
        out.push(Effect::timer(delay, Timer::Subscribe));
    }

    pub fn on_timer(&mut self, t: Timer, out: &mut Vec<Eff>) {
        let Timer::Subscribe = t;
        if matches!(self.sub, Sub::Waiting | Sub::Idle) {
            self.subscribe(out);
        }
    }

    /// A message from our presence (the core checked the sender). Returns the change of a
    /// tracked node's status, if any; `track` says whether a node is one we care about.
    pub fn on_message(
        &mut self,
        msg: SubscriberMessage,
        track: &dyn Fn(&NodeId) -> bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Option<Change> {
        match msg {
            SubscriberMessage::Welcome { seq, .. } => {
                self.last_seq = Some(seq);
                None
            }
            SubscriberMessage::Dropped { seq, reason, .. } => {
                out.push(log(
                    Level::Warn,
                    format!("presence dropped our event subscription after {seq} ({reason}); subscribing again"),
                ));
                self.last_seq = None;
                self.sub = Sub::Waiting;
                self.subscribe(out);
                None
            }
            SubscriberMessage::PresenceEvent(ev) => self.on_event(ev, track, now, out),
        }
    }

    fn on_event(
        &mut self,
        ev: PresenceEvent,
        track: &dyn Fn(&NodeId) -> bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Option<Change> {
        if let Some(last) = self.last_seq {
            if ev.seq > last.saturating_add(1) {
                self.gaps += 1;
                if self.gaps.is_power_of_two() {
                    out.push(log(
                        Level::Info,
                        format!(
                            "presence events {}..{} missed ({} gaps so far); the nodes' next events correct the view",
                            last + 1,
                            ev.seq - 1,
                            self.gaps
                        ),
                    ));
                }
            }
        }
        self.last_seq = Some(ev.seq);
        if ev.node == self.me || !track(&ev.node) {
            self.ignored += 1;
            return None;
        }
        self.events += 1;
        let after = match ev.kind {
            EventKind::NodeJoined | EventKind::NodeAlive => Status::Alive,
            EventKind::NodeSuspect => Status::Suspect,
            EventKind::NodeDead => Status::Dead,
            EventKind::NodeLeft => Status::Left,
        };
        let before = self.status(&ev.node);
        if before == Some(after) {
            return None;
        }
        self.views.insert(
            ev.node.clone(),
            View {
                status: after,
                incarnation: ev.incarnation,
                since: now,
            },
        );
        if self.views.len() > MAX_TRACKED {
            let oldest = self
                .views
                .iter()
                .filter(|(n, _)| **n != ev.node)
                .min_by_key(|(_, v)| v.since)
                .map(|(n, _)| n.clone());
            if let Some(o) = oldest {
                self.views.remove(&o);
                self.marks.remove(&o);
                self.evicted = Some(o);
            }
        }
        Some(Change {
            node: ev.node,
            before,
            after,
        })
    }

    /// Forget a node we no longer track (it subscribes to none of our topics).
    pub fn forget(&mut self, node: &NodeId) {
        self.views.remove(node);
        self.marks.remove(node);
    }

    /// Our own evidence about `node` (default if none).
    pub fn mark(&self, node: &NodeId) -> Mark {
        self.marks.get(node).copied().unwrap_or_default()
    }

    /// `node` answered a check of ours while presence said it was dead or gone.
    pub fn struck(&mut self, node: &NodeId, now: Millis) {
        if self.views.contains_key(node) {
            let m = self.marks.entry(node.clone()).or_default();
            m.strikes = Self::strikes_at(*m, now).saturating_add(1);
            m.struck_at = now;
        }
    }

    /// `m`'s strikes at `now`: one is forgotten per [`STRIKE_DECAY_MS`] since the last.
    pub fn strikes_at(m: Mark, now: Millis) -> u32 {
        let gone = now.saturating_sub(m.struck_at) / STRIKE_DECAY_MS;
        m.strikes
            .saturating_sub(u32::try_from(gone).unwrap_or(u32::MAX))
    }

    /// How many marks are kept (at most the view's nodes).
    pub fn marks_len(&self) -> usize {
        self.marks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ev(kind: EventKind, node: &str, seq: u64) -> SubscriberMessage {
        SubscriberMessage::PresenceEvent(PresenceEvent {
            kind,
            node: node.parse().unwrap(),
            incarnation: 1,
            at: 0,
            seq,
            info: None,
        })
    }

    #[test]
    fn only_tracked_nodes_are_kept_and_changes_are_reported_once() {
        let mut l = Liveness::new("alice.os".parse().unwrap());
        let bob: NodeId = "bob.os".parse().unwrap();
        let track = |n: &NodeId| n.as_str() == "bob.os";
        let mut out = Vec::new();
        assert_eq!(
            l.on_message(ev(EventKind::NodeDead, "eve.os", 1), &track, 5, &mut out),
            None
        );
        assert!(l.views.is_empty() && l.ignored == 1);
        let c = l.on_message(ev(EventKind::NodeDead, "bob.os", 2), &track, 6, &mut out);
        assert_eq!(
            c,
            Some(Change {
                node: bob.clone(),
                before: None,
                after: Status::Dead
            })
        );
        assert_eq!(
            l.on_message(ev(EventKind::NodeDead, "bob.os", 3), &track, 7, &mut out),
            None,
            "no change"
        );
        assert_eq!(l.views[&bob].since, 6);
        let c = l.on_message(ev(EventKind::NodeAlive, "bob.os", 4), &track, 8, &mut out);
        assert_eq!(c.map(|c| c.after), Some(Status::Alive));
        // Our own node is never tracked.
        assert_eq!(
            l.on_message(
                ev(EventKind::NodeDead, "alice.os", 5),
                &|_| true,
                9,
                &mut out
            ),
            None
        );
        assert_eq!(l.gaps, 0);
        l.on_message(
            ev(EventKind::NodeSuspect, "bob.os", 9),
            &track,
            10,
            &mut out,
        );
        assert_eq!(l.gaps, 1, "events 6..8 missed");
        assert_eq!(l.status(&bob), Some(Status::Suspect));
    }

    #[test]
    fn the_subscription_is_retried_with_backoff_and_after_a_drop() {
        let mut l = Liveness::new("alice.os".parse().unwrap());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        l.subscribe(&mut out);
        l.subscribe(&mut out);
        assert_eq!(out.len(), 1, "one Subscribe in flight");
        assert_eq!(l.sub, Sub::Asking);
        let mut out = Vec::new();
        l.on_answer(false, "Timeout", &mut rng, &mut out);
        assert_eq!(l.sub, Sub::Waiting);
        let delay = out.iter().find_map(|e| match e {
            Effect::SetTimer { after_ms, .. } => Some(*after_ms),
            _ => None,
        });
        assert!(delay.is_some_and(|d| d <= SUBSCRIBE_BACKOFF.base_ms));
        let mut out = Vec::new();
        l.on_timer(Timer::Subscribe, &mut out);
        assert!(matches!(out[0], Effect::Send { .. }));
        l.on_answer(true, "", &mut rng, &mut out);
        assert_eq!(l.sub, Sub::Subscribed);
        // A timer left over does nothing once subscribed.
        let mut out = Vec::new();
        l.on_timer(Timer::Subscribe, &mut out);
        assert!(out.is_empty());
        // Presence dropped us: ask again at once.
        let dropped = SubscriberMessage::Dropped {
            node: "alice.os".parse().unwrap(),
            seq: 3,
            reason: "full".into(),
        };
        l.on_message(dropped, &|_| true, 0, &mut out);
        assert_eq!(l.sub, Sub::Asking);
        assert!(out.iter().any(|e| matches!(e, Effect::Send { .. })));
        // Backoff is capped.
        for _ in 0..20 {
            l.on_answer(false, "x", &mut rng, &mut Vec::new());
            l.sub = Sub::Asking;
        }
        let mut out = Vec::new();
        l.on_answer(false, "x", &mut rng, &mut out);
        assert!(out.iter().all(|e| match e {
            Effect::SetTimer { after_ms, .. } => *after_ms <= SUBSCRIBE_BACKOFF.max_ms,
            _ => true,
        }));
    }
}
