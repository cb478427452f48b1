//! The core's liveness (presence's word, our checks, paused retries) driven input by
//! input: a node whose retries pause must not stay paused once it leaves the liveness view
//! (review 13d defect 5), and the checks' pacing (review 13e defect 1).

use crate::core::{
    address, Ctx, Notify, Tick, LIVE_CHECK_BURST, LIVE_CHECK_EVERY_MS, LIVE_MAX_CHECKS,
    LIVE_SILENCE_MS,
};
use crate::liveness::{Status, MAX_TRACKED};
use crate::outbox;
use crate::outbox::PAUSED_RETRY_MS;
use p2p_common::api::encode;
use p2p_common::api::notify::{PayloadKind, Policy, Request, MAX_SUBSCRIBERS};
use p2p_common::api::presence::{EventKind, PresenceEvent, SubscriberMessage};
use p2p_common::sign::SignResponse;
use p2p_common::{
    Address, Effect, Input, Millis, NodeId, Now, ProcessId, RequestId, SendErrorKind, Service,
};
use std::collections::BTreeMap;

const TOPIC: &str = "news";

/// Alice's notify, with a clock, its timers (by value, as the driver keeps them) and what
/// it sent.
struct H {
    n: Notify,
    now: Millis,
    timers: BTreeMap<Tick, Millis>,
    /// Awaited sends not answered yet: when they time out, to whom, the context.
    waiting: Vec<(Millis, Address, Ctx)>,
    /// Everything sent so far: to whom, and the context if an answer is awaited.
    sent: Vec<(Millis, Address, Option<Ctx>)>,
    next_id: u64,
    presence_seq: u64,
    /// Sends to this node are never timed out (the test answers them).
    hold: Option<NodeId>,
}

fn node(s: &str) -> NodeId {
    s.parse().unwrap()
}

fn app() -> Address {
    Address::new(
        node("alice.os"),
        ProcessId::parse("app:app:app.os").unwrap(),
    )
}

impl H {
    fn new() -> H {
        let mut h = H {
            n: Notify::new(address(&node("alice.os")), Default::default()),
            now: 1_000,
            timers: BTreeMap::new(),
            waiting: Vec::new(),
            sent: Vec::new(),
            next_id: 0,
            presence_seq: 0,
            hold: None,
        };
        h.input(Input::Start {
            persisted: None,
            records: Default::default(),
            seed: 7,
        });
        h
    }

    /// Handle `input` at `now`: timers armed, awaited sends noted; a publish's or a
    /// roster's signature is answered at once (nothing else is).
    fn input(&mut self, input: Input<Ctx, Tick>) {
        let out = self.n.handle(Now::at(self.now), input);
        let mut signed = Vec::new();
        for e in out {
            match e {
                Effect::SetTimer { after_ms, timer } => {
                    self.timers.insert(timer, self.now + after_ms);
                }
                Effect::CancelTimer(t) => {
                    self.timers.remove(&t);
                }
                Effect::Send { to, expect, .. } => {
                    let ctx = expect.as_ref().map(|x| x.ctx.clone());
                    self.sent.push((self.now, to.clone(), ctx));
                    if let Some(x) = expect {
                        if matches!(x.ctx, Ctx::Sign { .. } | Ctx::SignRoster { .. }) {
                            signed.push((to, x.ctx));
                        } else {
                            self.waiting
                                .push((self.now + x.timeout_s * 1_000, to, x.ctx));
                        }
                    }
                }
                _ => {}
            }
        }
        for (from, ctx) in signed {
            self.input(Input::Response {
                from,
                body: serde_json::to_vec(&SignResponse::NetKeySign).unwrap(),
                blob: Some(vec![7; 64]),
                ctx,
            });
        }
    }

    fn request(&mut self, from: Address, body: Vec<u8>, blob: Option<Vec<u8>>) {
        self.next_id += 1;
        self.input(Input::Request {
            id: RequestId(self.next_id),
            from,
            body,
            blob,
            timeout_s: Some(5),
        });
    }

