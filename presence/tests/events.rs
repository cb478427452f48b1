//! Events and subscriptions: one event sequence per node that `ListNodes` answers with (so
//! a subscriber that saw a gap resyncs exactly), subscriptions on disk across restarts, and
//! a last `Dropped` message to a subscriber presence ends.

use p2p_common::api::presence::{
    ConfigPatch, ListFilter, MemberStatus, PresenceEvent, Request, Response, SubscriberMessage,
    Update,
};
use p2p_common::api::{decode_response, ErrorCode};
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, NodeId, Now, Records, SendErrorKind};
use presence::core::Presence;
use std::collections::BTreeMap;

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}
fn pres(n: &str) -> Address {
    Address::ours(&node(n), "presence")
}
fn app(name: &str) -> Address {
    Address::parse(&format!("alice.os@{name}:chat:someone.os")).unwrap()
}

/// alice.os's presence behind the driver, with what it wrote to disk and the requests it
/// sent to apps that are not answered yet.
struct Node {
    d: Driver<Presence>,
    now: u64,
    disk: Records,
    /// Requests to apps, in order: (app, message, context).
    to_apps: Vec<(Address, SubscriberMessage, Option<Vec<u8>>)>,
}

impl Node {
    fn start(disk: Records, seed: u64) -> Node {
        let our = pres("alice.os");
        let mut n = Node {
            d: Driver::new(our.clone(), presence::core::new(our)),
            now: 1_000,
            disk,
            to_apps: Vec::new(),
        };
        let calls = n.d.start(Now::at(n.now), None, n.disk.clone(), seed);
        n.take(calls);
        n
    }
    fn take(&mut self, calls: Vec<KernelCall>) -> Option<Vec<u8>> {
        let mut reply = None;
        for c in calls {
            match c {
                KernelCall::Store { ops, .. } => {
                    for (k, v) in ops {
                        match v {
                            Some(v) => self.disk.insert(k, v),
                            None => self.disk.remove(&k),
                        };
                    }
                }
                KernelCall::SendRequest {
                    target,
                    body,
                    context,
                    ..
                } if !matches!(
                    target.process.process.as_str(),
                    // The core's own timers.
                    "presence" | "timer"
                ) =>
                {
                    let m: SubscriberMessage = serde_json::from_slice(&body).unwrap();
                    self.to_apps.push((target, m, context));
                }
                KernelCall::SendResponse { body, .. } => reply = Some(body),
                _ => {}
            }
        }
        reply
    }
    fn step(&mut self, e: KernelEvent) -> Option<Vec<u8>> {
        self.now += 10;
        let calls = self.d.step(Now::at(self.now), e);
        self.take(calls)
    }
    fn ask(&mut self, from: &Address, r: &Request) -> Option<Vec<u8>> {
        self.step(KernelEvent::Request {
            source: from.clone(),
            expects_response: Some(10),
            body: serde_json::to_vec(r).unwrap(),
            blob: None,
        })
    }
    fn local(&mut self, r: &Request) -> Result<Response, p2p_common::ApiError> {
        let body = self.ask(&app("admin"), r).expect("answered");
        decode_response::<Response>(&body)
    }
    /// `a` subscribes and answers the welcome; returns the welcome's seq.
    fn subscribe(&mut self, a: &Address) -> u64 {
        assert!(self.ask(a, &Request::Subscribe {}).is_none(), "held");
        let (to, m, ctx) = self.to_apps.pop().expect("a welcome");
        assert_eq!(&to, a);
        let SubscriberMessage::Welcome { seq, .. } = m else {
            panic!("{m:?}")
        };
        let r = self
            .step(KernelEvent::Response {
                source: a.clone(),
                body: b"{}".to_vec(),
                blob: None,
                context: ctx,
            })
            .expect("Subscribe answered");
        assert_eq!(decode_response::<Response>(&r), Ok(Response::Subscribed {}));
        seq
    }
    /// Answer (or fail) every request to `a`; returns the events among them.
    fn deliver(&mut self, a: &Address, fail: bool) -> Vec<SubscriberMessage> {
        let mut got = Vec::new();
        loop {
            let Some(i) = self.to_apps.iter().position(|(to, _, _)| to == a) else {
                return got;
            };
            let (_, m, ctx) = self.to_apps.remove(i);
            got.push(m);
            if ctx.is_none() {
                continue;
            }
            let e = if fail {
                KernelEvent::SendError {
                    kind: SendErrorKind::Timeout,
                    target: a.clone(),
                    context: ctx,
                }
            } else {
                KernelEvent::Response {
                    source: a.clone(),
                    body: b"{}".to_vec(),
                    blob: None,
                    context: ctx,
                }
            };
            self.step(e);
        }
    }
    /// `peer` probes us, speaking for itself at `incarnation` (a NodeJoined the first time).
    fn hello(&mut self, peer: &str, incarnation: u64) {
        let own = Update {
            node: node(peer),
            status: MemberStatus::Alive,
            incarnation,
            info: None,
            origin: node(peer),
        };
        self.ask(
            &pres(peer),
            &Request::Probe {
                seq: 1,
                updates: vec![own],
                protocol_version: p2p_common::api::PROTOCOL_VERSION,
            },
        );
    }
    fn list(&mut self) -> (BTreeMap<String, MemberStatus>, u64) {
        let Ok(Response::Nodes { nodes, seq, .. }) =
            self.local(&Request::ListNodes(ListFilter::default()))
        else {
            panic!()
        };
        (
            nodes
                .into_iter()
                .map(|v| (v.info.node_id.to_string(), v.status))
                .collect(),
            seq,
        )
    }
}

