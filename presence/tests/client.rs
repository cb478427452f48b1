//! The typed client in p2p-common, driven against a real presence core through the driver.

use p2p_common::api::presence::{ConfigPatch, ListFilter, MemberStatus, NodeInfo, Request, Update};
use p2p_common::client::{parse_event, ClientError, PresenceClient};
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, ErrorCode, NodeId, SendErrorKind};
use presence::core::Presence;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// What presence answered an app whose kernel refused that answer (AppSide::Refuses).
    static REFUSED_ANSWER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

/// How the app's kernel treats requests presence sends the app (a subscription's welcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppSide {
    /// The app answers at once (it is not blocked).
    Answers,
    /// The app is blocked awaiting its call (a blocking client, as `ProcessTransport` is):
    /// the welcome is delivered but unanswered, so it times out after its full timeout.
    Blocked,
    /// The kernel refuses it at once: the app did not grant presence messaging.
    Refuses,
}

/// A transport that hands each call to the driver as a request from `app` and returns the
/// driver's response; calls to other addresses are Offline.
fn transport(
    driver: Rc<RefCell<Driver<Presence>>>,
    app: Address,
) -> impl FnMut(&Address, Vec<u8>, u64) -> Result<Vec<u8>, SendErrorKind> {
    transport_with(driver, app, AppSide::Answers)
}

fn transport_with(
    driver: Rc<RefCell<Driver<Presence>>>,
    app: Address,
    side: AppSide,
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
                    expects_response: Some(t),
                    ..
                } if *target == app => Some((ctx.clone(), *t)),
                _ => None,
            });
            let Some((ctx, hello_timeout_s)) = to_app else {
                return Err(SendErrorKind::Timeout);
            };
            let failed = |at: u64| {
                (
                    p2p_common::Now::at(at),
                    KernelEvent::SendError {
                        kind: SendErrorKind::Timeout,
                        target: app.clone(),
                        context: Some(ctx.clone()),
                    },
                )
            };
            let (at, event) = match side {
                AppSide::Answers => (
                    p2p_common::Now::at(1_001),
                    KernelEvent::Response {
                        source: app.clone(),
                        body: br#"{"Ok":null}"#.to_vec(),
                        blob: None,
                        context: Some(ctx.clone()),
                    },
                ),
                AppSide::Blocked => failed(1_000 + hello_timeout_s * 1_000),
                AppSide::Refuses => failed(1_000),
            };
            // The app's kernel refuses presence's answer too when it refused the welcome.
            if side == AppSide::Refuses {
                let calls = d.step(at, event);
                assert!(
                    calls
                        .iter()
                        .any(|c| matches!(c, KernelCall::SendResponse { .. })),
                    "presence answers the refused app: {calls:?}"
                );
                let answer = calls.iter().find_map(|c| match c {
                    KernelCall::SendResponse { body, .. } => Some(body.clone()),
                    _ => None,
                });
                REFUSED_ANSWER.with(|r| *r.borrow_mut() = answer);
                return Err(SendErrorKind::Timeout);
            }
            pending = d.step(at, event);
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
    // carol speaks for herself (what a stranger says about third parties introduces nobody).
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

#[test]
fn subscribe_is_answered_once_the_welcome_reached_the_app() {
    // A blocked client (the typed client over ProcessTransport) cannot answer the welcome;
    // it was delivered all the same, so presence confirms after the welcome's timeout.
    let (d, app) = setup();
    let mut c = PresenceClient::local(
        &node("alice.os"),
        transport_with(d.clone(), app.clone(), AppSide::Blocked),
    );
    c.subscribe().unwrap();
    assert!(
        matches!(c.unsubscribe(), Ok(())),
        "the blocked app is subscribed"
    );

    // An app that granted presence nothing: the kernel refuses the welcome at once. Presence
    // answers Forbidden naming the grant; the kernel refuses that answer too, so the app
    // sees a Timeout, and the typed client says what to check.
    let mut c = PresenceClient::local(
        &node("alice.os"),
        transport_with(d.clone(), app.clone(), AppSide::Refuses),
    );
    let err = c.subscribe().unwrap_err();
    let grant = r#""grant_capabilities": ["presence:p2p-patterns:p2p-patterns.os"]"#;
    assert!(
        matches!(&err, ClientError::LocalTimeout { target, .. } if target.process.process == "presence"),
        "{err:?}"
    );
    assert!(err.to_string().contains(grant), "{err}");
    let answer = REFUSED_ANSWER
        .with(|r| r.borrow_mut().take())
        .expect("answered");
    let answer: p2p_common::ApiResult<p2p_common::api::presence::Response> =
        serde_json::from_slice(&answer).unwrap();
    let e = answer.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains(grant), "{}", e.message);
    assert!(e.message.contains(&app.to_string()), "{}", e.message);
    // Not subscribed: nothing to unsubscribe.
    let mut c = PresenceClient::local(&node("alice.os"), transport(d, app));
    assert!(matches!(c.unsubscribe(), Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound));
}

#[test]
fn discovery_times_are_unix_ms_not_the_monotonic_clock() {
    // On a node the monotonic clock starts anywhere; apps read Unix ms (docs/api.md).
    let wall = 1_764_031_200_000;
    let at = |ms: u64| p2p_common::Now {
        mono: 5_000 + ms,
        wall: wall + ms,
    };
    let our = Address::ours(&node("alice.os"), "presence");
    let mut d = Driver::new(our.clone(), presence::core::new(our.clone()));
    d.start(at(0), None, Default::default(), 7);
    // bob speaks for himself in a probe: direct evidence, so a last_seen.
    let updates = vec![Update {
        node: node("bob.os"),
        status: MemberStatus::Alive,
        incarnation: 1,
        info: None,
        origin: node("bob.os"),
    }];
    d.step(
        at(100),
        KernelEvent::Request {
            source: Address::ours(&node("bob.os"), "presence"),
            expects_response: Some(5),
            body: serde_json::to_vec(&Request::Probe {
                seq: 1,
                updates,
                protocol_version: p2p_common::api::PROTOCOL_VERSION,
            })
            .unwrap(),
            blob: None,
        },
    );
    let calls = d.step(
        at(200),
        KernelEvent::Request {
            source: Address::parse("alice.os@my-app:my-app:someone.os").unwrap(),
            expects_response: Some(5),
            body: br#"{"ListNodes": {}}"#.to_vec(),
            blob: None,
        },
    );
    let body = calls
        .iter()
        .find_map(|c| match c {
            KernelCall::SendResponse { body, .. } => Some(body.clone()),
            _ => None,
        })
        .expect("answered");
    let answer: p2p_common::ApiResult<p2p_common::api::presence::Response> =
        serde_json::from_slice(&body).unwrap();
    let Ok(p2p_common::api::presence::Response::Nodes { nodes, .. }) = answer else {
        panic!("{answer:?}")
    };
    let times: Vec<(String, u64, u64)> = nodes
        .iter()
        .map(|v| (v.info.node_id.to_string(), v.info.last_seen, v.status_since))
        .collect();
    assert_eq!(
        times,
        vec![
            ("alice.os".to_string(), wall + 200, 0),
            ("bob.os".to_string(), wall + 100, wall + 100),
        ]
    );
}