    /// Run `ms`: timers fire, and every awaited send times out (nobody answers).
    fn run(&mut self, ms: Millis) {
        let end = self.now + ms;
        loop {
            let timer = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (t.clone(), *at));
            let timeout = self
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| Some(&w.1.node) != self.hold.as_ref())
                .min_by_key(|(_, w)| w.0)
                .map(|(i, w)| (i, w.0));
            let t_at = timer.as_ref().map_or(Millis::MAX, |t| t.1);
            let w_at = timeout.map_or(Millis::MAX, |w| w.1);
            if t_at.min(w_at) > end {
                break;
            }
            if w_at <= t_at {
                let (_, target, ctx) = self.waiting.remove(timeout.unwrap().0);
                self.now = self.now.max(w_at);
                self.input(Input::SendFailed {
                    kind: SendErrorKind::Timeout,
                    target,
                    ctx,
                });
            } else {
                let (t, at) = timer.unwrap();
                self.timers.remove(&t);
                self.now = self.now.max(at);
                self.input(Input::Timer(t));
            }
        }
        self.now = end;
    }

    fn set_topic(&mut self, topic: &str) {
        let body = encode(&Request::SetTopic {
            topic: topic.into(),
            policy: Policy::Open,
        });
        self.request(app(), body, None);
    }

    fn peer_subscribe(&mut self, who: &NodeId, topic: &str) {
        let body = encode(&Request::PeerSubscribe {
            topic: topic.into(),
        });
        self.request(address(who), body, None);
    }

    fn publish(&mut self) {
        let body = encode(&Request::Publish {
            topic: TOPIC.into(),
            kind: PayloadKind::Json,
        });
        self.request(app(), body, Some(b"{}".to_vec()));
    }

    /// Our presence says `kind` of `who`.
    fn presence(&mut self, kind: EventKind, who: &NodeId) {
        self.presence_seq += 1;
        let body = encode(&SubscriberMessage::PresenceEvent(PresenceEvent {
            kind,
            node: who.clone(),
            incarnation: 1,
            at: 0,
            seq: self.presence_seq,
            info: None,
        }));
        let from = Address::new(node("alice.os"), ProcessId::ours("presence"));
        self.request(from, body, None);
    }

    /// `Deliver`s sent to `who` since `since`.
    fn delivers_to(&self, who: &NodeId, since: Millis) -> usize {
        self.sent
            .iter()
            .filter(|(at, to, ctx)| {
                *at >= since
                    && to.node == *who
                    && matches!(ctx, Some(Ctx::Out(outbox::Ctx::Deliver { .. })))
            })
            .count()
    }

    /// When `who`'s retry of our topic is due, from now.
    fn retry_in(&self, who: &NodeId) -> Option<Millis> {
        self.timers
            .get(&Tick::Out(outbox::Timer::Retry {
                topic: TOPIC.into(),
                node: who.clone(),
            }))
            .map(|at| at - self.now)
    }

    /// Bob subscribed, a notification he did not get (its `Deliver` timed out), then
    /// presence says he is dead and our check fails: his retries pause.
    /// `who` answers our latest awaited send, a check's `Ping`, with a `Pong`.
    fn pong(&mut self, who: &NodeId) {
        let (_, _, ctx) = self.waiting.pop().expect("a Ping");
        assert!(matches!(ctx, Ctx::LiveCheck { .. }), "{ctx:?}");
        self.input(Input::Response {
            from: address(who),
            body: encode(&p2p_common::api::notify::Response::Pong(
                p2p_common::basic::pong(who),
            )),
            blob: None,
            ctx,
        });
    }

    /// `who` subscribes again and a notification goes to it: it answers nothing, and its
    /// outbox retries with the backoff (at least 3 `Deliver`s in 90 s), not the pause.
    fn retried_with_backoff(&mut self, who: &NodeId) {
        self.peer_subscribe(who, TOPIC);
        let t = self.now;
        self.publish();
        assert_eq!(self.delivers_to(who, t), 1);
        self.run(90_000);
        assert!(
            self.delivers_to(who, t) >= 3,
            "retried with the backoff, not paused: {}",
            self.delivers_to(who, t)
        );
    }

    fn bob_paused() -> (H, NodeId) {
        let mut h = H::new();
        let bob = node("bob.os");
        h.set_topic(TOPIC);
        h.peer_subscribe(&bob, TOPIC);
        h.publish();
        assert_eq!(h.delivers_to(&bob, 0), 1, "the first Deliver went");
        h.run(6_000);
        h.presence(EventKind::NodeDead, &bob);
        h.run(LIVE_SILENCE_MS + 20_000);
        assert!(h.n.outbox().is_down(&bob), "our check failed: bob is down");
        // The backoff's retry found him down: the next one waits for the pause.
        assert!(
            h.retry_in(&bob).is_some_and(|d| d > 200_000),
            "paused: {:?}",
            h.retry_in(&bob)
        );
        (h, bob)
    }
}

