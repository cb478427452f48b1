//! notify: a subscriber node that a topic's new policy drops is told so (`Revoke`), and its
//! apps get `Revoked` after what they had not received yet; one that missed it learns at
//! its next `Resume`, which the publisher refuses. Both simulator modes.

use notify::core::{Config, Notify};
use notify::streams::StreamKey;
use p2p_common::api::notify::{AppMessage, PayloadKind, Policy, Request, Response};
use p2p_common::api::{encode, ApiResult, ErrorCode};
use p2p_common::{NodeId, ProcessId};
use p2p_sim::scenarios::notify::{
    answer, call, cluster, payload, received, setup, Got, NAME, TOPIC,
};
use p2p_sim::{app_process, Mode, NetConfig, Sim, SimConfig};

fn sim(seed: u64, mode: Mode) -> Sim {
    let mut cfg = SimConfig::new(seed, 3);
    cfg.net = NetConfig::for_mode(mode);
    cluster(cfg, Config::default())
}

/// Ask until answered (hostile mode loses messages).
fn ask(s: &mut Sim, i: usize, req: &Request) -> ApiResult<Response> {
    for _ in 0..10 {
        let h = call(s, i, req, None);
        s.run_for(3_000).unwrap();
        if let Some(r) = answer(s, h) {
            return r;
        }
    }
    panic!("no answer to {req:?}")
}

fn publish(s: &mut Sim, k: u64) {
    let req = Request::Publish {
        topic: TOPIC.into(),
        kind: PayloadKind::Json,
    };
    let h = call(s, 0, &req, Some(payload(k)));
    s.run_for(3_000).unwrap();
    assert!(matches!(answer(s, h), Some(Ok(Response::Published(_)))));
}

/// The `Revoked` messages node `i`'s app got.
fn revoked(s: &Sim, i: usize) -> Vec<(NodeId, String, String)> {
    let notify = s.addr(i, NAME);
    s.node(i)
        .app_messages
        .iter()
        .filter(|m| m.app == app_process() && m.from == notify)
        .filter_map(
            |m| match serde_json::from_slice::<AppMessage>(&m.body).ok()? {
                AppMessage::Revoked {
                    publisher,
                    topic,
                    reason,
                } => Some((publisher, topic, reason)),
                _ => None,
            },
        )
        .collect()
}

/// What a `Resume` from node `from`'s notify gets from node 0's.
fn resume_from(s: &mut Sim, from: usize) -> ApiResult<Response> {
    let to = s.addr(0, NAME);
    let body = encode(&Request::Resume {
        topic: TOPIC.into(),
        up_to: 0,
    });
    for _ in 0..10 {
        let h = s.request_with_blob(from, ProcessId::ours(NAME), &to, body.clone(), None, 5);
        s.run_for(3_000).unwrap();
        if let Some(r) = answer(s, h) {
            return r;
        }
    }
    panic!("no answer to Resume")
}

fn narrow_to_bob(s: &mut Sim) {
    let bob = s.node_id(1).clone();
    let req = Request::SetTopic {
        topic: TOPIC.into(),
        policy: Policy::AllowList(vec![bob]),
    };
    assert!(matches!(ask(s, 0, &req), Ok(Response::TopicSet(_))));
}

fn charlie_holds_no_stream(s: &Sim) -> bool {
    let k = StreamKey::new(s.node_id(0), TOPIC);
    s.core::<Notify>(2, NAME)
        .unwrap()
        .streams()
        .get(&k)
        .is_none()
}

