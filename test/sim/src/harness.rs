//! A node's kernel as apps see it, without a network: real service cores behind the shared
//! [`Driver`], a virtual clock, and apps that call them. The docs' examples run against it
//! (the Rust blocks as doctests through [`HarnessTransport`], the JSON request → response
//! lines in `tests/doc_answers.rs`).
//!
//! What it does and does not do:
//! - a call from any address (an app, or another node's presence process the test plays) to a
//!   hosted process is delivered at once, and its answer returned, also when the process
//!   answers later (a `Subscribe` answered once its welcome's outcome is known);
//! - requests our processes send to addresses it does not host (apps) are recorded in
//!   [`Harness::sent`] and answered as [`AppSide`] says;
//! - messages between hosted processes, and to other nodes, are recorded but not delivered,
//!   and timers never fire: the state changes only through the calls a test makes, so every
//!   answer is reproducible;
//! - both clocks advance by 1 ms per delivered message (and by a whole timeout while a
//!   blocked app lets a request to it time out). The monotonic clock starts far from the wall
//!   clock ([`WALL_START`]), so a core that shows apps monotonic times as Unix times is caught.

use crate::sim::{factory, Factory, Hosted};
use p2p_common::api::presence::{MemberStatus, NodeInfo, Request, Update};
use p2p_common::client::Transport;
use p2p_common::driver::{timer_address, KernelCall, KernelEvent};
use p2p_common::{Address, Millis, NodeId, Now, Records, SendErrorKind};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// Wall clock at start: 2025-11-25 00:40:00 UTC, the time the docs' examples show.
pub const WALL_START: Millis = 1_764_031_200_000;
/// Monotonic clock at start (arbitrary, as on a node).
pub const MONO_START: Millis = 3_600_000;
/// The processes every node hosts.
pub const PROCESSES: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

/// How an app's kernel treats a request one of our processes sends the app (presence's
/// welcome and events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSide {
    /// Answered at once, even while the app waits for an answer of its own.
    Answers,
    /// An app making blocking calls (`send_and_await_response`, as `ProcessTransport`): while
    /// it waits for one, a request to it is delivered but not answered, so it times out after
    /// its full timeout; otherwise it is answered at once. The default.
    Blocking,
    /// Refused by the kernel at once: the app does not grant our processes messaging (an
    /// answer to the app's own call is refused too; see [`HarnessTransport`]).
    Refuses,
}

/// A request a hosted process sent to an address the harness does not deliver to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub from: Address,
    pub to: Address,
    pub body: Vec<u8>,
    pub expects_response: Option<u64>,
}

