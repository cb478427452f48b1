//! Typed helpers for txcoord: [`TxClient`] for apps that start transactions, and
//! [`Manager`] + [`answer`] to write a resource manager in a few lines.
//!
//! ```
//! use p2p_common::txcoord::{answer, Manager};
//! use p2p_common::NodeId;
//! use std::collections::BTreeMap;
//!
//! /// Key-value stores (one per resource) that take part in transactions: the operation is
//! /// "key=value". One transaction may include several resources of the same app, so
//! /// everything is keyed by resource too.
//! #[derive(Default)]
//! struct Store {
//!     /// (tx id, resource) → (key, value). A real app keeps this on disk before voting yes.
//!     prepared: BTreeMap<(String, String), (String, String)>,
//!     /// (resource, key) → value.
//!     data: BTreeMap<(String, String), String>,
//! }
//!
//! impl Manager for Store {
//!     fn prepare(&mut self, tx_id: &str, resource: &str, _coordinator: &NodeId, op: &str)
//!         -> Result<(), String>
//!     {
//!         let (k, v) = op.split_once('=').ok_or("operation must be key=value")?;
//!         self.prepared.insert((tx_id.into(), resource.into()), (k.into(), v.into()));
//!         Ok(())
//!     }
//!     fn commit(&mut self, tx_id: &str, resource: &str) {
//!         if let Some((k, v)) = self.prepared.remove(&(tx_id.into(), resource.into())) {
//!             self.data.insert((resource.into(), k), v);
//!         }
//!     }
//!     fn abort(&mut self, tx_id: &str, resource: &str) {
//!         self.prepared.remove(&(tx_id.into(), resource.into()));
//!     }
//!     fn in_doubt(&self) -> Vec<(String, String)> {
//!         self.prepared.keys().cloned().collect()
//!     }
//! }
//!
//! // In the app's message loop, for a request from our own node's txcoord (which passes on
//! // only transactions of the coordinators the app registered for):
//! let mut store = Store::default();
//! let body = br#"{"PrepareTransaction": {"tx_id": "alice.os/01", "coordinator": "alice.os",
//!     "resource": "kv", "operation": "color=blue"}}"#;
//! let reply = answer(&mut store, body).expect("a txcoord manager message");
//! assert_eq!(reply, br#"{"Ok":{"Vote":{"vote":"Yes","reason":""}}}"#);
//! answer(&mut store, br#"{"CommitTransaction": {"tx_id": "alice.os/01", "resource": "kv"}}"#);
//! assert_eq!(store.data[&("kv".into(), "color".into())], "blue");
//! ```

use crate::api::encode_result;
use crate::api::txcoord::{
    AppEvent, Coordinators, ListFilter, ManagerAnswer, ManagerMessage, ParticipantSpec, Request,
    Response, TxStatus, Vote,
};
use crate::client::{expect_reply, ClientError, Transport};
use crate::ids::NodeId;

/// What a resource manager does; [`answer`] turns txcoord's messages into these calls.
/// One app may manage several resources, and one transaction may include several of them:
/// every call names its `resource`, so keep prepared state per (transaction, resource).
pub trait Manager {
    /// Vote on `operation` of `resource` in `tx_id`, which txcoord on `coordinator`
    /// coordinates (one of the nodes the app registered for, or any node with
    /// `Coordinators::Any`: then check it here): `Ok` is yes, `Err(reason)` no. Before a yes,
    /// make the prepared operation durable (you must be able to commit it after a restart of
    /// your own).
    fn prepare(
        &mut self,
        tx_id: &str,
        resource: &str,
        coordinator: &NodeId,
        operation: &str,
    ) -> Result<(), String>;
    /// Apply the prepared operation of `resource`. May be called again for the same one.
    fn commit(&mut self, tx_id: &str, resource: &str);
    /// Drop the prepared operation of `resource`. May be called again, or for one never
    /// prepared.
    fn abort(&mut self, tx_id: &str, resource: &str);
    /// (transaction id, resource) of every operation voted yes on and not yet committed or
    /// aborted.
    fn in_doubt(&self) -> Vec<(String, String)>;
}

/// The response body to a message from txcoord, or `None` if `body` is not one (then it is
/// some other request for the app). Only feed it requests from your own node's txcoord.
pub fn answer(m: &mut impl Manager, body: &[u8]) -> Option<Vec<u8>> {
    let msg: ManagerMessage = serde_json::from_slice(body).ok()?;
    let a = match msg {
        // The Hello is per resource: its in-doubt transactions only.
        ManagerMessage::Hello { resource } => ManagerAnswer::InDoubt {
            tx_ids: m
                .in_doubt()
                .into_iter()
                .filter(|(_, r)| *r == resource)
                .map(|(t, _)| t)
                .collect(),
        },
        ManagerMessage::PrepareTransaction {
            tx_id,
            coordinator,
            resource,
            operation,
        } => match m.prepare(&tx_id, &resource, &coordinator, &operation) {
            Ok(()) => ManagerAnswer::Vote {
                vote: Vote::Yes,
                reason: String::new(),
            },
            Err(reason) => ManagerAnswer::Vote {
                vote: Vote::No,
                reason,
            },
        },
        ManagerMessage::CommitTransaction { tx_id, resource } => {
            m.commit(&tx_id, &resource);
            ManagerAnswer::Done {}
        }
        ManagerMessage::AbortTransaction { tx_id, resource } => {
            m.abort(&tx_id, &resource);
            ManagerAnswer::Done {}
        }
    };
    Some(encode_result(&Ok(a)))
}