fn a_dropped_subscriber_is_told(mode: Mode) {
    let mut s = sim(5, mode);
    setup(&mut s, &[1, 2]).unwrap();
    let alice = s.node_id(0).clone();
    for k in 0..2 {
        publish(&mut s, k);
    }
    s.run_for(10_000).unwrap();
    assert_eq!(received(&s, 2, &alice).len(), 2);
    narrow_to_bob(&mut s);
    s.run_for(30_000).unwrap();
    // Charlie's app is told once, after its notifications; bob's is not.
    let told = revoked(&s, 2);
    assert_eq!(told.len(), 1, "{told:?}");
    let (p, t, reason) = &told[0];
    assert_eq!((p, t.as_str()), (&alice, TOPIC));
    assert!(reason.contains("no longer admits charlie.os"), "{reason}");
    assert!(revoked(&s, 1).is_empty());
    let notify = s.addr(2, NAME);
    let last = s
        .node(2)
        .app_messages
        .iter()
        .filter(|m| m.app == app_process() && m.from == notify)
        .last()
        .map(|m| serde_json::from_slice::<AppMessage>(&m.body).unwrap());
    assert!(matches!(last, Some(AppMessage::Revoked { .. })), "{last:?}");
    // The subscription and the stream are gone on charlie.
    let Ok(Response::Subscriptions { subscriptions }) =
        ask(&mut s, 2, &Request::ListSubscriptions {})
    else {
        panic!()
    };
    assert!(subscriptions.is_empty(), "{subscriptions:?}");
    assert!(charlie_holds_no_stream(&s));
    // Bob still gets what follows; charlie does not.
    publish(&mut s, 2);
    s.run_for(10_000).unwrap();
    assert_eq!(received(&s, 1, &alice).len(), 3);
    assert_eq!(received(&s, 2, &alice).len(), 2);
    // A Resume from charlie is refused: the policy no longer admits it.
    let r = resume_from(&mut s, 2);
    let Err(e) = r else { panic!("{r:?}") };
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert!(e.message.contains("no longer admits charlie.os"), "{e}");
    assert!(matches!(resume_from(&mut s, 1), Ok(Response::Accepted {})));
    // Charlie subscribing again is refused as before.
    let sub = Request::Subscribe {
        publisher: alice,
        topic: TOPIC.into(),
    };
    let r = ask(&mut s, 2, &sub);
    assert_eq!(r.map_err(|e| e.code).err(), Some(ErrorCode::Forbidden));
}

#[test]
fn a_subscriber_dropped_by_a_policy_change_is_told_realistic() {
    a_dropped_subscriber_is_told(Mode::Realistic);
}

#[test]
fn a_subscriber_dropped_by_a_policy_change_is_told_hostile() {
    a_dropped_subscriber_is_told(Mode::Hostile);
}

/// The publisher forgets the drops it has still to tell (as one beyond its bound of them,
/// or an older version, would): only the subscriber's own `Resume` can tell it now.
fn forget_revokes(s: &mut Sim) {
    s.crash(0);
    let mut records = s.records(0, NAME).unwrap().clone();
    records.retain(|k, _| !k.starts_with(b"v "));
    s.restore_records(0, NAME, records);
    s.restart(0);
    s.run_for(30_000).unwrap();
}

/// Node `victim` is down while alice drops it, for 15 minutes. Alice keeps trying to tell
/// it; with `forget`, she forgets that, and only the victim's `Resume` after its restart
/// (a tree member sends one to the publisher too) brings the refusal. Either way its app
/// is told, after what it had.
fn missed_revoke(mode: Mode, nodes: usize, tree: bool, forget: bool) {
    let mut cfg = SimConfig::new(6, nodes);
    cfg.net = NetConfig::for_mode(mode);
    let ncfg = if tree {
        p2p_sim::scenarios::notify::tree_config(2)
    } else {
        Config::default()
    };
    let mut s = cluster(cfg, ncfg);
    let subs: Vec<usize> = (1..nodes).collect();
    setup(&mut s, &subs).unwrap();
    s.run_for(10_000).unwrap();
    let alice = s.node_id(0).clone();
    publish(&mut s, 0);
    s.run_for(20_000).unwrap();
    let k = StreamKey::new(&alice, TOPIC);
    let victim = if tree {
        // A member below a relay: its restart Graft goes to that relay, not to alice.
        (1..nodes)
            .find(|&i| {
                let parent = s.core::<Notify>(i, NAME).unwrap().relays().parent(&k);
                parent.is_some_and(|p| p != alice)
            })
            .expect("a member below a relay")
    } else {
        nodes - 1
    };
    s.crash(victim);
    let allowed: Vec<NodeId> = (1..nodes)
        .filter(|&i| i != victim)
        .map(|i| s.node_id(i).clone())
        .collect();
    let req = Request::SetTopic {
        topic: TOPIC.into(),
        policy: Policy::AllowList(allowed),
    };
    assert!(matches!(ask(&mut s, 0, &req), Ok(Response::TopicSet(_))));
    s.run_for(15 * 60_000).unwrap();
    let pending = s
        .core::<Notify>(0, NAME)
        .unwrap()
        .outbox()
        .is_revoked(TOPIC, s.node_id(victim));
    assert!(pending, "alice still means to tell it");
    if forget {
        forget_revokes(&mut s);
    }
    s.restart(victim);
    s.run_for(10 * 60_000).unwrap();
    let told = revoked(&s, victim);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        received(&s, victim, &alice),
        vec![Got::Note {
            seq: 1,
            payload: payload(0)
        }]
    );
    let gone = s
        .core::<Notify>(victim, NAME)
        .unwrap()
        .streams()
        .get(&k)
        .is_none();
    assert!(gone, "the victim's stream is gone");
}

#[test]
fn a_subscriber_that_missed_its_revoke_is_told_when_back_realistic() {
    missed_revoke(Mode::Realistic, 3, false, false);
}