/// The hosted processes, their storage, the clock and the apps.
pub struct Harness {
    elapsed: Millis,
    procs: BTreeMap<Address, Box<dyn Hosted>>,
    records: BTreeMap<Address, Records>,
    apps: BTreeMap<Address, AppSide>,
    /// Everything hosted processes sent that was not delivered to another hosted process, in
    /// order (requests to apps, and the undelivered messages to other processes).
    pub sent: Vec<Sent>,
    /// Answers nobody was waiting for (a core bug, or a harness one); tests check it is 0.
    pub stray_answers: u64,
    seed: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            elapsed: 0,
            procs: BTreeMap::new(),
            records: BTreeMap::new(),
            apps: BTreeMap::new(),
            sent: Vec::new(),
            stray_answers: 0,
            seed: 7,
        }
    }

    /// A harness hosting our four processes on each of `nodes`.
    pub fn with_nodes(nodes: &[&str]) -> Self {
        let mut h = Self::new();
        for n in nodes {
            h.add_node(n);
        }
        h
    }

    /// Start our four processes on `node` (fresh: nothing persisted).
    pub fn add_node(&mut self, node: &str) {
        let node = NodeId::parse(node).expect("a valid node name");
        for name in PROCESSES {
            let make: Factory = match name {
                "presence" => factory(presence::core::new),
                "sync" => factory(sync::core::new),
                "notify" => factory(notify::core::new),
                _ => factory(txcoord::core::new),
            };
            let addr = Address::ours(&node, name);
            let mut proc = make(&addr);
            self.seed += 1;
            let now = self.now();
            let calls = proc.start(now, None, Records::new(), self.seed);
            self.procs.insert(addr.clone(), proc);
            self.carry_out(&addr, calls, None, &mut None);
        }
    }

    /// The clocks now.
    pub fn now(&self) -> Now {
        Now {
            mono: MONO_START + self.elapsed,
            wall: WALL_START + self.elapsed,
        }
    }

    /// How `app`'s kernel treats requests to it (default [`AppSide::Blocking`]).
    pub fn set_app(&mut self, app: &Address, side: AppSide) {
        self.apps.insert(app.clone(), side);
    }

    pub fn app_side(&self, app: &Address) -> AppSide {
        self.apps.get(app).copied().unwrap_or(AppSide::Blocking)
    }

    /// The bodies of the requests hosted processes sent `to`, in order.
    pub fn sent_to(&self, to: &Address) -> Vec<&[u8]> {
        self.sent
            .iter()
            .filter(|s| &s.to == to)
            .map(|s| s.body.as_slice())
            .collect()
    }

    /// `from` sends `body` to the hosted process `to`, expecting an answer within `timeout_s`
    /// (None: a one-way message). Returns the answer, `Ok(None)` if there is none (one-way, or
    /// the process never answered), or `Offline` if `to` is not hosted.
    ///
    /// The answer is returned whatever `from`'s [`AppSide`]: a kernel that refuses our
    /// processes' messages would refuse it too, which [`HarnessTransport`] plays.
    pub fn call(
        &mut self,
        from: &Address,
        to: &Address,
        body: Vec<u8>,
        timeout_s: Option<u64>,
    ) -> Result<Option<Vec<u8>>, SendErrorKind> {
        if !self.procs.contains_key(to) {
            return Err(SendErrorKind::Offline);
        }
        self.elapsed += 1;
        let calls = self.step(
            to,
            KernelEvent::Request {
                source: from.clone(),
                expects_response: timeout_s,
                body,
                blob: None,
            },
        );
        let mut answer = None;
        self.carry_out(to, calls, timeout_s.map(|_| from), &mut answer);
        Ok(answer)
    }

    fn step(&mut self, proc: &Address, event: KernelEvent) -> Vec<KernelCall> {
        let now = self.now();
        self.procs
            .get_mut(proc)
            .expect("a hosted process")
            .step(now, event)
    }

    /// Carry out what `proc` asked of the kernel, and everything that follows from it, until
    /// nothing is left. `caller` is the app blocked waiting for `proc`'s answer, if any; the
    /// first answer `proc` gives is put in `answer`.
    fn carry_out(
        &mut self,
        proc: &Address,
        calls: Vec<KernelCall>,
        caller: Option<&Address>,
        answer: &mut Option<Vec<u8>>,
    ) {
        let mut queue: VecDeque<(Address, KernelCall)> =
            calls.into_iter().map(|c| (proc.clone(), c)).collect();
        // Requests to a blocked caller: they time out only once everything else is done.
        let mut blocked: Vec<(Address, Address, Vec<u8>, u64)> = Vec::new();
        loop {
            while let Some((from, call)) = queue.pop_front() {
                let events = match call {
                    KernelCall::SendResponse { body, .. } => {
                        if &from == proc && caller.is_some() && answer.is_none() {
                            *answer = Some(body);
                        } else {
                            self.stray_answers += 1;
                        }
                        Vec::new()
                    }
                    KernelCall::SendRequest {
                        target,
                        body,
                        expects_response,
                        context,
                        ..
                    } => {
                        if target == timer_address(&from.node) {
                            continue;
                        }
                        self.sent.push(Sent {
                            from: from.clone(),
                            to: target.clone(),
                            body,
                            expects_response,
                        });
                        let to_app = !self.procs.contains_key(&target) && target.node == from.node;
                        match (to_app, expects_response, context) {
                            (true, Some(t), Some(ctx)) => match self.app_side(&target) {
                                AppSide::Blocking if Some(&target) == caller => {
                                    blocked.push((from.clone(), target, ctx, t));
                                    Vec::new()
                                }
                                AppSide::Answers | AppSide::Blocking => {
                                    vec![KernelEvent::Response {
                                        source: target,
                                        body: br#"{"Ok":null}"#.to_vec(),
                                        blob: None,
                                        context: Some(ctx),
                                    }]
                                }
                                AppSide::Refuses => vec![KernelEvent::SendError {
                                    kind: SendErrorKind::Timeout,
                                    target,
                                    context: Some(ctx),
                                }],
                            },
                            _ => Vec::new(),
                        }
                    }
                    KernelCall::Store { ops, .. } => {
                        let records = self.records.entry(from.clone()).or_default();
                        for (k, v) in ops {
                            match v {
                                Some(v) => records.insert(k, v),
                                None => records.remove(&k),
                            };
                        }
                        Vec::new()
                    }
                    KernelCall::Read { key, token } => {
                        let value = self.records.get(&from).and_then(|r| r.get(&key)).cloned();
                        vec![KernelEvent::ReadDone { token, value }]
                    }
                    KernelCall::SetState(_) | KernelCall::Print { .. } => Vec::new(),
                };
                for event in events {
                    self.elapsed += 1;
                    let more = self.step(&from, event);
                    queue.extend(more.into_iter().map(|c| (from.clone(), c)));
                }
            }
            // The blocked caller lets the requests to it time out, the earliest first.
            if blocked.is_empty() {
                return;
            }
            blocked.sort_by_key(|b| b.3);
            let (from, target, ctx, t) = blocked.remove(0);
            self.elapsed += t * 1_000;
            let more = self.step(
                &from,
                KernelEvent::SendError {
                    kind: SendErrorKind::Timeout,
                    target,
                    context: Some(ctx),
                },
            );
            queue.extend(more.into_iter().map(|c| (from.clone(), c)));
        }
    }

    // ----- playing other nodes' presence processes -----

    /// `peer`'s presence probes `node`'s presence, speaking for itself (Alive at
    /// `incarnation`, with `info` if given): direct evidence, so `node` admits it as a member
    /// and records when it last saw it. Returns the answer (an Ack).
    pub fn probe_from(
        &mut self,
        peer: &str,
        node: &str,
        incarnation: u64,
        info: Option<NodeInfo>,
    ) -> Vec<u8> {
        let me = NodeId::parse(peer).expect("a valid node name");
        let update = Update {
            node: me.clone(),
            status: MemberStatus::Alive,
            incarnation,
            info,
            origin: me,
        };
        let body = serde_json::to_vec(&Request::Probe {
            seq: 1,
            updates: vec![update],
            protocol_version: p2p_common::api::PROTOCOL_VERSION,
        })
        .expect("serializes");
        self.presence_call(peer, node, body)
            .expect("probe answered")
    }

    /// `peer`'s presence gossips `updates` to `node`'s presence (sent with a timeout, so the
    /// answer, `Accepted`, comes back).
    pub fn gossip_from(&mut self, peer: &str, node: &str, updates: Vec<Update>) -> Vec<u8> {
        let body = serde_json::to_vec(&Request::Gossip { updates }).expect("serializes");
        self.presence_call(peer, node, body)
            .expect("gossip answered")
    }

    fn presence_call(&mut self, peer: &str, node: &str, body: Vec<u8>) -> Option<Vec<u8>> {
        let from = presence_of(peer);
        let to = presence_of(node);
        self.call(&from, &to, body, Some(5)).expect("hosted")
    }
}

