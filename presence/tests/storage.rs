//! presence on keyed storage: the incarnation is a forced record written before use, members
//! are lazy records without infos, and the whole-state format of the previous version still
//! loads (an upgrade loses nothing).

use p2p_common::api::presence::MemberStatus;
use p2p_common::driver::{Driver, KernelCall};
use p2p_common::{Address, NodeId, Now, Records};
use presence::core::Presence;

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn stores(calls: &[KernelCall]) -> Vec<(bool, Ops)> {
    calls
        .iter()
        .filter_map(|c| match c {
            KernelCall::Store { ops, forced } => Some((*forced, ops.clone())),
            _ => None,
        })
        .collect()
}

/// What version 1 (whole state through `set_state`) wrote: captured from the 0.1.0 format.
const V1_STATE: &str = r#"{
  "incarnation": 7,
  "info": {"node_id": "alice.os", "app_version": "1.2.3", "capabilities": ["chat"], "metadata": {"region": "eu"}},
  "left": false,
  "joined": true,
  "bootstrap": ["bob.os"],
  "config": {"probe_interval_ms": 6000},
  "members": [
    {"node": "bob.os", "info": {"node_id": "bob.os"}, "status": "Alive", "incarnation": 3, "has_info": true},
    {"node": "carol.os", "info": {"node_id": "carol.os"}, "status": "Dead", "incarnation": 2, "has_info": false}
  ]
}"#;

#[test]
fn the_previous_whole_state_format_loads_and_is_rewritten_as_records() {
    let our = Address::ours(&node("alice.os"), "presence");
    let mut d = Driver::new(our.clone(), Presence::new(our, Default::default()));
    let calls = d.start(
        Now {
            mono: 5,
            wall: 1_700_000_000_000,
        },
        Some(V1_STATE.as_bytes().to_vec()),
        Records::new(),
        1,
    );
    let p = d.core();
    assert_eq!(
        p.incarnation(),
        8,
        "a new life above the stored incarnation"
    );
    assert_eq!(p.status_of(&node("bob.os")), Some(MemberStatus::Alive));
    assert_eq!(p.status_of(&node("carol.os")), Some(MemberStatus::Dead));
    // The startup grace survives the upgrade path: failures right after start are ours.
    assert!(p.reachability().own_trouble(6));
    // Rewritten as records: a forced write of the incarnation (before anything is sent)...
    let st = stores(&calls);
    let (forced, ops) = &st[0];
    assert!(forced);
    assert!(ops
        .iter()
        .any(|(k, v)| k == b"inc" && v.as_deref() == Some(&8u64.to_le_bytes()[..])));
    let first_store = calls
        .iter()
        .position(|c| matches!(c, KernelCall::Store { .. }))
        .unwrap();
    let first_send = calls
        .iter()
        .position(|c| matches!(c, KernelCall::SendRequest { target, .. } if target.process.process == "presence"))
        .unwrap();
    assert!(
        first_store < first_send,
        "the incarnation is on disk before a message carries it"
    );
    // ...and the members, lazily, without infos (flushed by the driver's timer).
    assert!(
        d.unwritten_ops() >= 2,
        "member records wait for the lazy flush"
    );
}

#[test]
fn records_come_back_after_a_restart() {
    let our = Address::ours(&node("alice.os"), "presence");
    let mut d = Driver::new(our.clone(), Presence::new(our.clone(), Default::default()));
    let calls = d.start(
        Now::at(0),
        Some(V1_STATE.as_bytes().to_vec()),
        Records::new(),
        1,
    );
    // Keep every op the node wrote (forced at once, lazy ones as the flush would).
    let mut disk = Records::new();
    for (_, ops) in stores(&calls) {
        for (k, v) in ops {
            match v {
                Some(v) => disk.insert(k, v),
                None => disk.remove(&k),
            };
        }
    }
    let member_keys = disk.keys().filter(|k| k.starts_with(b"m/")).count();
    assert_eq!(
        member_keys, 0,
        "members are not written in the forced batch"
    );
    let mut d2 = Driver::new(our.clone(), Presence::new(our, Default::default()));
    d2.start(Now::at(0), None, disk, 2);
    assert_eq!(d2.core().incarnation(), 9);
}

mod grace_and_subscriptions {
    use p2p_common::api::presence::{Request, Response};
    use p2p_common::api::{decode_response, ErrorCode};
    use p2p_common::driver::{Driver, KernelCall, KernelEvent};
    use p2p_common::{Address, NodeId, Now};

    fn ask(
        d: &mut Driver<presence::core::Presence>,
        t: u64,
        from: &Address,
        r: &Request,
    ) -> Vec<KernelCall> {
        d.step(
            Now::at(t),
            KernelEvent::Request {
                source: from.clone(),
                expects_response: Some(10),
                body: serde_json::to_vec(r).unwrap(),
                blob: None,
            },
        )
    }
    fn reply(c: &[KernelCall]) -> Option<Vec<u8>> {
        c.iter().find_map(|c| match c {
            KernelCall::SendResponse { body, .. } => Some(body.clone()),
            _ => None,
        })
    }
    fn alice() -> Driver<presence::core::Presence> {
        let our = Address::ours(&NodeId::parse("alice.os").unwrap(), "presence");
        let mut d = Driver::new(our.clone(), presence::core::new(our));
        d.start(Now::at(0), None, Default::default(), 1);
        d
    }

    #[test]
    fn unsubscribing_while_the_welcome_is_in_flight_sticks() {
        let mut d = alice();
        let app = Address::parse("alice.os@chat:chat:someone.os").unwrap();
        let c = ask(&mut d, 10, &app, &Request::Subscribe {});
        assert!(reply(&c).is_none(), "held until the welcome's outcome");
        let welcome = c
            .iter()
            .find_map(|c| match c {
                KernelCall::SendRequest {
                    target, context, ..
                } if *target == app => context.clone(),
                _ => None,
            })
            .unwrap();
        let r = reply(&ask(&mut d, 11, &app, &Request::Unsubscribe {})).unwrap();
        assert_eq!(
            decode_response::<Response>(&r),
            Ok(Response::Unsubscribed {})
        );
        // The welcome's answer comes after: the held Subscribe is answered with an error and
        // the app stays unsubscribed.
        let c = d.step(
            Now::at(12),
            KernelEvent::Response {
                source: app.clone(),
                body: br#"{"Ok":null}"#.to_vec(),
                blob: None,
                context: Some(welcome),
            },
        );
        let r = reply(&c).unwrap();
        assert_eq!(
            decode_response::<Response>(&r).unwrap_err().code,
            ErrorCode::Unavailable
        );
        let r = reply(&ask(&mut d, 13, &app, &Request::Unsubscribe {})).unwrap();
        assert_eq!(
            decode_response::<Response>(&r).unwrap_err().code,
            ErrorCode::NotFound
        );
    }

    #[test]
    fn a_stranger_cannot_end_the_startup_grace() {
        let mut d = alice();
        assert!(d.core().reachability().own_trouble(1_000));
        let mallory = Address::ours(&NodeId::parse("mallory.os").unwrap(), "presence");
        ask(&mut d, 1_000, &mallory, &Request::Ping {});
        assert!(d.core().reachability().own_trouble(2_000));
    }
}