/// Review 13d defect 5 (1): bob's retries pause (presence said he is dead, our check
/// failed); then MAX_TRACKED other subscriber nodes' events push him out of the liveness
/// view. What we derived from presence's word goes with it: his retries no longer pause
/// (his outbox tries at once, and after a failure waits the backoff, not 300 s), and
/// presence's later word that he is alive finds nothing left to undo.
#[test]
fn a_paused_node_evicted_from_the_view_is_no_longer_paused() {
    let (mut h, bob) = H::bob_paused();
    let topics: Vec<String> = (0..MAX_TRACKED.div_ceil(MAX_SUBSCRIBERS))
        .map(|i| format!("t{i}"))
        .collect();
    for t in &topics {
        h.set_topic(t);
    }
    let others: Vec<NodeId> = (0..MAX_TRACKED)
        .map(|i| node(&format!("n{i}.os")))
        .collect();
    for (i, o) in others.iter().enumerate() {
        h.peer_subscribe(o, &topics[i / MAX_SUBSCRIBERS]);
    }
    let before = h.now;
    for o in &others {
        h.presence(EventKind::NodeAlive, o);
        h.now += 1;
    }
    assert_eq!(h.n.liveness().status(&bob), None, "bob left the view");
    assert_eq!(h.n.liveness().views.len(), MAX_TRACKED);
    assert!(!h.n.outbox().is_down(&bob), "bob's retries no longer pause");
    assert_eq!(h.delivers_to(&bob, before), 1, "his outbox tried at once");
    // That one times out: the next ones follow the backoff (at most 30 s apart), not
    // the pause (300 s).
    h.run(90_000);
    assert!(
        h.delivers_to(&bob, before) >= 3,
        "{}",
        h.delivers_to(&bob, before)
    );
    // Presence later says he is alive: nothing paused is left; his outbox goes on.
    h.presence(EventKind::NodeAlive, &bob);
    assert_eq!(h.n.liveness().status(&bob), Some(Status::Alive));
    assert!(!h.n.outbox().is_down(&bob));
    assert!(h.n.liveness().marks_len() <= h.n.liveness().views.len());
}

/// Review 13d defect 5 (2): bob, down to us and his retries paused, unsubscribes. Everything
/// presence's word left is forgotten (no paused state, no view entry, no check), and when
/// he subscribes again his outbox follows the backoff: a failed `Deliver` is retried
/// within 30 s, not after the 300 s pause.
#[test]
fn a_paused_node_that_unsubscribes_is_forgotten_and_subscribes_again_normally() {
    let (mut h, bob) = H::bob_paused();
    let body = encode(&Request::PeerUnsubscribe {
        topic: TOPIC.into(),
    });
    h.request(address(&bob), body, None);
    assert!(!h.n.outbox().subscribes(&bob));
    assert!(!h.n.outbox().is_down(&bob), "no paused state left");
    assert_eq!(h.n.liveness().status(&bob), None, "no view entry left");
    assert_eq!(h.n.live_checks(), 0, "no check left");
    // A leftover retry timer finds no subscription and sends nothing.
    let t = h.now;
    h.run(PAUSED_RETRY_MS);
    assert_eq!(h.delivers_to(&bob, t), 0);
    // He subscribes again: a new notification goes to him, and after its failure the
    // retry follows the backoff.
    h.retried_with_backoff(&bob);
}

/// The same when the subscription is dropped by us: bob, paused, answers a `Deliver` with
/// `NotFound` (his node no longer subscribes): he is dropped and his paused state goes
/// with him, so a later subscription is not paused.
#[test]
fn a_paused_node_dropped_on_not_found_is_forgotten() {
    let (mut h, bob) = H::bob_paused();
    // The pause's one try goes out; bob answers NotFound.
    h.hold = Some(bob.clone());
    h.run(PAUSED_RETRY_MS);
    h.hold = None;
    let (i, ctx) = h
        .waiting
        .iter()
        .enumerate()
        .find(|(_, w)| w.1.node == bob && matches!(w.2, Ctx::Out(_)))
        .map(|(i, w)| (i, w.2.clone()))
        .expect("the pause's try went to bob");
    h.waiting.remove(i);
    let body = p2p_common::api::encode_result::<p2p_common::api::notify::Response>(&Err(
        p2p_common::api::ApiError::new(p2p_common::api::ErrorCode::NotFound, "no"),
    ));
    h.input(Input::Response {
        from: address(&bob),
        body,
        blob: None,
        ctx,
    });
    assert!(!h.n.outbox().subscribes(&bob), "dropped");
    assert!(!h.n.outbox().is_down(&bob), "no paused state left");
    assert_eq!(h.n.liveness().status(&bob), None);
    h.retried_with_backoff(&bob);
}

