//! The benchmark's baseline: an **all-to-all fixed-timeout heartbeat**. The guide's pattern 5
//! (announce to a bootstrap, keep whatever it returns) has no failure verdict at all; this
//! core adds the one a reader of its "heartbeat/presence" comment would write: every node
//! announces itself to a bootstrap (RegisterNode, answered with the known nodes), sends a
//! heartbeat to every known node once a period, and declares a node dead when no heartbeat
//! came for a fixed timeout. Its load is N − 1 messages per node and period.
//!
//! A verdict changes nothing the core sends (it heartbeats dead nodes too), so one run
//! evaluates several timeouts side by side, exactly as separate runs with one timeout each
//! would: [`Baseline::verdicts`] and [`Baseline::is_dead`] are per timeout, in the order
//! given to [`Baseline::new`]. The timeout is checked once a period, on the core's tick,
//! whose phase is drawn from the start seed (nodes do not tick in lockstep).

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
    /// The verdict timeouts evaluated side by side.
    timeouts: Vec<Millis>,
    last_heard: BTreeMap<NodeId, Millis>,
    /// Per timeout: the nodes it holds dead.
    dead: Vec<BTreeSet<NodeId>>,
    /// Per timeout: Dead verdicts given so far (a node may be declared dead, heard again, and
    /// declared again).
    pub verdicts: Vec<u64>,
}

impl Baseline {
    /// A baseline node that heartbeats every `period` and gives a verdict for each of
    /// `timeouts` (at least one).
    pub fn new(
        our: Address,
        bootstrap: Option<NodeId>,
        period: Millis,
        timeouts: Vec<Millis>,
    ) -> Self {
        assert!(!timeouts.is_empty(), "a baseline needs a timeout");
        Baseline {
            our,
            bootstrap,
            period,
            dead: vec![BTreeSet::new(); timeouts.len()],
            verdicts: vec![0; timeouts.len()],
            timeouts,
            last_heard: BTreeMap::new(),
        }
    }

    /// Whether timeout number `t` (in the order given to [`Baseline::new`]) holds `n` dead.
    pub fn is_dead(&self, t: usize, n: &NodeId) -> bool {
        self.dead[t].contains(n)
    }

    fn learn(&mut self, n: &NodeId, now: Millis) {
        if n != &self.our.node {
            self.last_heard.insert(n.clone(), now);
            for d in &mut self.dead {
                d.remove(n);
            }
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
            // The first tick at a random phase of the period.
            Input::Start { seed, .. } => vec![Effect::timer(1 + seed % self.period, ())],
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
                    let silent = now.saturating_sub(t);
                    for (k, &timeout) in self.timeouts.iter().enumerate() {
                        if silent > timeout && self.dead[k].insert(n.clone()) {
                            self.verdicts[k] += 1;
                        }
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
