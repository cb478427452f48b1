//! The typed client in p2p-common, driven against a real presence core through the driver.

use p2p_common::api::presence::{ConfigPatch, ListFilter, MemberStatus, NodeInfo, Request, Update};
use p2p_common::client::{parse_event, ClientError, PresenceClient};
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, ErrorCode, NodeId, SendErrorKind};
use presence::core::Presence;
use std::cell::RefCell;
use std::rc::Rc;

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

/// A transport that hands each call to the driver as a request from `app` and returns the
/// driver's response; calls to other addresses are Offline.
fn transport(
    driver: Rc<RefCell<Driver<Presence>>>,
    app: Address,
) -> impl FnMut(&Address, Vec<u8>, u64) -> Result<Vec<u8>, SendErrorKind> {
    move |to: &Address, body: Vec<u8>, timeout_s: u64| {
        let mut d = driver.borrow_mut();
        if to != d.our() {
            return Err(SendErrorKind::Offline);
        }
        let calls = d.step(
            p2p_common::Now::at(1_000),
            KernelEvent::Request {
                source: app.clone(),
                expects_response: Some(timeout_s),
                body,
                blob: None,
            },
        );
        // Play the app's kernel: requests presence makes to the app (a subscription's
        // welcome) are answered at once, and presence may answer the call then.
        let mut pending = calls;
        loop {
            if let Some(body) = pending.iter().find_map(|c| match c {
                KernelCall::SendResponse { body, .. } => Some(body.clone()),
                _ => None,
            }) {
                return Ok(body);
            }
            let to_app = pending.iter().find_map(|c| match c {
                KernelCall::SendRequest {
                    target,
                    context: Some(ctx),
                    ..
                } if *target == app => Some(ctx.clone()),
                _ => None,
            });
            let Some(ctx) = to_app else {
                return Err(SendErrorKind::Timeout);
            };
            pending = d.step(
                p2p_common::Now::at(1_001),
                KernelEvent::Response {
                    source: app.clone(),
                    body: br#"{"Ok":null}"#.to_vec(),
                    blob: None,
                    context: Some(ctx),
                },
            );
        }
    }
}

fn setup() -> (Rc<RefCell<Driver<Presence>>>, Address) {
    let our = Address::ours(&node("alice.os"), "presence");
    let mut d = Driver::new(our.clone(), presence::core::new(our.clone()));
    d.start(p2p_common::Now::at(0), None, Default::default(), 7);
    // Teach it two members, as gossip from bob would.
    let bob = Address::ours(&node("bob.os"), "presence");
    let mut info = NodeInfo::new(node("bob.os"));
    info.capabilities = vec!["chat".into()];
    let updates = vec![Update {
        node: node("bob.os"),
        status: MemberStatus::Alive,
        incarnation: 3,
        info: Some(info),
        origin: node("bob.os"),
    }];
    d.step(
        p2p_common::Now::at(500),
        KernelEvent::Request {
            source: bob,
            expects_response: Some(5),
            body: serde_json::to_vec(&Request::Gossip { updates }).unwrap(),
            blob: None,
        },
    );
    // carol speaks for herself (hearsay about a stranger would only make her a candidate).
    let carol = Address::ours(&node("carol.os"), "presence");
    let updates = vec![Update {
        node: node("carol.os"),
        status: MemberStatus::Alive,
        incarnation: 1,
        info: None,
        origin: node("carol.os"),
    }];
    d.step(
        p2p_common::Now::at(600),
        KernelEvent::Request {
            source: carol,
            expects_response: Some(5),
            body: serde_json::to_vec(&Request::Gossip { updates }).unwrap(),
            blob: None,
        },
    );
    let app = Address::parse("alice.os@my-app:my-app:someone.os").unwrap();
    (Rc::new(RefCell::new(d)), app)
}

#[test]
fn typed_calls_round_trip() {
    let (d, app) = setup();
    let mut c = PresenceClient::local(&node("alice.os"), transport(d.clone(), app));
    assert_eq!(c.ping().unwrap().node, "alice.os");
    assert_eq!(c.info().unwrap().name, "presence");
    let all = c
        .all_nodes(ListFilter {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    let names: Vec<String> = all.iter().map(|v| v.info.node_id.to_string()).collect();
    assert_eq!(
        names,
        vec!["alice.os", "bob.os", "carol.os"],
        "followed the pages"
    );
    let chat = c
        .all_nodes(ListFilter {
            capability: Some("chat".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(chat.len(), 1);
    assert_eq!(c.get_node(&node("bob.os")).unwrap().incarnation, 3);
    assert_eq!(
        c.get_node(&node("zed.os")).unwrap_err(),
        ClientError::Api(p2p_common::ApiError::not_found("no member zed.os"))
    );
    let info = c
        .set_info("1.2.3", vec!["sync".into()], Default::default())
        .unwrap();
    assert_eq!(info.app_version, "1.2.3");
    assert_eq!(c.config().unwrap().indirect_probes, 3);
    assert_eq!(
        c.set_config(ConfigPatch {
            indirect_probes: Some(5),
            ..Default::default()
        })
        .unwrap()
        .indirect_probes,
        5
    );
    match c.set_config(ConfigPatch {
        indirect_probes: Some(500),
        ..Default::default()
    }) {
        Err(ClientError::Api(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    c.subscribe().unwrap();
    c.unsubscribe().unwrap();
    assert!(matches!(c.unsubscribe(), Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound));
    assert_eq!(c.join(vec![node("bob.os")]).unwrap(), vec![node("bob.os")]);
    assert!(
        c.stats().unwrap().incarnation >= 2,
        "SetInfo bumped the incarnation"
    );
    c.leave().unwrap();
}

#[test]
fn transport_failures_and_events() {
    let (d, app) = setup();
    let mut c = PresenceClient::local(&node("zoe.os"), transport(d, app));
    assert_eq!(
        c.ping().unwrap_err(),
        ClientError::Send(SendErrorKind::Offline)
    );
    let body =
        br#"{"PresenceEvent":{"kind":"NodeDead","node":"bob.os","incarnation":3,"at":9,"seq":1}}"#;
    let e = parse_event(body).unwrap();
    assert_eq!((e.node.as_str(), e.seq), ("bob.os", 1));
    assert!(parse_event(b"{\"Ping\":{}}").is_none());
}