fn events(ms: &[SubscriberMessage]) -> Vec<PresenceEvent> {
    ms.iter()
        .filter_map(|m| match m {
            SubscriberMessage::PresenceEvent(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A subscriber's view of the members, kept from events and resynced on a gap.
#[derive(Default)]
struct View {
    members: BTreeMap<String, MemberStatus>,
    last: u64,
    resyncs: u32,
}

impl View {
    fn apply(&mut self, e: &PresenceEvent) {
        use p2p_common::api::presence::EventKind::*;
        let st = match e.kind {
            NodeJoined | NodeAlive => MemberStatus::Alive,
            NodeSuspect => MemberStatus::Suspect,
            NodeDead => MemberStatus::Dead,
            NodeLeft => MemberStatus::Left,
        };
        self.members.insert(e.node.to_string(), st);
        self.last = e.seq;
    }
}

#[test]
fn one_event_sequence_per_node_and_list_nodes_says_which_event_it_reflects() {
    let mut n = Node::start(Records::new(), 1);
    let (_, s0) = n.list();
    assert_eq!(s0, 0, "a fresh node has had no event");
    n.hello("bob.os", 1);
    n.hello("carol.os", 1);
    let (_, s1) = n.list();
    assert_eq!(s1, 2, "two joins, counted without any subscriber");
    let a = app("chat");
    assert_eq!(
        n.subscribe(&a),
        2,
        "the welcome says where events start after"
    );
    n.hello("dave.os", 1);
    let got = events(&n.deliver(&a, false));
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(n.list().1, 3, "the list reflects the last event sent");
}

#[test]
fn a_subscriber_that_missed_events_resyncs_exactly_with_list_nodes() {
    let mut n = Node::start(Records::new(), 2);
    n.local(&Request::SetConfig(ConfigPatch {
        subscriber_queue: Some(2),
        ..Default::default()
    }))
    .unwrap();
    let a = app("chat");
    let mut view = View {
        last: n.subscribe(&a),
        ..View::default()
    };
    // Twenty joins while the app is busy: 8 go out, 2 wait, the rest are dropped.
    for i in 0..20 {
        n.hello(&format!("n{i}.os"), 1);
    }
    // The app reads what it gets; the first gap sends it to ListNodes.
    let mut resync_at = None;
    let mut pending = events(&n.deliver(&a, false));
    while !pending.is_empty() {
        for e in std::mem::take(&mut pending) {
            if resync_at.is_some_and(|s| e.seq <= s) {
                continue;
            }
            if e.seq != view.last + 1 && resync_at.is_none() {
                let (members, seq) = n.list();
                view.members = members;
                view.last = seq;
                view.resyncs += 1;
                resync_at = Some(seq);
                // Events up to `seq` are in the list; later ones are applied.
                if e.seq <= seq {
                    continue;
                }
            }
            view.apply(&e);
        }
        n.hello("late.os", 1);
        pending = events(&n.deliver(&a, false));
        if view.members.contains_key("late.os") {
            break;
        }
    }
    assert_eq!(view.resyncs, 1, "the gap was seen");
    let (truth, seq) = n.list();
    let theirs: BTreeMap<String, MemberStatus> = view
        .members
        .into_iter()
        .filter(|(k, _)| k != "alice.os")
        .collect();
    let truth: BTreeMap<String, MemberStatus> =
        truth.into_iter().filter(|(k, _)| k != "alice.os").collect();
    assert_eq!(theirs, truth, "after the resync the view is exact");
    assert_eq!(view.last, seq);
}

#[test]
fn subscriptions_survive_a_restart_and_the_first_event_after_it_shows_the_gap() {
    let mut n = Node::start(Records::new(), 3);
    let a = app("chat");
    n.subscribe(&a);
    assert!(
        n.disk.keys().any(|k| k.starts_with(b"sub/")),
        "the subscription is on disk once confirmed"
    );
    n.hello("bob.os", 1);
    let before = events(&n.deliver(&a, false));
    let last = before.last().unwrap().seq;

    let mut n = Node::start(n.disk, 4);
    n.hello("carol.os", 1);
    let after = events(&n.deliver(&a, false));
    assert_eq!(after.len(), 1, "the restored subscriber gets events");
    assert!(
        after[0].seq > last + 1,
        "a gap after a restart ({last} then {}): the subscriber resyncs",
        after[0].seq
    );
    // Unsubscribing is on disk too: the next restart does not bring it back.
    assert_eq!(
        n.ask(&a, &Request::Unsubscribe {})
            .map(|b| decode_response::<Response>(&b)),
        Some(Ok(Response::Unsubscribed {}))
    );
    let mut n = Node::start(n.disk, 5);
    n.hello("dave.os", 1);
    assert!(n.deliver(&a, false).is_empty());
}

#[test]
fn event_numbers_are_never_reused_even_across_many_restarts() {
    // Numbers are reserved in blocks on disk; a restart starts above the reservation.
    let mut disk = Records::new();
    let mut last = 0;
    for round in 0..5u64 {
        let mut n = Node::start(disk, 10 + round);
        let a = app("chat");
        if round == 0 {
            n.subscribe(&a);
        }
        for i in 0..3 {
            n.hello(&format!("r{round}-{i}.os"), 1);
        }
        let seqs: Vec<u64> = events(&n.deliver(&a, false))
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs.len(), 3);
        assert!(seqs[0] > last, "round {round}: {seqs:?} after {last}");
        last = *seqs.last().unwrap();
        disk = n.disk;
    }
}

#[test]
fn a_dropped_subscriber_is_told_and_stays_dropped_after_a_restart() {
    let mut n = Node::start(Records::new(), 6);
    let a = app("chat");
    n.subscribe(&a);
    for i in 0..3 {
        n.hello(&format!("n{i}.os"), 1);
    }
    let got = n.deliver(&a, true);
    let Some(SubscriberMessage::Dropped { node: by, seq, .. }) = got.last() else {
        panic!("no final message: {got:?}")
    };
    assert_eq!(by.as_str(), "alice.os");
    assert_eq!(*seq, n.list().1, "no event after it is sent");
    assert!(!n.disk.keys().any(|k| k.starts_with(b"sub/")));
    n.hello("late.os", 1);
    assert!(n.deliver(&a, false).is_empty(), "no event after the drop");
    let mut n = Node::start(n.disk, 7);
    n.hello("later.os", 1);
    assert!(n.deliver(&a, false).is_empty(), "not restored");
}

#[test]
fn the_subscriber_table_is_bounded() {
    let mut n = Node::start(Records::new(), 8);
    for i in 0..presence::core::MAX_SUBSCRIBERS {
        n.subscribe(&app(&format!("app{i}")));
    }
    let r = n.ask(&app("one-too-many"), &Request::Subscribe {}).unwrap();
    assert_eq!(
        decode_response::<Response>(&r).unwrap_err().code,
        ErrorCode::Overloaded
    );
}
