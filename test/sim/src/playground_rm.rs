//! The playground's resource manager: one on every simulated node, managing the resources
//! [`RESOURCES`] for txcoord, so a transaction started in the page can commit.
//!
//! It is a small key-value store written on common's helper ([`p2p_common::txcoord::Manager`]
//! and [`p2p_common::txcoord::answer`]): an operation is any text, and it votes yes unless the
//! operation contains [`REFUSE`] (then no, with a reason naming the word). A yes is on disk
//! (forced, `p/<resource>/<tx>`) before it is sent; commit and abort drop the prepared record, and a
//! commit counts the operation as applied (`applied`, lazily written). It registers for its
//! resources at start (every restart of its node) and again after a failed registration or
//! now and then, as an app that restarted would.

use p2p_common::api::txcoord::{
    Coordinators, ManagerMessage, Request as TxReq, Response as TxResp,
};
use p2p_common::api::{decode_response, encode};
use p2p_common::service::{Batch, Effect, Input, Now, Records, Service};
use p2p_common::txcoord::{answer, Manager};
use p2p_common::{Address, NodeId};
use std::collections::BTreeMap;

/// The process name of the manager on each node.
pub const PROCESS: &str = "rm";
/// The resources every node's manager handles.
pub const RESOURCES: [&str; 2] = ["stock", "cash"];
/// An operation containing this word gets a no vote.
pub const REFUSE: &str = "refuse";
/// Prepared transactions kept at most (a prepare beyond gets a no).
pub const MAX_PREPARED: usize = 1_000;
/// Re-registration period while registered.
const REREGISTER_MS: u64 = 60_000;
/// Retry of a registration that failed.
const RETRY_MS: u64 = 2_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RmTimer {
    Register(usize),
}

/// Prepared operations and the count of applied ones.
#[derive(Debug, Default)]
pub struct Store {
    prepared: BTreeMap<(String, String), String>,
    pub applied: u64,
    pub refused: u64,
}

impl Manager for Store {
    fn prepare(
        &mut self,
        tx_id: &str,
        resource: &str,
        _coordinator: &NodeId,
        op: &str,
    ) -> Result<(), String> {
        if op.contains(REFUSE) {
            self.refused += 1;
            return Err(format!(
                "the playground manager refuses operations containing \"{REFUSE}\""
            ));
        }
        let key = (tx_id.to_string(), resource.to_string());
        if !self.prepared.contains_key(&key) && self.prepared.len() >= MAX_PREPARED {
            return Err(format!("{MAX_PREPARED} transactions are prepared already"));
        }
        self.prepared.insert(key, op.into());
        Ok(())
    }
    fn commit(&mut self, tx_id: &str, resource: &str) {
        if self
            .prepared
            .remove(&(tx_id.to_string(), resource.to_string()))
            .is_some()
        {
            self.applied += 1;
        }
    }
    fn abort(&mut self, tx_id: &str, resource: &str) {
        self.prepared
            .remove(&(tx_id.to_string(), resource.to_string()));
    }
    fn in_doubt(&self) -> Vec<(String, String)> {
        self.prepared.keys().cloned().collect()
    }
}

/// The manager core.
pub struct PlaygroundRm {
    txcoord: Address,
    pub store: Store,
}

impl PlaygroundRm {
    pub fn new(our: Address) -> Self {
        PlaygroundRm {
            txcoord: Address::ours(&our.node, "txcoord"),
            store: Store::default(),
        }
    }
    fn register(&self, i: usize) -> Effect<usize, RmTimer> {
        Effect::request(
            self.txcoord.clone(),
            encode(&TxReq::RegisterManager {
                resource: RESOURCES[i].into(),
                // Every node of the playground is ours: take part in transactions any of
                // them coordinates (a real manager names the nodes it trusts).
                coordinators: Some(Coordinators::Any),
            }),
            10,
            i,
        )
    }
    fn load(&mut self, records: &Records) {
        for (k, v) in records {
            let (k, v) = (String::from_utf8_lossy(k), String::from_utf8_lossy(v));
            if let Some((resource, tx)) = k.strip_prefix("p/").and_then(|r| r.split_once('/')) {
                self.store
                    .prepared
                    .insert((tx.to_string(), resource.to_string()), v.to_string());
            } else if k == "applied" {
                self.store.applied = v.parse().unwrap_or(0);
            }
        }
    }
}

impl Service for PlaygroundRm {
    type Ctx = usize;
    type Timer = RmTimer;
    fn name(&self) -> &'static str {
        PROCESS
    }
    fn handle(&mut self, _now: Now, input: Input<usize, RmTimer>) -> Vec<Effect<usize, RmTimer>> {
        match input {
            Input::Start { records, .. } => {
                self.load(&records);
                (0..RESOURCES.len()).map(|i| self.register(i)).collect()
            }
            Input::Response { ctx, body, .. } => {
                let after = match decode_response::<TxResp>(&body) {
                    Ok(TxResp::ManagerRegistered { .. }) => REREGISTER_MS,
                    _ => RETRY_MS,
                };
                vec![Effect::timer(after, RmTimer::Register(ctx))]
            }
            Input::SendFailed { ctx, .. } => vec![Effect::timer(RETRY_MS, RmTimer::Register(ctx))],
            Input::Timer(RmTimer::Register(i)) => vec![self.register(i)],
            // Only our own node's txcoord may drive the manager.
            Input::Request { id, from, body, .. } if from == self.txcoord => {
                // The one transaction this message is about (none for Hello).
                let tx = match serde_json::from_slice::<ManagerMessage>(&body) {
                    Ok(ManagerMessage::PrepareTransaction {
                        tx_id, resource, ..
                    })
                    | Ok(ManagerMessage::CommitTransaction { tx_id, resource })
                    | Ok(ManagerMessage::AbortTransaction { tx_id, resource }) => {
                        Some((tx_id, resource))
                    }
                    _ => None,
                };
                let before = tx
                    .as_ref()
                    .and_then(|t| self.store.prepared.get(t).cloned());
                let applied = self.store.applied;
                let Some(reply) = answer(&mut self.store, &body) else {
                    return vec![Effect::reply(
                        id,
                        p2p_common::api::encode_result::<()>(&Err(
                            p2p_common::ApiError::bad_request("not a txcoord manager message"),
                        )),
                    )];
                };
                let mut forced = None;
                if let Some(tx) = tx {
                    let after = self.store.prepared.get(&tx);
                    if after != before.as_ref() {
                        let key = format!("p/{}/{}", tx.1, tx.0);
                        forced = Some(match after {
                            Some(op) => Batch::forced().put(key, op.clone()),
                            None => Batch::forced().delete(key),
                        });
                    }
                }
                let mut out = Vec::new();
                if let Some(b) = forced {
                    out.push(Effect::Store(b));
                }
                if self.store.applied != applied {
                    out.push(Effect::Store(
                        Batch::lazy().put("applied", self.store.applied.to_string()),
                    ));
                }
                out.push(Effect::reply(id, reply));
                out
            }
            Input::Request { id, .. } => vec![Effect::reply(
                id,
                p2p_common::api::encode_result::<()>(&Err(p2p_common::ApiError::new(
                    p2p_common::ErrorCode::Forbidden,
                    "only this node's txcoord talks to its resource manager",
                ))),
            )],
            _ => vec![],
        }
    }
}
