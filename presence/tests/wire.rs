//! Raw JSON bodies against one presence core, through the real driver: local requests are
//! strict and range-checked, messages from peers tolerate fields they do not know.

use p2p_common::api::presence::{MemberStatus, Response};
use p2p_common::api::{decode_response, ApiError, ErrorCode};
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, NodeId};
use presence::core::Presence;

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

fn app() -> Address {
    Address::parse("alice.os@my-app:my-app:someone.os").unwrap()
}

fn peer(n: &str) -> Address {
    Address::ours(&node(n), "presence")
}

struct Core {
    d: Driver<Presence>,
    now: u64,
}

impl Core {
    fn new() -> Self {
        let our = peer("alice.os");
        let mut d = Driver::new(our.clone(), presence::core::new(our));
        d.start(p2p_common::Now::at(0), None, Default::default(), 3);
        Core { d, now: 0 }
    }
    /// The reply to `body` from `from`.
    fn ask(&mut self, from: &Address, body: &str) -> Result<Response, ApiError> {
        self.now += 10;
        let calls = self.d.step(
            p2p_common::Now::at(self.now),
            KernelEvent::Request {
                source: from.clone(),
                expects_response: Some(5),
                body: body.as_bytes().to_vec(),
                blob: None,
            },
        );
        let reply = calls
            .into_iter()
            .find_map(|c| match c {
                KernelCall::SendResponse { body, .. } => Some(body),
                _ => None,
            })
            .expect("a reply");
        decode_response(&reply)
    }
    fn bad_request(&mut self, body: &str) -> String {
        let e = self.ask(&app(), body).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{body}: {e}");
        e.message
    }
}

#[test]
fn local_requests_are_strict_and_range_checked() {
    let mut c = Core::new();
    assert!(matches!(c.ask(&app(), r#""Ping""#), Ok(Response::Pong(_))));
    assert!(matches!(
        c.ask(&app(), r#"{"Ping": {}}"#),
        Ok(Response::Pong(_))
    ));
    // (Subscribe answers only after its welcome reached the app: tests/client.rs.)
    assert_eq!(
        c.ask(&app(), r#""Unsubscribe""#).unwrap_err().code,
        ErrorCode::NotFound
    );

    let m = c.bad_request(r#"{"Ping": {"x": 1}}"#);
    assert!(m.contains("unknown field `x`"), "{m}");
    let m = c.bad_request(r#"{"ListNodes": {"stauts": "Alive"}}"#);
    assert!(m.contains("unknown field `stauts`"), "{m}");
    for limit in [0, 501] {
        let m = c.bad_request(&format!(r#"{{"ListNodes": {{"limit": {limit}}}}}"#));
        assert!(m.contains("limit must be 1..=500"), "{m}");
    }
    assert!(matches!(
        c.ask(&app(), r#"{"ListNodes": {"limit": 500}}"#),
        Ok(Response::Nodes { .. })
    ));
    let m = c.bad_request(r#"{"SetConfig": {"probe_intervall_ms": 8000}}"#);
    assert!(m.contains("unknown field `probe_intervall_ms`"), "{m}");
    let m = c.bad_request(r#"{"SetConfig": {"gossip_fanout": 0}}"#);
    assert!(m.contains("gossip_fanout must be 1..=32 (got 0)"), "{m}");
    let m = c.bad_request(r#"{"SetConfig": "{\"gossip_fanout\": 4}"}"#);
    assert!(m.contains("invalid type: string"), "{m}");
    let Ok(Response::Config(cfg)) = c.ask(&app(), r#"{"SetConfig": {"gossip_fanout": 4}}"#) else {
        panic!("SetConfig refused")
    };
    assert_eq!(cfg.gossip_fanout, 4);

    let deep = format!(r#"{{"Join": {}{}}}"#, "[".repeat(300), "]".repeat(300));
    let m = c.bad_request(&deep);
    assert!(m.contains("nested too deeply"), "{m}");
}

#[test]
fn peer_messages_with_fields_we_do_not_know_still_work() {
    let mut c = Core::new();
    // A newer peer's gossip: extra fields on the message, the update, its NodeInfo and a
    // metadata entry.
    let gossip = r#"{"Gossip": {"hops": 2, "updates": [{"node": "bob.os", "status": "Alive",
        "incarnation": 1, "origin": "bob.os", "signature": "..", "info": {"node_id": "bob.os",
        "app_version": "9.0", "capabilities": ["chat"], "metadata": [{"key": "k", "value": "v",
        "ttl": 5}], "last_seen": 0, "zone": 3}}]}}"#;
    assert_eq!(c.ask(&peer("bob.os"), gossip), Ok(Response::Accepted {}));
    assert_eq!(
        c.d.core().status_of(&node("bob.os")),
        Some(MemberStatus::Alive)
    );
    let probe = r#"{"Probe": {"seq": 3, "updates": [], "deadline": 1}}"#;
    assert!(matches!(
        c.ask(&peer("bob.os"), probe),
        Ok(Response::Ack { seq: 3, .. })
    ));
    // The same strictness as local requests would have refused these.
    assert_eq!(
        c.ask(&peer("bob.os"), r#"{"Deregister": {"reason": "upgrade"}}"#),
        Ok(Response::Deregistered {})
    );
}