/// `node`'s presence process.
pub fn presence_of(node: &str) -> Address {
    Address::ours(&NodeId::parse(node).expect("a valid node name"), "presence")
}

/// A fact about `node` as `origin` states it.
pub fn update(node: &str, status: MemberStatus, incarnation: u64, origin: &str) -> Update {
    Update {
        node: NodeId::parse(node).expect("a valid node name"),
        status,
        incarnation,
        info: None,
        origin: NodeId::parse(origin).expect("a valid node name"),
    }
}

/// A response body as process_lib's `Message` hands it out (`reply.body()`), for examples
/// written against process_lib.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply(pub Vec<u8>);

impl Reply {
    pub fn body(&self) -> &[u8] {
        &self.0
    }
}

/// The [`Transport`] of an app on a harness node, making blocking calls as
/// `ProcessTransport` does on a node: a process on another hosted node answers too (the
/// kernel's networking), an address the harness does not host is Offline, and when the
/// app's kernel refuses our processes' messages ([`AppSide::Refuses`]), their answers too
/// (a Timeout).
#[derive(Clone)]
pub struct HarnessTransport {
    harness: Rc<RefCell<Harness>>,
    app: Address,
}

impl HarnessTransport {
    pub fn new(harness: Rc<RefCell<Harness>>, app: Address) -> Self {
        HarnessTransport { harness, app }
    }

