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

/// Charlie is down while alice narrows the topic and stays down past every `Revoke`
/// attempt; back, its `Resume` is refused and its app is told all the same.
fn a_subscriber_that_missed_its_revoke_learns_at_resume(mode: Mode) {
    let mut s = sim(6, mode);
    setup(&mut s, &[1, 2]).unwrap();
    let alice = s.node_id(0).clone();
    publish(&mut s, 0);
    s.run_for(10_000).unwrap();
    s.crash(2);
    narrow_to_bob(&mut s);
    s.run_for(15 * 60_000).unwrap();
    let pending = s
        .core::<Notify>(0, NAME)
        .unwrap()
        .outbox()
        .is_revoked(TOPIC, s.node_id(2));
    assert!(!pending, "alice gave up telling charlie");
    s.restart(2);
    s.run_for(60_000).unwrap();
    let told = revoked(&s, 2);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].2.contains("no longer admits charlie.os"),
        "{told:?}"
    );
    assert_eq!(
        received(&s, 2, &alice),
        vec![Got::Note {
            seq: 1,
            payload: payload(0)
        }]
    );
    assert!(charlie_holds_no_stream(&s));
}

#[test]
fn a_subscriber_that_missed_its_revoke_learns_at_resume_realistic() {
    a_subscriber_that_missed_its_revoke_learns_at_resume(Mode::Realistic);
}

#[test]
fn a_subscriber_that_missed_its_revoke_learns_at_resume_hostile() {
    a_subscriber_that_missed_its_revoke_learns_at_resume(Mode::Hostile);
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
