//! What every test module uses: the nodes, typed clients of our processes, raw calls, the
//! agents on the other nodes, waiting, and a child process that granted nothing.
//!
//! Roles of this one component (by its process id):
//! - `<n>:tester:sys`: the test, spawned by kit's tester on the first node;
//! - `p2p-patterns-test:p2p-patterns-test:p2p-patterns.os`: the agent, installed as a setup
//!   package on every node, doing on its node what only a local app may (join, leave);
//! - `local-agent:tester:sys`: the agent on the test's own node, a child the test spawns;
//! - `no-grants:tester:sys`: a child the test spawns that granted nothing to anyone;
//! - `subscriber:p2p-patterns-test:p2p-patterns.os`: a notify subscriber the agent spawns
//!   (and lets exit, and spawns again) on its node when the test asks it to.
//!
//! The agent is also a txcoord resource manager on its node once the test asks it to
//! register (`p2p_common::txcoord::Manager`, votes no on the operation `vote-no`).

use hyperware_process_lib as pl;
use p2p_common::api::notify::AppMessage;
use p2p_common::api::sync::{DocId, Op};
use p2p_common::api::txcoord::{AppEvent, Coordinators, ParticipantSpec};
use p2p_common::client::{
    BaseClient, NotifyClient, PresenceClient, ProcessTransport, SyncClient, Transport,
};
use p2p_common::txcoord::{Manager, TxClient};
use p2p_common::{Address, NodeId, SendErrorKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The agent's process name (the test package's manifest entry).
pub const AGENT: &str = "p2p-patterns-test";
/// The child that granted nothing.
pub const NO_GRANTS: &str = "no-grants";
/// The agent on the test's own node: a child the test spawns, because the installed agent
/// there is not public and the test holds no capability to message it (remote agents it
/// reaches over the network).
pub const LOCAL_AGENT: &str = "local-agent";
/// The notify subscriber the agent spawns.
pub const SUBSCRIBER: &str = "subscriber";
/// The operation on which the agent's resource manager votes no.
pub const VOTE_NO: &str = "vote-no";
/// Our processes, as the test package's manifest grants them messaging.
pub const SERVICES: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

/// What a test module gets.
pub struct Ctx {
    pub our: pl::Address,
    pub our_node: NodeId,
    /// The node names the tester was given; the first is ours.
    pub nodes: Vec<NodeId>,
}

/// What the test asks an agent to do on its node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AgentCommand {
    /// Join presence through these nodes.
    Join(Vec<NodeId>),
    /// Leave presence gracefully.
    Leave,
    /// This node's presence members: `(node, status)`.
    Members,
    /// sync: join a document shared with this node (answered once its snapshot arrived).
    SyncJoin(DocId),
    /// sync: apply `ops` as the edit `op_id`.
    SyncEdit {
        doc: DocId,
        op_id: String,
        ops: Vec<Op>,
    },
    /// sync: this node's content of a document.
    SyncRead(DocId),
    /// notify: spawn the subscriber (if it is not running) and have it subscribe to
    /// `topic` of `publisher`; answers the `next_seq` notify gave it.
    Subscribe { publisher: NodeId, topic: String },
    /// notify: what the subscriber's current life received, in order: `[seq, payload]`
    /// (a `Lost` range as `[0, "lost from..to"]`).
    Received,
    /// notify: the subscriber exits (init returns; with OnExit::None the kernel removes it).
    SubscriberExit,
    /// txcoord: register this agent as the manager of `resource` on its node, for
    /// transactions the nodes named coordinate (None: its own node's only).
    RegisterManager(String, Option<Coordinators>),
    /// txcoord: start a transaction coordinated by this node (the agent gets its decision
    /// event); answers the tx id.
    TxStart {
        participants: Vec<ParticipantSpec>,
        timeout_ms: Option<u64>,
    },
    /// txcoord: the decision event of a transaction this agent started (`AppEvent` JSON),
    /// or null if none came yet.
    TxDecision(String),
    /// txcoord: what this node's manager did in transaction `tx_id`:
    /// `{"vote": "Yes"|"No"|null, "outcome": "Committed"|"Aborted"|null}`.
    TxSeen(String),
}

