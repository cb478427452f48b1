//! Typed helpers for txcoord: [`TxClient`] for apps that start transactions, and
//! [`Manager`] + [`answer`] to write a resource manager in a few lines.
//!
//! ```
//! use p2p_common::txcoord::{answer, Manager};
//! use p2p_common::NodeId;
//! use std::collections::BTreeMap;
//!
//! /// A key-value store that takes part in transactions: the operation is "key=value".
//! #[derive(Default)]
//! struct Store {
//!     prepared: BTreeMap<String, (String, String)>, // a real app keeps this on disk
//!     data: BTreeMap<String, String>,
//! }
//!
//! impl Manager for Store {
//!     fn prepare(&mut self, tx_id: &str, _coordinator: &NodeId, op: &str) -> Result<(), String> {
//!         let (k, v) = op.split_once('=').ok_or("operation must be key=value")?;
//!         self.prepared.insert(tx_id.into(), (k.into(), v.into()));
//!         Ok(())
//!     }
//!     fn commit(&mut self, tx_id: &str) {
//!         if let Some((k, v)) = self.prepared.remove(tx_id) {
//!             self.data.insert(k, v);
//!         }
//!     }
//!     fn abort(&mut self, tx_id: &str) {
//!         self.prepared.remove(tx_id);
//!     }
//!     fn in_doubt(&self) -> Vec<String> {
//!         self.prepared.keys().cloned().collect()
//!     }
//! }
//!
//! // In the app's message loop, for a request from our own node's txcoord:
//! let mut store = Store::default();
//! let body = br#"{"PrepareTransaction": {"tx_id": "alice.os/01", "coordinator": "alice.os",
//!     "resource": "kv", "operation": "color=blue"}}"#;
//! let reply = answer(&mut store, body).expect("a txcoord manager message");
//! assert_eq!(reply, br#"{"Ok":{"Vote":{"vote":"Yes","reason":""}}}"#);
//! answer(&mut store, br#"{"CommitTransaction": {"tx_id": "alice.os/01", "resource": "kv"}}"#);
//! assert_eq!(store.data["color"], "blue");
//! ```

use crate::api::encode_result;
use crate::api::txcoord::{
    AppEvent, Coordinators, ListFilter, ManagerAnswer, ManagerMessage, ParticipantSpec, Request,
    Response, TxStatus, Vote, PROCESS,
};
use crate::client::{call, ClientError, Transport};
use crate::ids::{Address, NodeId};

/// What a resource manager does; [`answer`] turns txcoord's messages into these calls.
pub trait Manager {
    /// Vote: `Ok` is yes, `Err(reason)` no. Before a yes, make the prepared operation
    /// durable (you must be able to commit it after a restart of your own).
    fn prepare(&mut self, tx_id: &str, coordinator: &NodeId, operation: &str)
        -> Result<(), String>;
    /// Apply the prepared operation. May be called again for the same transaction.
    fn commit(&mut self, tx_id: &str);
    /// Drop the prepared operation. May be called again, or for one never prepared.
    fn abort(&mut self, tx_id: &str);
    /// Transactions voted yes on and not yet committed or aborted.
    fn in_doubt(&self) -> Vec<String>;
}

/// The response body to a message from txcoord, or `None` if `body` is not one (then it is
/// some other request for the app). Only feed it requests from your own node's txcoord.
pub fn answer(m: &mut impl Manager, body: &[u8]) -> Option<Vec<u8>> {
    let msg: ManagerMessage = serde_json::from_slice(body).ok()?;
    let a = match msg {
        ManagerMessage::Hello { .. } => ManagerAnswer::InDoubt {
            tx_ids: m.in_doubt(),
        },
        ManagerMessage::PrepareTransaction {
            tx_id,
            coordinator,
            operation,
            ..
        } => match m.prepare(&tx_id, &coordinator, &operation) {
            Ok(()) => ManagerAnswer::Vote {
                vote: Vote::Yes,
                reason: String::new(),
            },
            Err(reason) => ManagerAnswer::Vote {
                vote: Vote::No,
                reason,
            },
        },
        ManagerMessage::CommitTransaction { tx_id, .. } => {
            m.commit(&tx_id);
            ManagerAnswer::Done {}
        }
        ManagerMessage::AbortTransaction { tx_id, .. } => {
            m.abort(&tx_id);
            ManagerAnswer::Done {}
        }
    };
    Some(encode_result(&Ok(a)))
}

/// The decision event txcoord sends the app that started a transaction, if `body` is one.
pub fn parse_event(body: &[u8]) -> Option<AppEvent> {
    serde_json::from_slice(body).ok()
}

/// Typed calls to txcoord on our node.
pub struct TxClient<T> {
    transport: T,
    target: Address,
    pub timeout_s: u64,
}

impl<T: Transport> TxClient<T> {
    pub fn local(our_node: &NodeId, transport: T) -> Self {
        TxClient {
            transport,
            target: Address::ours(our_node, PROCESS),
            timeout_s: 10,
        }
    }

    fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let our = self.target.node.clone();
        call(&mut self.transport, &our, &self.target, self.timeout_s, req)
    }

    /// Start a transaction; returns its id at once (the decision comes as an [`AppEvent`]).
    pub fn start(
        &mut self,
        participants: Vec<ParticipantSpec>,
        timeout_ms: Option<u64>,
    ) -> Result<String, ClientError> {
        match self.call(&Request::Start {
            participants,
            timeout_ms,
        })? {
            Response::Started { tx_id } => Ok(tx_id),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn abort(&mut self, tx_id: &str) -> Result<TxStatus, ClientError> {
        self.status_of(Request::AbortTx {
            tx_id: tx_id.into(),
        })
    }

    pub fn status(&mut self, tx_id: &str) -> Result<TxStatus, ClientError> {
        self.status_of(Request::Status {
            tx_id: tx_id.into(),
        })
    }

    fn status_of(&mut self, req: Request) -> Result<TxStatus, ClientError> {
        match self.call(&req)? {
            Response::Status(s) => Ok(s),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// One page of transactions and the cursor of the next.
    pub fn list(
        &mut self,
        filter: ListFilter,
    ) -> Result<(Vec<TxStatus>, Option<String>), ClientError> {
        match self.call(&Request::List(filter))? {
            Response::Transactions {
                transactions,
                next_cursor,
            } => Ok((transactions, next_cursor)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Register the calling app as manager of `resource`, taking part in transactions that
    /// txcoord on the nodes `coordinators` names coordinates (`None`: this node's only);
    /// returns how many outcomes and votes it is being asked for now.
    pub fn register_manager(
        &mut self,
        resource: &str,
        coordinators: Option<Coordinators>,
    ) -> Result<u32, ClientError> {
        match self.call(&Request::RegisterManager {
            resource: resource.into(),
            coordinators,
        })? {
            Response::ManagerRegistered { pending, .. } => Ok(pending),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn unregister_manager(&mut self, resource: &str) -> Result<(), ClientError> {
        match self.call(&Request::UnregisterManager {
            resource: resource.into(),
        })? {
            Response::ManagerUnregistered { .. } => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}
