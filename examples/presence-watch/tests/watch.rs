//! presence-watch's logic against the real cores of presence, sync, notify and txcoord, each
//! behind the shared driver, with a transport that plays the kernel of a blocking app (the
//! app cannot answer anything while it waits for its call, as with `ProcessTransport`).

use p2p_common::api::presence::{MemberStatus, NodeInfo, Request, Update};
use p2p_common::basic::BasicService;
use p2p_common::client::ClientError;
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, NodeId, Now, SendErrorKind};
use presence::core::Presence;
use presence_watch::{report, Watch, SERVICES};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

/// A request a core sent the app, waiting in the app's queue.
struct ToApp {
    from: Address,
    body: Vec<u8>,
    /// The kernel context, while the sender still waits for the answer.
    context: Option<Vec<u8>>,
}

type MakeCore = fn(Address) -> BasicService;

/// Our four processes on alice.os, and the app's queue.
struct AliceNode {
    now: u64,
    app: Address,
    presence: Driver<Presence>,
    basic: BTreeMap<String, Driver<BasicService>>,
    sync: Driver<sync::core::SyncCore>,
    to_app: Vec<ToApp>,
}

impl AliceNode {
    fn new(app: Address) -> Self {
        let alice = node("alice.os");
        let our = Address::ours(&alice, "presence");
        let mut presence = Driver::new(our.clone(), presence::core::new(our));
        presence.start(Now::at(0), None, Default::default(), 7);
        let mut basic = BTreeMap::new();
        let cores: [(&str, MakeCore); 2] = [
            ("notify", notify::core::new),
            ("txcoord", txcoord::core::new),
        ];
        for (name, new) in cores {
            let addr = Address::ours(&alice, name);
            let mut d = Driver::new(addr.clone(), new(addr));
            d.start(Now::at(0), None, Default::default(), 7);
            basic.insert(name.to_string(), d);
        }
        let addr = Address::ours(&alice, "sync");
        let mut sync = Driver::new(addr.clone(), sync::core::new(addr));
        sync.start(Now::at(0), None, Default::default(), 7);
        AliceNode {
            now: 1_000,
            app,
            presence,
            basic,
            sync,
            to_app: Vec::new(),
        }
    }

    fn tick(&mut self, ms: u64) -> Now {
        self.now += ms;
        Now::at(self.now)
    }

    /// Queue presence's requests to the app; return presence's response, if it gave one.
    fn take(&mut self, calls: Vec<KernelCall>) -> Option<Vec<u8>> {
        let mut response = None;
        for c in calls {
            match c {
                KernelCall::SendRequest {
                    target,
                    body,
                    context,
                    ..
                } if target == self.app => self.to_app.push(ToApp {
                    from: self.presence.our().clone(),
                    body,
                    context,
                }),
                KernelCall::SendResponse { body, .. } => response = Some(body),
                _ => {}
            }
        }
        response
    }