#[test]
fn a_subscriber_that_missed_its_revoke_is_told_when_back_hostile() {
    missed_revoke(Mode::Hostile, 3, false, false);
}

#[test]
fn a_subscriber_whose_revoke_was_forgotten_learns_at_resume_realistic() {
    missed_revoke(Mode::Realistic, 3, false, true);
}

#[test]
fn a_subscriber_whose_revoke_was_forgotten_learns_at_resume_hostile() {
    missed_revoke(Mode::Hostile, 3, false, true);
}

#[test]
fn a_tree_member_that_missed_its_revoke_is_told_when_back() {
    missed_revoke(Mode::Realistic, 8, true, false);
}

#[test]
fn a_tree_member_whose_revoke_was_forgotten_learns_at_its_resume() {
    missed_revoke(Mode::Realistic, 8, true, true);
}

/// A `Graft` onto the publisher from a node it dropped is refused like a `Resume`.
#[test]
fn a_graft_from_a_dropped_node_is_refused() {
    let mut s = sim(5, Mode::Realistic);
    setup(&mut s, &[1, 2]).unwrap();
    narrow_to_bob(&mut s);
    s.run_for(30_000).unwrap();
    let to = s.addr(0, NAME);
    let body = encode(&Request::Graft {
        publisher: s.node_id(0).clone(),
        topic: TOPIC.into(),
        up_to: 0,
    });
    let h = s.request_with_blob(2, ProcessId::ours(NAME), &to, body, None, 5);
    s.run_for(3_000).unwrap();
    let e = answer(&s, h).unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert!(e.message.contains("no longer admits charlie.os"), "{e}");
}

/// A tree child of the root is away while every retained notification expires; back,
/// the root's lost-only batch (which says its `last`) is taken and its app is told.
#[test]
fn a_tree_child_is_told_of_a_gap_that_expired_entirely() {
    let nodes = 4;
    let mut cfg = SimConfig::new(12, nodes);
    cfg.net = NetConfig::for_mode(Mode::Realistic);
    let mut s = cluster(cfg, p2p_sim::scenarios::notify::tree_config(2));
    let subs: Vec<usize> = (1..nodes).collect();
    setup(&mut s, &subs).unwrap();
    s.run_for(10_000).unwrap();
    let req = Request::SetRetention {
        topic: TOPIC.into(),
        max_age_s: Some(60),
        max_count: None,
    };
    assert!(ask(&mut s, 0, &req).is_ok());
    publish(&mut s, 0);
    s.run_for(20_000).unwrap();
    let alice = s.node_id(0).clone();
    let k = StreamKey::new(&alice, TOPIC);
    let child = (1..nodes)
        .find(|&i| s.core::<Notify>(i, NAME).unwrap().relays().parent(&k) == Some(alice.clone()))
        .expect("a child of the root");
    s.crash(child);
    publish(&mut s, 1);
    publish(&mut s, 2);
    s.run_for(10 * 60_000).unwrap();
    let st = s
        .core::<Notify>(0, NAME)
        .unwrap()
        .streams()
        .get(&k)
        .unwrap();
    assert_eq!((st.first, st.last, st.entries.len()), (4, 3, 0));
    s.restart(child);
    s.run_for(10 * 60_000).unwrap();
    let got = received(&s, child, &alice);
    assert_eq!(
        got,
        vec![
            Got::Note {
                seq: 1,
                payload: payload(0)
            },
            Got::Lost { from: 2, to: 3 }
        ]
    );
}

/// A Revoke from a node that is not the stream's publisher changes nothing: the stream is
/// named by the sending node, so bob cannot revoke charlie's subscription to alice.
#[test]
fn only_the_publisher_revokes() {
    let mut s = sim(7, Mode::Realistic);
    setup(&mut s, &[1, 2]).unwrap();
    let to = s.addr(2, NAME);
    let body = encode(&Request::Revoke {
        topic: TOPIC.into(),
        reason: "x".repeat(10_000),
    });
    let h = s.request_with_blob(1, ProcessId::ours(NAME), &to, body, None, 5);
    s.run_for(3_000).unwrap();
    let r = answer(&s, h).unwrap();
    assert_eq!(r.map_err(|e| e.code).err(), Some(ErrorCode::NotFound));
    assert!(!charlie_holds_no_stream(&s));
    assert!(revoked(&s, 2).is_empty());
    // A local app cannot send it either.
    let r = ask(
        &mut s,
        2,
        &Request::Revoke {
            topic: TOPIC.into(),
            reason: "x".into(),
        },
    );
    assert_eq!(r.map_err(|e| e.code).err(), Some(ErrorCode::Forbidden));
    assert!(!charlie_holds_no_stream(&s));
}
