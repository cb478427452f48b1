//! What every test module uses: the nodes, typed clients of our processes, raw calls, the
//! agents on the other nodes, waiting, and a child process that granted nothing.
//!
//! Roles of this one component (by its process id):
//! - `<n>:tester:sys`: the test, spawned by kit's tester on the first node;
//! - `p2p-patterns-test:p2p-patterns-test:p2p-patterns.os`: the agent, installed as a setup
//!   package on every node, doing on its node what only a local app may (join, leave);
//! - `no-grants:tester:sys`: a child the test spawns that granted nothing to anyone.

use hyperware_process_lib as pl;
use p2p_common::client::{BaseClient, PresenceClient, ProcessTransport, Transport};
use p2p_common::{Address, NodeId, SendErrorKind};
use serde::{Deserialize, Serialize};

/// The agent's process name (the test package's manifest entry).
pub const AGENT: &str = "p2p-patterns-test";
/// The child that granted nothing.
pub const NO_GRANTS: &str = "no-grants";

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

    /// Ask the agent on `node` to do `cmd` there.
    pub fn agent(&self, node: &NodeId, cmd: &AgentCommand) -> AgentAnswer {
        let to = pl::Address::new(node.as_str(), (AGENT, AGENT, "p2p-patterns.os"));
        let body = serde_json::to_vec(cmd).expect("serializes");
        match pl::Request::to(to).body(body).send_and_await_response(30) {
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

    /// Spawn the child that granted nothing, let it call our presence, and return what its
    /// client said (`Err(LocalTimeout ...)` as JSON text).
    pub fn call_without_grants(&self) -> Result<String, String> {
        let wasm = format!("{}/tests/p2p-patterns-test.wasm", self.our.package_id());
        // It may answer us (messaging on us), and holds nothing else; nobody may message it
        // unless asked to, and it grants nothing.
        let ours = pl::Capability::new(self.our.clone(), "\"messaging\"");
        let child = pl::spawn(
            Some(NO_GRANTS),
            &wasm,
            pl::OnExit::None,
            vec![ours],
            vec![],
            false,
        )
        .map_err(|e| format!("spawning {wasm}: {e:?}"))?;
        let to = pl::Address::new(self.our.node(), child);
        match pl::Request::to(to)
            .body(b"\"Go\"".to_vec())
            .send_and_await_response(30)
        {
            Ok(Ok(m)) => Ok(String::from_utf8_lossy(m.body()).into_owned()),
            other => Err(format!("the child did not report: {other:?}")),
        }
    }
}

/// The agent: serve the test's commands (from a `tester:sys` process) until killed.
pub fn agent_loop(our: &pl::Address) {
    let Ok(our_node) = NodeId::parse(our.node()) else {
        return pl::print_to_terminal(0, "p2p-patterns-test agent: odd node name");
    };
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
        if expects_response.is_none() {
            continue;
        }
        let answer: AgentAnswer = if source.package() != "tester" || source.publisher() != "sys" {
            Err(format!("{source} is not a test"))
        } else {
            match serde_json::from_slice::<AgentCommand>(&body) {
                Err(e) => Err(format!("not an agent command: {e}")),
                Ok(cmd) => run_command(&our_node, cmd),
            }
        };
        let _ = pl::Response::new()
            .body(serde_json::to_vec(&answer).expect("serializes"))
            .send();
    }
}

fn run_command(our_node: &NodeId, cmd: AgentCommand) -> AgentAnswer {
    let mut presence = PresenceClient::local(our_node, ProcessTransport);
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
    }
}

/// The child that granted nothing: on its parent's "Go", call our presence and report what
/// the typed client said.
pub fn no_grants_child(our: &pl::Address) {
    let Ok(our_node) = NodeId::parse(our.node()) else {
        return;
    };
    loop {
        let Ok(pl::Message::Request { .. }) = pl::await_message() else {
            continue;
        };
        let mut presence = PresenceClient::local(&our_node, ProcessTransport);
        presence.timeout_s = 3;
        let outcome = match presence.ping() {
            Ok(p) => format!("answered: {p:?}"),
            Err(e) => format!("{e:?} / {e}"),
        };
        let _ = pl::Response::new().body(outcome.into_bytes()).send();
    }
}