/// The decision event txcoord sends the app that started a transaction, if `body` is one.
pub fn parse_event(body: &[u8]) -> Option<AppEvent> {
    serde_json::from_slice(body).ok()
}

crate::client::typed_client!(
    /// Typed calls to txcoord on our node.
    TxClient,
    crate::api::txcoord
);

impl<T: Transport> TxClient<T> {
    /// Start a transaction; returns its id at once (the decision comes as an [`AppEvent`]).
    pub fn start(
        &mut self,
        participants: Vec<ParticipantSpec>,
        timeout_ms: Option<u64>,
    ) -> Result<String, ClientError> {
        let req = Request::Start {
            participants,
            timeout_ms,
        };
        expect_reply!(self.call(&req)?, Response::Started { tx_id } => tx_id)
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
        expect_reply!(self.call(&req)?, Response::Status(s) => s)
    }

    /// One page of transactions and the cursor of the next.
    pub fn list(
        &mut self,
        filter: ListFilter,
    ) -> Result<(Vec<TxStatus>, Option<String>), ClientError> {
        expect_reply!(
            self.call(&Request::List(filter))?,
            Response::Transactions { transactions, next_cursor, } => (transactions, next_cursor)
        )
    }

    /// Every finished transaction this node coordinated that its history still holds (the
    /// last `Config::history`), with each participant's vote as it ended, page by page.
    pub fn finished(&mut self) -> Result<Vec<TxStatus>, ClientError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.list(ListFilter {
                role: Some(crate::api::txcoord::Role::Coordinator),
                include_finished: Some(true),
                cursor,
                limit: Some(crate::api::txcoord::MAX_PAGE),
                ..Default::default()
            })?;
            out.extend(page.into_iter().filter(|t| {
                matches!(
                    t.phase,
                    crate::api::txcoord::Phase::Committed | crate::api::txcoord::Phase::Aborted
                )
            }));
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
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
        let req = Request::RegisterManager {
            resource: resource.into(),
            coordinators,
        };
        expect_reply!(self.call(&req)?, Response::ManagerRegistered { pending, .. } => pending)
    }

    pub fn unregister_manager(&mut self, resource: &str) -> Result<(), ClientError> {
        let req = Request::UnregisterManager {
            resource: resource.into(),
        };
        expect_reply!(self.call(&req)?, Response::ManagerUnregistered { .. } => ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The module example's store.
    #[derive(Default)]
    struct Store {
        prepared: BTreeMap<(String, String), (String, String)>,
        data: BTreeMap<(String, String), String>,
    }

    impl Manager for Store {
        fn prepare(&mut self, tx: &str, res: &str, _c: &NodeId, op: &str) -> Result<(), String> {
            let (k, v) = op.split_once('=').ok_or("operation must be key=value")?;
            self.prepared
                .insert((tx.into(), res.into()), (k.into(), v.into()));
            Ok(())
        }
        fn commit(&mut self, tx: &str, res: &str) {
            if let Some((k, v)) = self.prepared.remove(&(tx.into(), res.into())) {
                self.data.insert((res.into(), k), v);
            }
        }
        fn abort(&mut self, tx: &str, res: &str) {
            self.prepared.remove(&(tx.into(), res.into()));
        }
        fn in_doubt(&self) -> Vec<(String, String)> {
            self.prepared.keys().cloned().collect()
        }
    }

    fn send(s: &mut Store, body: String) -> String {
        String::from_utf8(answer(s, body.as_bytes()).expect("a manager message")).unwrap()
    }

    /// Review 14, defect 6: one app manages two resources of the same transaction; each
    /// call names its resource, so neither operation overwrites the other, and each Hello
    /// gets the in-doubt transactions of its own resource.
    #[test]
    fn one_app_managing_two_resources_of_a_transaction_keeps_both_operations() {
        let mut s = Store::default();
        for (r, op) in [("kv", "a=1"), ("kv2", "b=2"), ("kv3", "c=3")] {
            let m = format!(
                r#"{{"PrepareTransaction": {{"tx_id": "alice.os/01", "coordinator": "alice.os", "resource": "{r}", "operation": "{op}"}}}}"#
            );
            assert_eq!(
                send(&mut s, m),
                r#"{"Ok":{"Vote":{"vote":"Yes","reason":""}}}"#
            );
        }
        let hello =
            |s: &mut Store, r: &str| send(s, format!(r#"{{"Hello": {{"resource": "{r}"}}}}"#));
        assert_eq!(
            hello(&mut s, "kv"),
            r#"{"Ok":{"InDoubt":{"tx_ids":["alice.os/01"]}}}"#
        );
        for r in ["kv", "kv2"] {
            let m = format!(
                r#"{{"CommitTransaction": {{"tx_id": "alice.os/01", "resource": "{r}"}}}}"#
            );
            assert_eq!(send(&mut s, m), r#"{"Ok":"Done"}"#);
        }
        let m = r#"{"AbortTransaction": {"tx_id": "alice.os/01", "resource": "kv3"}}"#;
        assert_eq!(send(&mut s, m.into()), r#"{"Ok":"Done"}"#);
        let data: Vec<_> = s
            .data
            .iter()
            .map(|((r, k), v)| format!("{r}/{k}={v}"))
            .collect();
        assert_eq!(data, ["kv/a=1", "kv2/b=2"]);
        assert_eq!(hello(&mut s, "kv"), r#"{"Ok":{"InDoubt":{"tx_ids":[]}}}"#);
        assert!(s.prepared.is_empty());
    }
}