    /// A harness hosting our processes on `our` and on each of `peers`, and the transport of
    /// the app `our@my-app:my-app:someone.os` (the app the docs' manifest entry is for).
    pub fn app_on(our: &str, peers: &[&str]) -> Self {
        let mut nodes = vec![our];
        nodes.extend_from_slice(peers);
        let harness = Rc::new(RefCell::new(Harness::with_nodes(&nodes)));
        let app = Address::parse(&format!("{our}@my-app:my-app:someone.os")).expect("valid");
        HarnessTransport { harness, app }
    }

    pub fn harness(&self) -> &Rc<RefCell<Harness>> {
        &self.harness
    }

    pub fn app(&self) -> &Address {
        &self.app
    }

    /// The node the app runs on.
    pub fn our(&self) -> NodeId {
        self.app.node.clone()
    }
}

impl Transport for HarnessTransport {
    fn call(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind> {
        let mut h = self.harness.borrow_mut();
        let answer = h.call(&self.app, to, body, Some(timeout_s))?;
        match answer {
            Some(body) if h.app_side(&self.app) != AppSide::Refuses => Ok(body),
            _ => Err(SendErrorKind::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_common::api::presence::SubscriberMessage;
    use p2p_common::client::{BaseClient, ClientError, PresenceClient};

    #[test]
    fn apps_call_every_process_and_presence_confirms_a_blocked_subscriber() {
        let t = HarnessTransport::app_on("alice.os", &["bob.os"]);
        let our = t.our();
        for name in PROCESSES {
            let mut c = BaseClient::local(&our, name, t.clone());
            assert_eq!(c.info().unwrap().name, name);
        }
        let bob = presence_of("bob.os");
        let mut remote = BaseClient::new(&our, bob, t.clone());
        assert_eq!(remote.ping().unwrap().node, "bob.os");
        let mut nobody = BaseClient::new(&our, presence_of("zed.os"), t.clone());
        assert_eq!(
            nobody.ping().unwrap_err(),
            ClientError::Send(SendErrorKind::Offline)
        );

        let mut presence = PresenceClient::local(&our, t.clone());
        let before = t.harness().borrow().now().wall;
        presence.subscribe().unwrap();
        let h = t.harness().borrow();
        assert!(
            h.now().wall >= before + 2_000,
            "the blocked app let the welcome time out"
        );
        let welcome: Vec<SubscriberMessage> = h
            .sent_to(t.app())
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert!(matches!(
            &welcome[..],
            [SubscriberMessage::Welcome { seq: 0, .. }]
        ));
        assert_eq!(h.stray_answers, 0);
    }

    #[test]
    fn an_app_that_refuses_our_messages_gets_no_answers() {
        let t = HarnessTransport::app_on("alice.os", &[]);
        t.harness().borrow_mut().set_app(t.app(), AppSide::Refuses);
        let mut presence = PresenceClient::local(&t.our(), t.clone());
        assert!(matches!(
            presence.subscribe(),
            Err(ClientError::LocalTimeout { .. })
        ));
    }

    #[test]
    fn peers_played_by_the_test_become_members() {
        let mut h = Harness::with_nodes(&["alice.os"]);
        h.probe_from("bob.os", "alice.os", 3, None);
        h.gossip_from(
            "bob.os",
            "alice.os",
            vec![update("carol.os", MemberStatus::Alive, 1, "carol.os")],
        );
        // dave speaks for himself.
        h.probe_from("dave.os", "alice.os", 1, None);
        let t = HarnessTransport::new(
            Rc::new(RefCell::new(h)),
            Address::parse("alice.os@my-app:my-app:someone.os").unwrap(),
        );
        let mut presence = PresenceClient::local(&t.our(), t.clone());
        let bob = presence.get_node(&"bob.os".parse().unwrap()).unwrap();
        assert_eq!(bob.incarnation, 3);
        assert!(bob.info.last_seen > WALL_START, "{}", bob.info.last_seen);
        // A member's report admits nobody: carol is only a candidate, probed, and she is
        // not there to answer. dave, who probed alice himself, is a member.
        assert!(presence.get_node(&"carol.os".parse().unwrap()).is_err());
        assert_eq!(
            presence
                .get_node(&"dave.os".parse().unwrap())
                .unwrap()
                .incarnation,
            1
        );
    }
}
