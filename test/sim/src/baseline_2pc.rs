//! `bench txcoord`'s baseline: a small model of the guide's pattern 6 ("Distributed
//! Transactions"). The coordinator asks each participant in turn to prepare (10 s timeout; no
//! answer or an error counts as a no), then sends the decision to every participant
//! fire-and-forget and answers the app. Nothing is written anywhere except what a commit
//! applies, so a coordinator crash loses every transaction it was running, a participant
//! that voted yes and missed the decision keeps its pending entry (holds its locks) for ever,
//! and a repeated Commit fails with "Transaction not found". The bench runs it under the same
//! faults as txcoord and counts what that costs.
//!
//! The wire shapes follow the guide: `{"PrepareTransaction": "<transaction as JSON>"}`
//! answered with a bool, `{"Commit": "<id>"}` answered `{"Ok": "Committed"}` or
//! `{"Err": "Transaction not found"}`, `{"Abort": "<id>"}`.

use p2p_common::api::encode;
use p2p_common::service::{Batch, RequestId};
use p2p_common::{Address, Effect, Input, NodeId, Now, Records, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Process name of the baseline on every node.
pub const GUIDE_2PC: &str = "guide2pc";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuideTx {
    pub id: String,
    pub operation: String,
    pub participants: Vec<NodeId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum GuideMsg {
    /// From the app: start a transaction with these participants.
    Start {
        participants: Vec<NodeId>,
    },
    /// The transaction, as a JSON string (as the guide sends it).
    PrepareTransaction(String),
    Commit(String),
    Abort(String),
}

/// Context of a send: a prepare of transaction `String` to participant `usize`, or a
/// decision nobody waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GCtx {
    Prepare(String, usize),
    Ignored,
}

struct Running {
    tx: GuideTx,
    app: RequestId,
    votes: Vec<bool>,
}

/// One node's baseline: coordinator of what its app starts, participant of the rest.
pub struct Guide2pc {
    our: Address,
    next: u64,
    running: BTreeMap<String, Running>,
    /// Participant side: voted yes, waiting for the decision (memory only).
    pub pending: BTreeMap<String, GuideTx>,
    /// Commits that failed with "Transaction not found" (a repeated or late Commit).
    pub not_found: u64,
}

impl Guide2pc {
    pub fn new(our: Address) -> Self {
        Guide2pc {
            our,
            next: 0,
            running: BTreeMap::new(),
            pending: BTreeMap::new(),
            not_found: 0,
        }
    }

    fn prepare(&self, tx_id: &str, i: usize) -> Vec<Effect<GCtx, ()>> {
        let r = &self.running[tx_id];
        let to = Address::ours(&r.tx.participants[i], GUIDE_2PC);
        let body = GuideMsg::PrepareTransaction(serde_json::to_string(&r.tx).unwrap());
        vec![Effect::request(
            to,
            encode(&body),
            10,
            GCtx::Prepare(tx_id.to_string(), i),
        )]
    }

    /// Vote `i` is in: ask the next participant, or decide and tell everyone once.
    fn voted(&mut self, tx_id: String, i: usize, yes: bool) -> Vec<Effect<GCtx, ()>> {
        let Some(r) = self.running.get_mut(&tx_id) else {
            return vec![];
        };
        if r.votes.len() != i {
            return vec![];
        }
        r.votes.push(yes);
        if r.votes.len() < r.tx.participants.len() {
            return self.prepare(&tx_id, i + 1);
        }
        let r = self.running.remove(&tx_id).expect("running");
        let commit = r.votes.iter().all(|v| *v);
        let mut out: Vec<Effect<GCtx, ()>> =
            r.tx.participants
                .iter()
                .map(|p| {
                    let m = if commit {
                        GuideMsg::Commit(tx_id.clone())
                    } else {
                        GuideMsg::Abort(tx_id.clone())
                    };
                    Effect::request(Address::ours(p, GUIDE_2PC), encode(&m), 5, GCtx::Ignored)
                })
                .collect();
        let decision = if commit { "Commit" } else { "Abort" };
        out.push(Effect::reply(
            r.app,
            serde_json::to_vec(&serde_json::json!({
                "transaction_id": tx_id, "decision": decision, "votes": r.votes,
            }))
            .unwrap(),
        ));
        out
    }
}

/// Transactions committed (applied) at node records `r`: the `o/<tx>` keys.
pub fn committed(r: &Records) -> impl Iterator<Item = String> + '_ {
    r.keys().filter_map(|k| {
        std::str::from_utf8(k)
            .ok()?
            .strip_prefix("o/")
            .map(str::to_string)
    })
}

impl Service for Guide2pc {
    type Ctx = GCtx;
    type Timer = ();

