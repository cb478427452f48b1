//! The guide's presence pattern as a baseline for the benchmark: each node announces itself
//! to a bootstrap (RegisterNode, answered with the known nodes), heartbeats every known node
//! once a period, and declares a node dead when no heartbeat came for a fixed timeout.

use p2p_common::api::encode;
use p2p_common::{Address, Effect, Input, Millis, NodeId, Now, Service};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const BASELINE: &str = "baseline";

#[derive(Serialize, Deserialize)]
enum Msg {
    RegisterNode { node: NodeId },
    Known { nodes: Vec<NodeId> },
    Heartbeat { node: NodeId },
}

pub struct Baseline {
    our: Address,
    bootstrap: Option<NodeId>,
    period: Millis,
    timeout: Millis,
    last_heard: BTreeMap<NodeId, Millis>,
    dead: BTreeSet<NodeId>,
    /// Dead verdicts given so far (a node may be declared dead, heard again, and declared again).
    pub verdicts: u64,
}

impl Baseline {
    pub fn new(our: Address, bootstrap: Option<NodeId>, period: Millis, timeout: Millis) -> Self {
        Baseline {
            our,
            bootstrap,
            period,
            timeout,
            last_heard: BTreeMap::new(),
            dead: BTreeSet::new(),
            verdicts: 0,
        }
    }
    pub fn is_dead(&self, n: &NodeId) -> bool {
        self.dead.contains(n)
    }

    fn learn(&mut self, n: &NodeId, now: Millis) {
        if n != &self.our.node {
            self.last_heard.insert(n.clone(), now);
            self.dead.remove(n);
        }
    }
}

impl Service for Baseline {
    type Ctx = ();
    type Timer = ();

    fn name(&self) -> &'static str {
        BASELINE
    }

    fn handle(&mut self, now: Now, input: Input<(), ()>) -> Vec<Effect<(), ()>> {
        let now = now.mono;
        let tick = Effect::timer(self.period, ());
        match input {
            Input::Start { .. } => vec![tick],
            Input::Timer(()) => {
                let mut out = vec![tick];
                let me = self.our.node.clone();
                if let Some(b) = self.bootstrap.clone().filter(|b| b != &me) {
                    out.push(Effect::request(
                        self.our.on(&b),
                        encode(&Msg::RegisterNode { node: me.clone() }),
                        10,
                        (),
                    ));
                }
                for (n, &t) in &self.last_heard {
                    if now.saturating_sub(t) > self.timeout && !self.dead.contains(n) {
                        self.dead.insert(n.clone());
                        self.verdicts += 1;
                    }
                }
                for n in self.last_heard.keys() {
                    out.push(Effect::notify(
                        self.our.on(n),
                        encode(&Msg::Heartbeat { node: me.clone() }),
                    ));
                }
                out
            }
            Input::Request {
                id,
                body,
                timeout_s,
                ..
            } => match serde_json::from_slice::<Msg>(&body) {
                Ok(Msg::RegisterNode { node }) => {
                    self.learn(&node, now);
                    let mut nodes: Vec<NodeId> = self.last_heard.keys().cloned().collect();
                    nodes.push(self.our.node.clone());
                    if timeout_s.is_some() {
                        vec![Effect::reply(id, encode(&Msg::Known { nodes }))]
                    } else {
                        vec![]
                    }
                }
                Ok(Msg::Heartbeat { node }) => {
                    self.learn(&node, now);
                    vec![]
                }
                _ => vec![],
            },
            Input::Response { body, .. } => {
                if let Ok(Msg::Known { nodes }) = serde_json::from_slice::<Msg>(&body) {
                    for n in nodes.into_iter().filter(|n| n != &self.our.node) {
                        // The guide keeps whatever the bootstrap returns.
                        self.last_heard.entry(n).or_insert(now);
                    }
                    if let Some(b) = self.bootstrap.clone() {
                        self.learn(&b, now);
                    }
                }
                vec![]
            }
            _ => vec![],
        }
    }
}