    /// The kernel's side of one blocking call from the app.
    fn call(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind> {
        if to.node != node("alice.os") {
            return Err(SendErrorKind::Offline);
        }
        let request = KernelEvent::Request {
            source: self.app.clone(),
            expects_response: Some(timeout_s),
            body,
            blob: None,
        };
        let now = self.tick(1);
        let calls = match self.basic.get_mut(&to.process.process) {
            Some(d) => Some(d.step(now, request.clone())),
            None if to.process.process == "sync" => Some(self.sync.step(now, request.clone())),
            None => None,
        };
        if let Some(calls) = calls {
            return calls
                .into_iter()
                .find_map(|c| match c {
                    KernelCall::SendResponse { body, .. } => Some(body),
                    _ => None,
                })
                .ok_or(SendErrorKind::Timeout);
        }
        if to.process.process != "presence" {
            return Err(SendErrorKind::Timeout); // no such process: the kernel says Timeout
        }
        let calls = self.presence.step(now, request);
        let mut answer = self.take(calls);
        // While the app waits, what presence sent it sits in its queue unanswered: each
        // awaited one times out after its own timeout (the welcome, 2 s).
        while answer.is_none() {
            let Some(waiting) = self.to_app.iter_mut().find(|m| m.context.is_some()) else {
                return Err(SendErrorKind::Timeout);
            };
            let context = waiting.context.take();
            let now = self.tick(p2p_common::appreach::HELLO_TIMEOUT_S * 1_000);
            let calls = self.presence.step(
                now,
                KernelEvent::SendError {
                    kind: SendErrorKind::Timeout,
                    target: self.app.clone(),
                    context,
                },
            );
            answer = self.take(calls);
        }
        answer.ok_or(SendErrorKind::Timeout)
    }

    /// Gossip from bob's presence, as if bob had told us.
    /// Facts gossiped to alice. A node reported alive speaks for itself (presence admits a
    /// stranger on direct evidence only); other facts come from bob.
    fn gossip(&mut self, updates: Vec<Update>) {
        for u in updates {
            let from = if u.status == MemberStatus::Alive {
                u.node.clone()
            } else {
                node("bob.os")
            };
            let u = Update {
                origin: from.clone(),
                ..u
            };
            let now = self.tick(10);
            let calls = self.presence.step(
                now,
                KernelEvent::Request {
                    source: Address::ours(&from, "presence"),
                    expects_response: None,
                    body: serde_json::to_vec(&Request::Gossip { updates: vec![u] }).unwrap(),
                    blob: None,
                },
            );
            self.take(calls);
        }
    }
}

type Shared = Rc<RefCell<AliceNode>>;

/// The app's transport: each call goes to the node's kernel.
fn transport(
    alice: &Shared,
) -> impl FnMut(&Address, Vec<u8>, u64) -> Result<Vec<u8>, SendErrorKind> + Clone {
    let alice = alice.clone();
    move |to: &Address, body: Vec<u8>, timeout_s: u64| alice.borrow_mut().call(to, body, timeout_s)
}

/// The app reads its queue: every message goes through `on_request`; answers to requests
/// still awaited go back to presence. Returns the printed lines.
fn deliver<T: p2p_common::client::Transport>(alice: &Shared, watch: &mut Watch<T>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let next = {
            let mut a = alice.borrow_mut();
            if a.to_app.is_empty() {
                break;
            }
            a.to_app.remove(0)
        };
        let handled = watch.on_request(&next.from, &next.body);
        lines.extend(handled.line);
        if let Some(context) = next.context {
            let mut a = alice.borrow_mut();
            let now = a.tick(1);
            let source = a.app.clone();
            let calls = a.presence.step(
                now,
                KernelEvent::Response {
                    source,
                    body: handled.reply,
                    blob: None,
                    context: Some(context),
                },
            );
            a.take(calls);
        }
    }
    lines
}

fn update(n: &str, status: MemberStatus, incarnation: u64, capability: Option<&str>) -> Update {
    let mut info = NodeInfo::new(node(n));
    info.capabilities = capability.map(|c| vec![c.to_string()]).unwrap_or_default();
    Update {
        node: node(n),
        status,
        incarnation,
        info: Some(info),
        origin: node("bob.os"),
    }
}

fn app() -> Address {
    Address::parse("alice.os@presence-watch:my-app:someone.os").unwrap()
}

