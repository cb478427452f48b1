//! The core's liveness (presence's word, our checks, paused retries) driven input by
//! input: a node whose retries pause must not stay paused once it leaves the liveness view
//! (review 13d defect 5), and the checks' pacing (review 13e defect 1).

use crate::core::{
    address, Ctx, Notify, Tick, LIVE_CHECK_BURST, LIVE_CHECK_EVERY_MS, LIVE_MAX_CHECKS,
    LIVE_SILENCE_MS,
};
use p2p_common::api::encode;
use p2p_common::api::notify::{Policy, Request};
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
        };
        h.input(Input::Start {
            persisted: None,
            records: Default::default(),
            seed: 7,
        });
        h
    }

    /// Handle `input` at `now`: timers armed, awaited sends noted; a publish's signature
    /// is answered at once (nothing else is).
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
                        if matches!(x.ctx, Ctx::Sign { .. }) {
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
    let (_, _, ctx) = h.waiting.pop().expect("a Ping");
    assert!(matches!(ctx, Ctx::LiveCheck { .. }));
    h.input(Input::Response {
        from: address(&bob),
        body: encode(&p2p_common::api::notify::Response::Pong(
            p2p_common::basic::pong(&bob),
        )),
        blob: None,
        ctx,
    });
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
    let first = |h: &H, until: Millis| {
        h.sent
            .iter()
            .filter(|(at, _, ctx)| {
                *at >= t0 && *at <= until && matches!(ctx, Some(Ctx::LiveCheck { attempt: 0, .. }))
            })
            .count()
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