/// Review 13e defect 1: a death is taken only after [`LIVE_SILENCE_MS`] of silence from
/// the node while we ping it, and each check it answered doubles the next one's. Bob
/// answers the first check's second `Ping`; the second check needs twice the silence.
#[test]
fn a_death_needs_the_silence_and_an_answered_check_doubles_it() {
    let mut h = H::new();
    let bob = node("bob.os");
    h.set_topic(TOPIC);
    h.peer_subscribe(&bob, TOPIC);
    h.presence(EventKind::NodeAlive, &bob);
    h.presence(EventKind::NodeDead, &bob);
    let t0 = h.now;
    // Nobody answers: the death is taken once the silence is over, not after 3 Pings.
    let pings = |h: &H, since| {
        h.sent
            .iter()
            .filter(|(at, to, ctx)| {
                *at >= since && to.node == bob && matches!(ctx, Some(Ctx::LiveCheck { .. }))
            })
            .count()
    };
    h.run(LIVE_SILENCE_MS - 2_000);
    assert!(!h.n.outbox().is_down(&bob), "not before the silence");
    assert!(pings(&h, t0) >= 4, "{} Pings", pings(&h, t0));
    h.run(14_000);
    assert!(h.n.outbox().is_down(&bob), "taken after the silence");
    // Alive again; a new word of death; bob answers a Ping: a strike.
    h.presence(EventKind::NodeAlive, &bob);
    h.presence(EventKind::NodeDead, &bob);
    h.pong(&bob);
    assert_eq!(h.n.hearsay_ignored, 1);
    assert_eq!(h.n.live_checks(), 0);
    // Presence says so again at once: the next check needs twice the silence.
    h.presence(EventKind::NodeAlive, &bob);
    h.presence(EventKind::NodeDead, &bob);
    h.run(2 * LIVE_SILENCE_MS - 2_000);
    assert!(!h.n.outbox().is_down(&bob), "a strike doubles the silence");
    h.run(14_000);
    assert!(h.n.outbox().is_down(&bob));
}