pub type AgentAnswer = Result<serde_json::Value, String>;

impl Ctx {
    pub fn node(&self, i: usize) -> &NodeId {
        &self.nodes[i]
    }

    /// Our node's presence, as an app calls it.
    pub fn presence(&self) -> PresenceClient<ProcessTransport> {
        PresenceClient::local(&self.our_node, ProcessTransport)
    }

    /// Process `process` of ours on `node`, for Ping and Info.
    pub fn base(&self, node: &NodeId, process: &str) -> BaseClient<ProcessTransport> {
        BaseClient::new(
            &self.our_node,
            Address::ours(node, process),
            ProcessTransport,
        )
    }

    /// Any body to process `process` of ours on `node`; the answer as JSON.
    pub fn raw(
        &self,
        node: &NodeId,
        process: &str,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> Result<serde_json::Value, SendErrorKind> {
        let body = ProcessTransport.call(&Address::ours(node, process), body, timeout_s)?;
        Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    /// The error code and message `process` on `node` answered `body` with; `Err` if it
    /// answered something else or nothing.
    pub fn error_of(
        &self,
        node: &NodeId,
        process: &str,
        body: Vec<u8>,
    ) -> Result<(String, String), String> {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        match self.raw(node, process, body, 10) {
            Ok(v) => match (v["Err"]["code"].as_str(), v["Err"]["message"].as_str()) {
                (Some(c), Some(m)) => Ok((c.to_string(), m.to_string())),
                _ => Err(format!("{shown} answered {v}, not an error")),
            },
            Err(e) => Err(format!("{shown} got no answer: {e:?}")),
        }
    }

    /// The address of the agent on our node: spawned on first use, as the test's child
    /// granting our processes messaging, as the installed agent's manifest entry does.
    fn local_agent(&self) -> Result<pl::Address, String> {
        let wasm = format!("{}/tests/p2p-patterns-test.wasm", self.our.package_id());
        let ours = pl::Capability::new(self.our.clone(), "\"messaging\"");
        let grants = SERVICES
            .iter()
            .map(|s| (our_process(s), "\"messaging\"".to_string()))
            .collect();
        let child = match pl::spawn(
            Some(LOCAL_AGENT),
            &wasm,
            pl::OnExit::None,
            vec![ours],
            grants,
            false,
        ) {
            Ok(child) => child,
            Err(pl::SpawnError::NameTaken) => {
                pl::ProcessId::new(Some(LOCAL_AGENT), self.our.package(), self.our.publisher())
            }
            Err(e) => return Err(format!("spawning {wasm}: {e:?}")),
        };
        Ok(pl::Address::new(self.our.node(), child))
    }

    /// Ask the agent on `node` to do `cmd` there.
    pub fn agent(&self, node: &NodeId, cmd: &AgentCommand) -> AgentAnswer {
        let to = if *node == self.our_node {
            self.local_agent()?
        } else {
            pl::Address::new(node.as_str(), (AGENT, AGENT, "p2p-patterns.os"))
        };
        let body = serde_json::to_vec(cmd).expect("serializes");
        // A sync join waits up to 35 s for the snapshot.
        match pl::Request::to(to).body(body).send_and_await_response(60) {
            Ok(Ok(m)) => serde_json::from_slice::<AgentAnswer>(m.body())
                .map_err(|e| format!("the agent on {node} answered no AgentAnswer: {e}"))?,
            Ok(Err(e)) => Err(format!("the agent on {node} did not answer: {e}")),
            Err(e) => Err(format!("request to the agent on {node}: {e}")),
        }
    }

    /// Check `done` every `step_ms` for at most `max_s` seconds; whether it came true.
    pub fn wait_until(&self, max_s: u64, step_ms: u64, mut done: impl FnMut() -> bool) -> bool {
        let mut waited = 0;
        loop {
            if done() {
                return true;
            }
            if waited >= max_s * 1000 {
                return false;
            }
            let _ = pl::timer::set_and_await_timer(step_ms);
            waited += step_ms;
        }
    }

    /// Have the child that granted nothing (spawned on first use) call our `service` on
    /// this node, and return what its client said (`LocalTimeout ...`, Debug then Display).
    pub fn call_without_grants(&self, service: &str) -> Result<String, String> {
        let wasm = format!("{}/tests/p2p-patterns-test.wasm", self.our.package_id());
        // It may answer us (messaging on us), and holds nothing else; nobody may message it
        // unless asked to, and it grants nothing.
        let ours = pl::Capability::new(self.our.clone(), "\"messaging\"");
        let child = match pl::spawn(
            Some(NO_GRANTS),
            &wasm,
            pl::OnExit::None,
            vec![ours],
            vec![],
            false,
        ) {
            Ok(child) => child,
            // Spawned by an earlier test module: still running.
            Err(pl::SpawnError::NameTaken) => {
                pl::ProcessId::new(Some(NO_GRANTS), self.our.package(), self.our.publisher())
            }
            Err(e) => return Err(format!("spawning {wasm}: {e:?}")),
        };
        let to = pl::Address::new(self.our.node(), child);
        let body = serde_json::to_vec(service).expect("serializes");
        match pl::Request::to(to).body(body).send_and_await_response(30) {
            Ok(Ok(m)) => Ok(String::from_utf8_lossy(m.body()).into_owned()),
            other => Err(format!("the child did not report: {other:?}")),
        }
    }
}

fn our_process(process: &str) -> pl::ProcessId {
    pl::ProcessId::new(Some(process), "p2p-patterns", "p2p-patterns.os")
}

/// The agent's resource manager: what it voted and applied, per transaction (in memory: the
/// test does not restart the agent; a real manager keeps prepared operations on disk). It
/// manages one resource, so `votes` and `outcomes` are per transaction.
#[derive(Default)]
struct KitManager {
    /// (tx id, resource) → operation.
    prepared: BTreeMap<(String, String), String>,
    votes: BTreeMap<String, &'static str>,
    outcomes: BTreeMap<String, &'static str>,
}

impl Manager for KitManager {
    fn prepare(
        &mut self,
        tx_id: &str,
        resource: &str,
        _coordinator: &NodeId,
        op: &str,
    ) -> Result<(), String> {
        if op == VOTE_NO {
            self.votes.insert(tx_id.into(), "No");
            return Err("the test asked this manager to vote no".into());
        }
        self.votes.insert(tx_id.into(), "Yes");
        self.prepared
            .insert((tx_id.into(), resource.into()), op.into());
        Ok(())
    }
    fn commit(&mut self, tx_id: &str, resource: &str) {
        self.prepared.remove(&(tx_id.into(), resource.into()));
        self.outcomes.insert(tx_id.into(), "Committed");
    }
    fn abort(&mut self, tx_id: &str, resource: &str) {
        self.prepared.remove(&(tx_id.into(), resource.into()));
        self.outcomes.insert(tx_id.into(), "Aborted");
    }
    fn in_doubt(&self) -> Vec<(String, String)> {
        self.prepared.keys().cloned().collect()
    }
}

/// What the agent keeps between commands.
#[derive(Default)]
struct Agent {
    manager: KitManager,
    /// Decision events of the transactions it started, by tx id.
    decisions: BTreeMap<String, AppEvent>,
}

/// The agent: serve the test's commands (from a `tester:sys` process) and, as a resource
/// manager, our node's txcoord, until killed.
pub fn agent_loop(our: &pl::Address) {
    let Ok(our_node) = NodeId::parse(our.node()) else {
        return pl::print_to_terminal(0, "p2p-patterns-test agent: odd node name");
    };
    let txcoord = pl::Address::new(our.node(), our_process("txcoord"));
    let mut agent = Agent::default();
    loop {
        let Ok(pl::Message::Request {
            source,
            body,
            expects_response,
            ..
        }) = pl::await_message()
        else {
            continue;
        };
        if source == txcoord {
            if let Some(event) = p2p_common::txcoord::parse_event(&body) {
                let AppEvent::TxDecided { tx_id, .. } = &event;
                agent.decisions.insert(tx_id.clone(), event);
                let _ = pl::Response::new().body(b"{}".to_vec()).send();
                continue;
            }
            match p2p_common::txcoord::answer(&mut agent.manager, &body) {
                Some(reply) => {
                    let _ = pl::Response::new().body(reply).send();
                }
                None => pl::print_to_terminal(0, "agent: not a manager message from txcoord"),
            }
            continue;
        }
        if expects_response.is_none() {
            continue;
        }
        let answer: AgentAnswer = if source.package() != "tester" || source.publisher() != "sys" {
            Err(format!("{source} is not a test"))
        } else {
            match serde_json::from_slice::<AgentCommand>(&body) {
                Err(e) => Err(format!("not an agent command: {e}")),
                Ok(cmd) => run_command(our, &our_node, &mut agent, cmd),
            }
        };
        let _ = pl::Response::new()
            .body(serde_json::to_vec(&answer).expect("serializes"))
            .send();
    }
}

fn run_command(
    our: &pl::Address,
    our_node: &NodeId,
    agent: &mut Agent,
    cmd: AgentCommand,
) -> AgentAnswer {
    let mut presence = PresenceClient::local(our_node, ProcessTransport);
    let mut sync = SyncClient::local(our_node, ProcessTransport);
    let e = |e: p2p_common::client::ClientError| e.to_string();
    match cmd {
        AgentCommand::Join(bootstrap) => presence
            .join(bootstrap)
            .map(|pending| serde_json::json!(pending))
            .map_err(e),
        AgentCommand::Leave => presence
            .leave()
            .map(|()| serde_json::Value::Null)
            .map_err(e),
        AgentCommand::Members => presence
            .all_nodes(Default::default())
            .map(|nodes| {
                let pairs: Vec<(String, String)> = nodes
                    .iter()
                    .map(|v| (v.info.node_id.to_string(), format!("{:?}", v.status)))
                    .collect();
                serde_json::json!(pairs)
            })
            .map_err(e),
        AgentCommand::SyncJoin(doc) => sync.join(&doc).map(|i| serde_json::json!(i)).map_err(e),
        AgentCommand::SyncEdit { doc, op_id, ops } => sync
            .edit(&doc, &op_id, ops, None)
            .map(|x| serde_json::json!(x))
            .map_err(e),
        AgentCommand::SyncRead(doc) => sync.read(&doc).map(|c| serde_json::json!(c)).map_err(e),
        AgentCommand::Subscribe { publisher, topic } => {
            let child = subscriber_id(our);
            let wasm = format!("{}/pkg/p2p-patterns-test.wasm", our.package_id());
            // The subscriber may answer the agent; it grants notify messaging (as a real
            // subscriber's manifest does), so notify's welcome, deliveries and answers reach
            // it.
            let on_agent = pl::Capability::new(our.clone(), "\"messaging\"");
            let grants = vec![(our_process("notify"), "\"messaging\"".to_string())];
            match pl::spawn(
                Some(SUBSCRIBER),
                &wasm,
                pl::OnExit::None,
                vec![on_agent],
                grants,
                false,
            ) {
                Ok(_) | Err(pl::SpawnError::NameTaken) => {}
                Err(err) => return Err(format!("spawning {wasm}: {err:?}")),
            }
            let cmd = SubscriberCommand::Subscribe { publisher, topic };
            ask_subscriber(our, &child, &cmd)
        }
        AgentCommand::Received => {
            ask_subscriber(our, &subscriber_id(our), &SubscriberCommand::Received)
        }
        AgentCommand::SubscriberExit => {
            ask_subscriber(our, &subscriber_id(our), &SubscriberCommand::Exit)
        }
        AgentCommand::RegisterManager(resource, coordinators) => {
            TxClient::local(our_node, ProcessTransport)
                .register_manager(&resource, coordinators)
                .map(|pending| serde_json::json!(pending))
                .map_err(e)
        }
        AgentCommand::TxStart {
            participants,
            timeout_ms,
        } => TxClient::local(our_node, ProcessTransport)
            .start(participants, timeout_ms)
            .map(|tx| serde_json::json!(tx))
            .map_err(e),
        AgentCommand::TxDecision(tx_id) => Ok(serde_json::json!(agent.decisions.get(&tx_id))),
        AgentCommand::TxSeen(tx_id) => Ok(serde_json::json!({
            "vote": agent.manager.votes.get(&tx_id),
            "outcome": agent.manager.outcomes.get(&tx_id),
        })),
    }
}

fn subscriber_id(our: &pl::Address) -> pl::ProcessId {
    pl::ProcessId::new(Some(SUBSCRIBER), our.package(), our.publisher())
}

/// What the agent asks its subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum SubscriberCommand {
    Subscribe { publisher: NodeId, topic: String },
    Received,
    Exit,
}

fn ask_subscriber(
    our: &pl::Address,
    child: &pl::ProcessId,
    cmd: &SubscriberCommand,
) -> AgentAnswer {
    let to = pl::Address::new(our.node(), child.clone());
    let body = serde_json::to_vec(cmd).expect("serializes");
    match pl::Request::to(to).body(body).send_and_await_response(20) {
        Ok(Ok(m)) => serde_json::from_slice::<AgentAnswer>(m.body())
            .map_err(|e| format!("the subscriber answered no AgentAnswer: {e}"))?,
        Ok(Err(e)) => Err(format!("the subscriber did not answer: {e}")),
        Err(e) => Err(format!("request to the subscriber: {e}")),
    }
}

/// The subscriber: subscribes on its agent's command, answers notify's welcome and
/// notifications (recording each), tells the agent what it got, and exits when told.
pub fn subscriber_loop(our: &pl::Address) {
    let Ok(our_node) = NodeId::parse(our.node()) else {
        return;
    };
    let agent = pl::Address::new(our.node(), (AGENT, AGENT, "p2p-patterns.os"));
    let notify = pl::Address::new(our.node(), our_process("notify"));
    let mut received: Vec<(u64, String)> = Vec::new();
    loop {
        let Ok(pl::Message::Request { source, body, .. }) = pl::await_message() else {
            continue;
        };
        if source == notify {
            match p2p_common::client::parse_app_message(&body) {
                Some(AppMessage::HandleNotification(n)) => {
                    let payload = pl::get_blob().map(|b| b.bytes).unwrap_or_default();
                    received.push((n.seq, String::from_utf8_lossy(&payload).into_owned()));
                }
                Some(AppMessage::Lost { range, .. }) => {
                    received.push((0, format!("lost {}..{}", range.from, range.to)));
                }
                Some(AppMessage::Welcome { .. }) => {}
                Some(AppMessage::Revoked { reason, .. }) => {
                    received.push((0, format!("revoked: {reason}")));
                }
                None => pl::print_to_terminal(0, "subscriber: not a notify app message"),
            }
            let _ = pl::Response::new().body(b"{}".to_vec()).send();
            continue;
        }
        if source != agent {
            continue;
        }
        let (answer, exit): (AgentAnswer, bool) = match serde_json::from_slice(&body) {
            Ok(SubscriberCommand::Subscribe { publisher, topic }) => (
                NotifyClient::local(&our_node, ProcessTransport)
                    .subscribe(&publisher, &topic)
                    .map(|next| serde_json::json!(next))
                    .map_err(|e| e.to_string()),
                false,
            ),
            Ok(SubscriberCommand::Received) => (Ok(serde_json::json!(received)), false),
            Ok(SubscriberCommand::Exit) => (Ok(serde_json::Value::Null), true),
            Err(e) => (Err(format!("not a subscriber command: {e}")), false),
        };
        let _ = pl::Response::new()
            .body(serde_json::to_vec(&answer).expect("serializes"))
            .send();
        if exit {
            return;
        }
    }
}

/// The child that granted nothing: on its parent's request naming one of our processes,
/// ping that process on our node and report what the typed client said.
pub fn no_grants_child(our: &pl::Address) {
    let Ok(our_node) = NodeId::parse(our.node()) else {
        return;
    };
    loop {
        let Ok(pl::Message::Request { body, .. }) = pl::await_message() else {
            continue;
        };
        let outcome = match serde_json::from_slice::<String>(&body) {
            Ok(service) if SERVICES.contains(&service.as_str()) => {
                let mut client = BaseClient::local(&our_node, &service, ProcessTransport);
                client.timeout_s = 3;
                match client.ping() {
                    Ok(p) => format!("answered: {p:?}"),
                    Err(e) => format!("{e:?} / {e}"),
                }
            }
            _ => format!("not one of {SERVICES:?}"),
        };
        let _ = pl::Response::new().body(outcome.into_bytes()).send();
    }
}