#[test]
fn watches_every_service_through_the_typed_clients() {
    let alice: Shared = Rc::new(RefCell::new(AliceNode::new(app())));
    alice.borrow_mut().gossip(vec![
        update("bob.os", MemberStatus::Alive, 3, Some("chat")),
        update("carol.os", MemberStatus::Alive, 1, None),
    ]);
    let mut watch = Watch::new(&node("alice.os"), transport(&alice));

    let survey = watch.survey();
    let names: Vec<&str> = survey.iter().map(|s| s.process).collect();
    assert_eq!(names, SERVICES);
    for s in &survey {
        let info = s.answer.as_ref().unwrap();
        assert_eq!(
            (info.name.as_str(), info.node.as_str()),
            (s.process, "alice.os")
        );
    }

    // The subscription is confirmed although the app, blocked in its call, could not answer
    // the welcome; the welcome is still in its queue afterwards.
    let started = watch.start(Vec::new());
    assert_eq!(started, Ok(3), "alice, bob and carol");
    let lines = report(&survey, &started);
    assert_eq!(lines.len(), 5);
    assert!(lines[1].starts_with("sync: sync 0.1.0"), "{lines:?}");
    assert_eq!(lines[4], "watching presence: 3 members known");
    assert_eq!(
        deliver(&alice, &mut watch),
        ["presence on alice.os will send us events"]
    );
    let me = watch.members()[&node("alice.os")];
    assert_eq!(me, MemberStatus::Alive);

    // Membership changes arrive as events.
    alice
        .borrow_mut()
        .gossip(vec![update("dave.os", MemberStatus::Alive, 1, None)]);
    assert_eq!(
        deliver(&alice, &mut watch),
        ["dave.os joined (incarnation 1)"]
    );
    alice
        .borrow_mut()
        .gossip(vec![update("carol.os", MemberStatus::Suspect, 1, None)]);
    assert_eq!(
        deliver(&alice, &mut watch),
        ["carol.os is suspected (incarnation 1)"]
    );
    assert_eq!(watch.members()[&node("carol.os")], MemberStatus::Suspect);
    assert_eq!(watch.members()[&node("dave.os")], MemberStatus::Alive);

    // Commands from processes on our node.
    let local = Address::parse("alice.os@terminal:terminal:sys").unwrap();
    let members = watch.on_request(&local, br#""Members""#);
    let members: Value = serde_json::from_slice(&members.reply).unwrap();
    assert_eq!(members["Ok"]["dave.os"], "Alive");
    assert_eq!(members["Ok"]["carol.os"], "Suspect");
    let joined = watch.on_request(&local, br#"{"Join": ["bob.os"]}"#);
    assert_eq!(joined.line.as_deref(), Some("joining through bob.os"));
    let bad = watch.on_request(&local, br#"{"Join": ["Not A Node"]}"#);
    assert!(bad.line.unwrap().starts_with("Join failed: not a node id"));
    let unknown = watch.on_request(&local, br#""Dance""#);
    assert!(unknown.line.unwrap().contains("unknown command"));

    // A presence event from another node (or any remote request) is refused.
    let forged = Address::ours(&node("bob.os"), "presence");
    let body = br#"{"PresenceEvent":{"kind":"NodeDead","node":"dave.os","incarnation":1,"at":9,"seq":99}}"#;
    let refused = watch.on_request(&forged, body);
    assert!(refused.line.unwrap().starts_with("refused:"));
    assert_eq!(watch.members()[&node("dave.os")], MemberStatus::Alive);
}

#[test]
fn a_gap_in_the_event_sequence_is_reported() {
    let alice: Shared = Rc::new(RefCell::new(AliceNode::new(app())));
    let mut watch = Watch::new(&node("alice.os"), transport(&alice));
    watch.start(Vec::new()).unwrap();
    deliver(&alice, &mut watch);
    let presence = Address::ours(&node("alice.os"), "presence");
    let event = |seq: u64| {
        format!(
            r#"{{"PresenceEvent":{{"kind":"NodeLeft","node":"erin.os","incarnation":2,"at":9,"seq":{seq}}}}}"#
        )
    };
    let first = watch.on_request(&presence, event(1).as_bytes());
    assert_eq!(first.line.as_deref(), Some("erin.os left (incarnation 2)"));
    let later = watch.on_request(&presence, event(4).as_bytes());
    assert_eq!(
        later.line.as_deref(),
        Some("(missed 2 events) erin.os left (incarnation 2)")
    );
    assert_eq!(watch.members()[&node("erin.os")], MemberStatus::Left);
}

#[test]
fn an_app_that_granted_nothing_is_told_what_to_add_for_each_service() {
    // The kernel refuses every answer to the app: each call is a local Timeout.
    let refused = |_: &Address, _: Vec<u8>, _: u64| Err(SendErrorKind::Timeout);
    let mut watch = Watch::new(&node("alice.os"), refused);
    let survey = watch.survey();
    let started = watch.start(Vec::new());
    assert!(matches!(started, Err(ClientError::LocalTimeout { .. })));
    let lines = report(&survey, &started);
    for (line, process) in lines.iter().zip(SERVICES) {
        let grant = format!(r#""grant_capabilities": ["{process}:p2p-patterns:p2p-patterns.os"]"#);
        assert!(line.contains(&grant), "{line}");
    }
    assert!(
        lines[4].contains("presence:p2p-patterns:p2p-patterns.os"),
        "{}",
        lines[4]
    );
}