/// Review 13e defect 1: gossip that thousands of our subscribers are dead costs a bounded
/// rate of `Ping`s: at most LIVE_MAX_CHECKS checks at once and LIVE_CHECK_BURST new ones,
/// then one per LIVE_CHECK_EVERY_MS. The others wait in line and are checked in turn.
#[test]
fn checks_are_bounded_node_wide() {
    let mut h = H::new();
    h.set_topic(TOPIC);
    let nodes: Vec<NodeId> = (0..200).map(|i| node(&format!("n{i}.os"))).collect();
    for o in &nodes {
        h.peer_subscribe(o, TOPIC);
    }
    let t0 = h.now;
    for o in &nodes {
        h.presence(EventKind::NodeDead, o);
    }
    // Checks started: nodes pinged (a check lasts at least LIVE_SILENCE_MS, so within
    // these 10 s each node's check starts once).
    let first = |h: &H, until: Millis| {
        h.sent
            .iter()
            .filter_map(|(at, _, ctx)| match ctx {
                Some(Ctx::LiveCheck { node, .. }) if *at >= t0 && *at <= until => Some(node),
                _ => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(first(&h, h.now), LIVE_CHECK_BURST as usize, "the burst");
    assert_eq!(h.n.live_checks(), nodes.len(), "the others wait in line");
    h.run(10_000);
    let started = first(&h, h.now);
    assert!(
        started <= LIVE_CHECK_BURST as usize + (10_000 / LIVE_CHECK_EVERY_MS) as usize,
        "{started} checks in 10 s"
    );
    let mut most = 0;
    for _ in 0..400 {
        h.run(1_000);
        let in_flight = h
            .waiting
            .iter()
            .filter(|w| matches!(w.2, Ctx::LiveCheck { .. }))
            .count();
        most = most.max(in_flight);
    }
    assert!(most <= LIVE_MAX_CHECKS, "{most} Pings in flight");
    // In the end every one of them was checked (and, silent, taken).
    assert!(nodes.iter().all(|o| h.n.outbox().is_down(o)));
}

/// Review 13f-a defect 1: deaths wait in line for a check, and a silent node holds its
/// check for LIVE_SILENCE_MS; 300 silent subscribers (cheap Sybils of an open topic) that
/// presence reports dead would hold the line for minutes. Relays of our trees are checked
/// first: bob, a relay, is taken about LIVE_SILENCE_MS after presence reports him.
#[test]
fn a_relays_death_is_checked_before_a_crowd_of_silent_leaves() {
    let mut h = H::new();
    h.set_topic(TOPIC);
    let bob = node("bob.os");
    h.peer_subscribe(&bob, TOPIC);
    // The earliest subscribers hold the relay seats: bob and 49 others (who stay up).
    for i in 0..49 {
        h.peer_subscribe(&node(&format!("early{i}.os")), TOPIC);
    }
    let crowd: Vec<NodeId> = (0..300).map(|i| node(&format!("s{i}.os"))).collect();
    for o in &crowd {
        h.peer_subscribe(o, TOPIC);
    }
    h.run(5_000);
    let k = crate::streams::StreamKey::new(&node("alice.os"), TOPIC);
    let interior = |h: &H| {
        h.n.relays()
            .get(&k)
            .is_some_and(|t| !t.roster.children(&bob).is_empty())
    };
    assert!(interior(&h), "bob, the first subscriber, relays");
    let tree = &h.n.relays().get(&k).unwrap().roster;
    assert!(
        crowd.iter().all(|c| tree.children(c).is_empty()),
        "the late crowd are leaves"
    );
    for o in &crowd {
        h.presence(EventKind::NodeDead, o);
    }
    h.presence(EventKind::NodeDead, &bob);
    let t0 = h.now;
    let mut taken = None;
    for _ in 0..400 {
        h.run(1_000);
        if h.n.outbox().is_down(&bob) {
            taken = Some(h.now - t0);
            break;
        }
    }
    let pings: Vec<Millis> = h
        .sent
        .iter()
        .filter(|(at, to, c)| {
            *at >= t0 && to.node == bob && matches!(c, Some(Ctx::LiveCheck { .. }))
        })
        .map(|(at, _, _)| at - t0)
        .collect();
    assert!(
        taken.is_some_and(|t| t <= LIVE_SILENCE_MS + 10_000),
        "bob's death taken {taken:?} ms after presence reported it; pings {pings:?}"
    );
    assert!(h.n.live_checks() > 200, "the crowd still waits in line");
}

/// Review 13f-a defect 2: bob answered a check, presence still says he is dead (it sends
/// no event for what it already said), and then he really dies: he is checked again after
/// the longer silence his strike asks for, and his death is taken.
#[test]
fn a_node_that_answered_is_checked_again_while_presence_still_says_dead() {
    let mut h = H::new();
    let bob = node("bob.os");
    h.set_topic(TOPIC);
    h.peer_subscribe(&bob, TOPIC);
    h.presence(EventKind::NodeAlive, &bob);
    h.presence(EventKind::NodeDead, &bob);
    h.pong(&bob);
    assert_eq!(h.n.hearsay_ignored, 1);
    assert_eq!(h.n.live_checks(), 0);
    // From here bob answers nothing; presence's word stands.
    h.run(2 * LIVE_SILENCE_MS + 2 * LIVE_SILENCE_MS + 15_000);
    assert!(h.n.outbox().is_down(&bob), "checked again, and taken");
    assert_eq!(h.n.deaths_taken, 1);
}

/// Review 13f-a defect 3: a check's `Ping` still in flight when the check ended (bob
/// spoke) is not joined by a second one when the next check starts; its failure counts
/// once, for the check that waits on it.
#[test]
fn one_check_ping_in_flight_per_node_across_checks() {
    let mut h = H::new();
    let bob = node("bob.os");
    h.set_topic(TOPIC);
    h.peer_subscribe(&bob, TOPIC);
    h.presence(EventKind::NodeAlive, &bob);
    h.presence(EventKind::NodeDead, &bob);
    // bob speaks while the first Ping is out: that check ends, answered.
    h.peer_subscribe(&bob, TOPIC);
    assert_eq!(h.n.live_checks(), 0);
    h.presence(EventKind::NodeAlive, &bob);
    h.presence(EventKind::NodeDead, &bob);
    let mut most = 0;
    for _ in 0..400 {
        h.run(100);
        let n = h
            .waiting
            .iter()
            .filter(|w| w.1.node == bob && matches!(w.2, Ctx::LiveCheck { .. }))
            .count();
        most = most.max(n);
    }
    assert_eq!(most, 1, "Pings of our checks in flight to bob at once");
    // The check still needs its whole silence from its own start.
    assert!(!h.n.outbox().is_down(&bob));
    h.run(LIVE_SILENCE_MS);
    assert!(h.n.outbox().is_down(&bob));
}