    fn name(&self) -> &'static str {
        GUIDE_2PC
    }

    fn handle(&mut self, _now: Now, input: Input<GCtx, ()>) -> Vec<Effect<GCtx, ()>> {
        match input {
            // Nothing survives a restart (the guide keeps everything in memory).
            Input::Start { seed, .. } => {
                self.next = seed;
                vec![]
            }
            Input::Request { id, body, .. } => match serde_json::from_slice::<GuideMsg>(&body) {
                Ok(GuideMsg::Start { participants }) => {
                    self.next = self.next.wrapping_add(1);
                    let tx_id = format!("{}-{:x}", self.our.node, self.next);
                    let tx = GuideTx {
                        id: tx_id.clone(),
                        operation: "set".into(),
                        participants,
                    };
                    self.running.insert(
                        tx_id.clone(),
                        Running {
                            tx,
                            app: id,
                            votes: vec![],
                        },
                    );
                    self.prepare(&tx_id, 0)
                }
                Ok(GuideMsg::PrepareTransaction(json)) => {
                    let yes = match serde_json::from_str::<GuideTx>(&json) {
                        Ok(tx) => {
                            self.pending.insert(tx.id.clone(), tx);
                            true
                        }
                        Err(_) => false,
                    };
                    vec![Effect::reply(id, encode(&yes))]
                }
                Ok(GuideMsg::Commit(tx_id)) => match self.pending.remove(&tx_id) {
                    Some(_) => vec![
                        Effect::Store(Batch::forced().put(format!("o/{tx_id}"), "Committed")),
                        Effect::reply(id, br#"{"Ok":"Committed"}"#.to_vec()),
                    ],
                    None => {
                        self.not_found += 1;
                        vec![Effect::reply(
                            id,
                            br#"{"Err":"Transaction not found"}"#.to_vec(),
                        )]
                    }
                },
                Ok(GuideMsg::Abort(tx_id)) => {
                    self.pending.remove(&tx_id);
                    vec![Effect::reply(id, br#"{"Ok":"Aborted"}"#.to_vec())]
                }
                Err(_) => vec![Effect::reply(id, br#"{"Err":"bad request"}"#.to_vec())],
            },
            Input::Response {
                body,
                ctx: GCtx::Prepare(tx, i),
                ..
            } => {
                let yes = serde_json::from_slice::<bool>(&body).unwrap_or(false);
                self.voted(tx, i, yes)
            }
            Input::SendFailed {
                ctx: GCtx::Prepare(tx, i),
                ..
            } => self.voted(tx, i, false),
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_common::service::RequestId;

    fn req(g: &mut Guide2pc, id: u64, m: &GuideMsg) -> Vec<Effect<GCtx, ()>> {
        let from = Address::parse("alice.os@guide2pc:p2p-patterns:p2p-patterns.os").unwrap();
        g.handle(
            Now { mono: 0, wall: 0 },
            Input::Request {
                id: RequestId(id),
                from,
                body: encode(m),
                blob: None,
                timeout_s: Some(5),
            },
        )
    }

    fn replied(e: &[Effect<GCtx, ()>]) -> String {
        e.iter()
            .find_map(|e| match e {
                Effect::Reply { body, .. } => Some(String::from_utf8_lossy(body).to_string()),
                _ => None,
            })
            .expect("a reply")
    }

    /// The guide's participant: a yes keeps the transaction in memory only, and a repeated
    /// (or post-restart) Commit fails with "Transaction not found".
    #[test]
    fn a_repeated_commit_is_not_found_and_a_restart_forgets() {
        let our = Address::parse("bob.os@guide2pc:p2p-patterns:p2p-patterns.os").unwrap();
        let mut g = Guide2pc::new(our.clone());
        let tx = GuideTx {
            id: "t1".into(),
            operation: "set".into(),
            participants: vec![our.node.clone()],
        };
        let prep = GuideMsg::PrepareTransaction(serde_json::to_string(&tx).unwrap());
        assert_eq!(replied(&req(&mut g, 1, &prep)), "true");
        assert_eq!(g.pending.len(), 1);
        let e = req(&mut g, 2, &GuideMsg::Commit("t1".into()));
        assert_eq!(replied(&e), r#"{"Ok":"Committed"}"#);
        assert!(e.iter().any(|e| matches!(e, Effect::Store(_))));
        let e = req(&mut g, 3, &GuideMsg::Commit("t1".into()));
        assert_eq!(replied(&e), r#"{"Err":"Transaction not found"}"#);
        assert_eq!(g.not_found, 1);
        // A yes vote, then a restart: the pending transaction is gone.
        req(&mut g, 4, &prep);
        let mut g = Guide2pc::new(our);
        g.handle(
            Now { mono: 0, wall: 0 },
            Input::Start {
                persisted: None,
                records: Default::default(),
                seed: 1,
            },
        );
        let e = req(&mut g, 5, &GuideMsg::Commit("t1".into()));
        assert_eq!(replied(&e), r#"{"Err":"Transaction not found"}"#);
    }
}
