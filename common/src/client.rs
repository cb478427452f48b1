//! Typed helpers for Rust apps that call our processes.
//!
//! A [`Transport`] sends one request and waits for its response. On a node,
//! [`ProcessTransport`] (**wasm32 only**: it wraps process_lib's `send_and_await_response`,
//! so it does not exist in a native build; `cargo doc` shows it all the same) does that;
//! tests can plug in anything, e.g. a closure. The clients turn requests and responses into
//! typed calls: [`PresenceClient`] for presence, [`SyncClient`] for sync, [`NotifyClient`] for
//! notify, [`TxClient`](crate::txcoord::TxClient) for txcoord, and [`BaseClient`] for the `Ping`
//! and `Info` every process answers (each typed client derefs to its `BaseClient`).
//!
//! ```no_run
//! use p2p_common::api::presence::ListFilter;
//! use p2p_common::client::{ClientError, PresenceClient, Transport};
//! use p2p_common::NodeId;
//!
//! // On a node, `transport` is `p2p_common::client::ProcessTransport`.
//! fn chat_peers(our: &NodeId, transport: impl Transport) -> Result<Vec<NodeId>, ClientError> {
//!     let mut presence = PresenceClient::local(our, transport);
//!     presence.join(vec!["bootstrap.os".parse().unwrap()])?;
//!     let filter = ListFilter { capability: Some("chat".into()), ..Default::default() };
//!     Ok(presence.all_nodes(filter)?.into_iter().map(|n| n.info.node_id).collect())
//! }
//! ```
//!
//! Errors tell apart what went wrong ([`ClientError`]): no answer at all (with what to check
//! when the process was on our own node: almost always the calling app's
//! `grant_capabilities`), an error the process answered, a reply that is no valid answer to
//! the call, and a valid answer of the wrong kind.

use crate::api::presence::{
    Config, ConfigPatch, ListFilter, NodeInfo, NodeView, PresenceStats, Request, Response,
    SubscriberMessage,
};
use crate::api::sync;
use crate::api::{
    encode, try_decode_response, ApiError, BaseRequest, BaseResponse, Pong, ServiceInfo,
};
use crate::appreach::grant_snippet;
use crate::ids::{Address, NodeId};
use crate::service::SendErrorKind;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

mod notify;
pub use notify::{parse_app_message, NotifyClient};

/// Default timeout of client calls (seconds).
pub const DEFAULT_TIMEOUT_S: u64 = 10;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The request did not get an answer (Hyperware's Offline / Timeout) from a process on
    /// another node, or Offline.
    Send(SendErrorKind),
    /// A call to a process on our own node got no answer within `timeout_s` (Timeout). On a
    /// Hyperware node that almost always means the kernel refused the answer: it checks
    /// capabilities on responses too, so the calling process must grant `target`'s process
    /// messaging in its manifest. [`ClientError::hint`] (and `Display`) says exactly what to
    /// add. [`ClientError::send_kind`] is `Some(Timeout)` for it, as for `Send(Timeout)`.
    LocalTimeout { target: Address, timeout_s: u64 },
    /// The process answered with an error.
    Api(ApiError),
    /// The reply is not a valid answer to this call (not JSON, or JSON of another shape):
    /// the process did not refuse anything; something else answered, or it speaks another
    /// version.
    BadReply(String),
    /// The process answered a valid response, but not the one this call expects.
    Unexpected(String),
}

impl ClientError {
    /// Offline / Timeout if the call got no answer (for local calls too).
    pub fn send_kind(&self) -> Option<SendErrorKind> {
        match self {
            ClientError::Send(k) => Some(*k),
            ClientError::LocalTimeout { .. } => Some(SendErrorKind::Timeout),
            _ => None,
        }
    }

    /// What to check, for a Timeout on a local call: the manifest entry that lets the target
    /// process answer us.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::LocalTimeout { target, .. } => Some(local_timeout_hint(target)),
            _ => None,
        }
    }
}

/// What a Timeout from `target` on our own node means and how to fix it.
pub fn local_timeout_hint(target: &Address) -> String {
    format!(
        "the kernel checks capabilities on responses too, so {process} can answer only a \
         process that is public or granted it messaging: add to the calling process's entry in \
         its pkg/manifest.json {snippet} (if it is there, check that {process} is installed \
         and running)",
        process = target.process,
        snippet = grant_snippet(&target.process),
    )
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Send(k) => write!(f, "no answer: {k:?}"),
            ClientError::LocalTimeout { target, timeout_s } => write!(
                f,
                "no answer from {target} within {timeout_s} s (Timeout): {}",
                local_timeout_hint(target)
            ),
            ClientError::Api(e) => write!(f, "{e}"),
            ClientError::BadReply(s) => write!(f, "bad reply: {s}"),
            ClientError::Unexpected(s) => write!(f, "unexpected answer: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends one request and waits for its response body.
pub trait Transport {
    fn call(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind>;

    /// The same with a blob (Hyperware's lazy_load_blob) on the request; returns the
    /// response's body. A transport that cannot carry blobs (the default, e.g. a closure)
    /// sends a call without one through [`Transport::call`] and fails one with a blob as
    /// `Offline` without sending it, rather than silently dropping the blob.
    fn call_with_blob(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind> {
        match blob {
            None => self.call(to, body, timeout_s),
            Some(_) => Err(SendErrorKind::Offline),
        }
    }
}

impl<F: FnMut(&Address, Vec<u8>, u64) -> Result<Vec<u8>, SendErrorKind>> Transport for F {
    fn call(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind> {
        self(to, body, timeout_s)
    }
}

/// process_lib's blocking `send_and_await_response`, for apps running on a node.
///
/// **wasm32 only**: the type and its [`Transport`] impl are compiled only for
/// `wasm32-wasip1` (a native build has no process_lib); `cargo doc` documents the type on
/// any target, and `cargo doc --target wasm32-wasip1` with its impl.
///
/// While it waits, other messages to the calling process queue up (they are not lost); do
/// not use it from a process that must keep answering quickly. A process cannot call itself
/// this way (the kernel traps it). The calling process's manifest entry must grant the
/// target process messaging (`"grant_capabilities": ["presence:p2p-patterns:p2p-patterns.os"]`),
/// or every local call ends in [`ClientError::LocalTimeout`].
#[cfg(any(target_arch = "wasm32", doc))]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessTransport;

#[cfg(target_arch = "wasm32")]
impl Transport for ProcessTransport {
    fn call(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind> {
        use hyperware_process_lib as pl;
        let target = pl::Address::new(
            to.node.as_str(),
            pl::ProcessId::new(
                Some(&to.process.process),
                &to.process.package,
                &to.process.publisher,
            ),
        );
        match pl::Request::to(target)
            .body(body)
            .send_and_await_response(timeout_s)
        {
            Ok(Ok(msg)) => Ok(msg.body().to_vec()),
            Ok(Err(e)) if e.kind().is_offline() => Err(SendErrorKind::Offline),
            Ok(Err(_)) | Err(_) => Err(SendErrorKind::Timeout),
        }
    }

    fn call_with_blob(
        &mut self,
        to: &Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        timeout_s: u64,
    ) -> Result<Vec<u8>, SendErrorKind> {
        use hyperware_process_lib as pl;
        let target = pl::Address::new(
            to.node.as_str(),
            pl::ProcessId::new(
                Some(&to.process.process),
                &to.process.package,
                &to.process.publisher,
            ),
        );
        let mut req = pl::Request::to(target).body(body);
        if let Some(bytes) = blob {
            req = req.blob_bytes(bytes);
        }
        match req.send_and_await_response(timeout_s) {
            Ok(Ok(msg)) => Ok(msg.body().to_vec()),
            Ok(Err(e)) if e.kind().is_offline() => Err(SendErrorKind::Offline),
            Ok(Err(_)) | Err(_) => Err(SendErrorKind::Timeout),
        }
    }
}

/// One call: send `req` (and `blob`) to `target`, read the reply as `ApiResult<R>`, and sort
/// the failures into [`ClientError`]s.
fn call_blob<T: Transport, Q: Serialize, R: DeserializeOwned>(
    transport: &mut T,
    our: &NodeId,
    target: &Address,
    timeout_s: u64,
    req: &Q,
    blob: Option<Vec<u8>>,
) -> Result<R, ClientError> {
    let body = transport
        .call_with_blob(target, encode(req), blob, timeout_s)
        .map_err(|kind| match kind {
            SendErrorKind::Timeout if target.node == *our => ClientError::LocalTimeout {
                target: target.clone(),
                timeout_s,
            },
            kind => ClientError::Send(kind),
        })?;
    match try_decode_response::<R>(&body) {
        Ok(answer) => answer.map_err(ClientError::Api),
        Err(e) => Err(ClientError::BadReply(format!(
            "{target} sent a body that is no answer to this call ({e}): {}",
            preview(&body)
        ))),
    }
}

/// The start of a body, for error messages.
fn preview(body: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text}... ({} bytes)", body.len())
    } else {
        text.into_owned()
    }
}

/// `Ok(value)` when `reply` is the answer `pattern`, else [`ClientError::Unexpected`] naming
/// what came instead.
macro_rules! expect_reply {
    ($reply:expr, $pattern:pat => $value:expr) => {
        match $reply {
            $pattern => Ok($value),
            other => Err($crate::client::ClientError::Unexpected(format!(
                "{other:?}"
            ))),
        }
    };
}
pub(crate) use expect_reply;

/// A typed client of the process whose API module is `$api` (its `Request`, `Response` and
/// `PROCESS`), on our node: it holds a [`BaseClient`] aimed at it and derefs to it (for
/// `target` and `timeout_s`), with `call`, `ping` and `info` typed by the process's own
/// `Request` and `Response` (so another valid answer of that process is `Unexpected`).
macro_rules! typed_client {
    ($(#[$doc:meta])* $name:ident, $($api:ident)::+) => {
        $(#[$doc])*
        pub struct $name<T> {
            base: $crate::client::BaseClient<T>,
        }

        impl<T: $crate::client::Transport> $name<T> {
            /// The process on `our_node`.
            pub fn local(our_node: &$crate::ids::NodeId, transport: T) -> Self {
                $name {
                    base: $crate::client::BaseClient::local(
                        our_node,
                        $($api)::+::PROCESS,
                        transport,
                    ),
                }
            }

            fn call(
                &mut self,
                req: &$($api)::+::Request,
            ) -> Result<$($api)::+::Response, $crate::client::ClientError> {
                self.base.call(req)
            }

            pub fn ping(&mut self) -> Result<$crate::api::Pong, $crate::client::ClientError> {
                $crate::client::expect_reply!(
                    self.call(&$($api)::+::Request::Ping {})?,
                    $($api)::+::Response::Pong(p) => p
                )
            }

            pub fn info(
                &mut self,
            ) -> Result<$crate::api::ServiceInfo, $crate::client::ClientError> {
                $crate::client::expect_reply!(
                    self.call(&$($api)::+::Request::Info {})?,
                    $($api)::+::Response::Info(i) => i
                )
            }
        }

        impl<T> std::ops::Deref for $name<T> {
            type Target = $crate::client::BaseClient<T>;
            fn deref(&self) -> &Self::Target {
                &self.base
            }
        }

        impl<T> std::ops::DerefMut for $name<T> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.base
            }
        }
    };
}
pub(crate) use typed_client;

/// Typed `Ping` and `Info`, which every process answers, for any process on any node. Each
/// typed client ([`PresenceClient`], [`SyncClient`], [`NotifyClient`],
/// [`TxClient`](crate::txcoord::TxClient)) holds one and derefs to it, and has its own typed
/// `ping` and `info`.
pub struct BaseClient<T> {
    transport: T,
    our: NodeId,
    target: Address,
    pub timeout_s: u64,
}

impl<T: Transport> BaseClient<T> {
    /// Our `process` (e.g. `"sync"`) on `our_node`.
    pub fn local(our_node: &NodeId, process: &str, transport: T) -> Self {
        Self::new(our_node, Address::ours(our_node, process), transport)
    }

    /// Any process, on any node; `our_node` tells local calls from remote ones.
    pub fn new(our_node: &NodeId, target: Address, transport: T) -> Self {
        BaseClient {
            transport,
            our: our_node.clone(),
            target,
            timeout_s: DEFAULT_TIMEOUT_S,
        }
    }

    pub fn target(&self) -> &Address {
        &self.target
    }

    pub fn ping(&mut self) -> Result<Pong, ClientError> {
        let reply: BaseResponse = self.call(&BaseRequest::Ping {})?;
        expect_reply!(reply, BaseResponse::Pong(p) => p)
    }

    pub fn info(&mut self) -> Result<ServiceInfo, ClientError> {
        let reply: BaseResponse = self.call(&BaseRequest::Info {})?;
        expect_reply!(reply, BaseResponse::Info(i) => i)
    }

    /// One call with `timeout_s`.
    pub(crate) fn call<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        req: &Q,
    ) -> Result<R, ClientError> {
        self.call_within(req, self.timeout_s)
    }

    /// One call with another timeout than `timeout_s`.
    pub(crate) fn call_within<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        req: &Q,
        timeout_s: u64,
    ) -> Result<R, ClientError> {
        call_blob(
            &mut self.transport,
            &self.our,
            &self.target,
            timeout_s,
            req,
            None,
        )
    }

    /// One call with a blob on the request.
    pub(crate) fn call_blob<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        req: &Q,
        blob: Vec<u8>,
    ) -> Result<R, ClientError> {
        call_blob(
            &mut self.transport,
            &self.our,
            &self.target,
            self.timeout_s,
            req,
            Some(blob),
        )
    }
}

typed_client!(
    /// Typed calls to the `presence` process on our node (local-only operations need exactly
    /// that one).
    PresenceClient,
    crate::api::presence
);

impl<T: Transport> PresenceClient<T> {
    /// Join through `bootstrap` (empty: the ones given before). Returns the list in use.
    pub fn join(&mut self, bootstrap: Vec<NodeId>) -> Result<Vec<NodeId>, ClientError> {
        let req = Request::Join { bootstrap };
        expect_reply!(self.call(&req)?, Response::Joining { bootstrap } => bootstrap)
    }

    pub fn leave(&mut self) -> Result<(), ClientError> {
        expect_reply!(self.call(&Request::Leave {})?, Response::Left {} => ())
    }

    pub fn set_info(
        &mut self,
        app_version: &str,
        capabilities: Vec<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<NodeInfo, ClientError> {
        let req = Request::SetInfo {
            app_version: app_version.to_string(),
            capabilities,
            metadata,
        };
        expect_reply!(self.call(&req)?, Response::InfoSet(i) => i)
    }

    /// One page of members and the cursor of the next page.
    pub fn list_nodes(
        &mut self,
        filter: ListFilter,
    ) -> Result<(Vec<NodeView>, Option<NodeId>), ClientError> {
        expect_reply!(
            self.call(&Request::ListNodes(filter))?,
            Response::Nodes { nodes, next_cursor, .. } => (nodes, next_cursor)
        )
    }

    /// Every member matching `filter` and the event `seq` the first page reflected: the
    /// resync of a subscriber that saw a gap in the event `seq`s. Replace the view with
    /// these members, then apply, in order, every event with a `seq` above the one returned
    /// (an event that the later pages already reflect sets the state they show).
    pub fn resync(&mut self, mut filter: ListFilter) -> Result<(Vec<NodeView>, u64), ClientError> {
        let mut all = Vec::new();
        let mut first_seq = None;
        loop {
            let (nodes, next, seq) = expect_reply!(
                self.call(&Request::ListNodes(filter.clone()))?,
                Response::Nodes { nodes, next_cursor, seq } => (nodes, next_cursor, seq)
            )?;
            first_seq.get_or_insert(seq);
            all.extend(nodes);
            match next {
                Some(c) => filter.cursor = Some(c),
                None => return Ok((all, first_seq.unwrap_or(seq))),
            }
        }
    }

    /// Every member matching `filter`, following the pages.
    pub fn all_nodes(&mut self, mut filter: ListFilter) -> Result<Vec<NodeView>, ClientError> {
        let mut all = Vec::new();
        loop {
            let (nodes, next) = self.list_nodes(filter.clone())?;
            all.extend(nodes);
            match next {
                Some(c) => filter.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    pub fn get_node(&mut self, node: &NodeId) -> Result<NodeView, ClientError> {
        expect_reply!(self.call(&Request::GetNode { node: node.clone() })?, Response::Node(v) => v)
    }

    /// Presence events will arrive at the calling process as requests; read them with
    /// [`parse_event`] and answer each (any body). Presence first sends a
    /// `{"Welcome": {"node", "seq"}}` request and answers only once it reached us: at once if
    /// we answer it, after `appreach::HELLO_TIMEOUT_S` (2 s) if we are blocked in this very
    /// call (as with [`ProcessTransport`]).
    pub fn subscribe(&mut self) -> Result<(), ClientError> {
        expect_reply!(self.call(&Request::Subscribe {})?, Response::Subscribed {} => ())
    }

    pub fn unsubscribe(&mut self) -> Result<(), ClientError> {
        expect_reply!(self.call(&Request::Unsubscribe {})?, Response::Unsubscribed {} => ())
    }

    pub fn config(&mut self) -> Result<Config, ClientError> {
        expect_reply!(self.call(&Request::GetConfig {})?, Response::Config(c) => c)
    }

    /// Change some settings: the fields of `patch` that are `Some`.
    pub fn set_config(&mut self, patch: ConfigPatch) -> Result<Config, ClientError> {
        expect_reply!(self.call(&Request::SetConfig(patch))?, Response::Config(c) => c)
    }

    pub fn stats(&mut self) -> Result<PresenceStats, ClientError> {
        expect_reply!(self.call(&Request::Stats {})?, Response::Stats(s) => s)
    }

    /// Network health as presence sees it (reachability from its probes; no breakers).
    pub fn health(&mut self) -> Result<crate::resilience::HealthReport, ClientError> {
        expect_reply!(self.call(&Request::Health {})?, Response::Health(h) => h)
    }
}

typed_client!(
    /// Typed calls to the `sync` process on our node (replicated documents). `GetDataSince`
    /// answers with a blob, which a [`Transport`] does not carry: call it with process_lib
    /// directly and read the blob with `get_blob()`.
    SyncClient,
    crate::api::sync
);

impl<T: Transport> SyncClient<T> {
    /// How long `join` waits: the creator's answer carries the whole snapshot.
    pub const JOIN_TIMEOUT_S: u64 = 35;

    /// Create a document on our node shared with `members` (who are invited).
    pub fn create(
        &mut self,
        name: &str,
        members: Vec<sync::Member>,
    ) -> Result<sync::DocInfo, ClientError> {
        let req = sync::Request::Create {
            name: name.into(),
            members,
        };
        expect_reply!(self.call(&req)?, sync::Response::Created(i) => i)
    }

    /// Add, change (`Some(role)`) or remove (`None`) a member; creator only.
    pub fn set_member(
        &mut self,
        doc: &sync::DocId,
        node: &NodeId,
        role: Option<sync::Role>,
    ) -> Result<sync::DocInfo, ClientError> {
        let req = sync::Request::SetMember {
            doc: doc.clone(),
            node: node.clone(),
            role,
        };
        expect_reply!(self.call(&req)?, sync::Response::MemberSet(i) => i)
    }

    /// Get a document shared with us; returns once its snapshot has arrived.
    pub fn join(&mut self, doc: &sync::DocId) -> Result<sync::DocInfo, ClientError> {
        let req = sync::Request::Join { doc: doc.clone() };
        let reply: sync::Response = self.base.call_within(&req, Self::JOIN_TIMEOUT_S)?;
        expect_reply!(reply, sync::Response::Joined(i) => i)
    }

    pub fn leave(&mut self, doc: &sync::DocId) -> Result<(), ClientError> {
        let req = sync::Request::Leave { doc: doc.clone() };
        expect_reply!(self.call(&req)?, sync::Response::Left {} => ())
    }

    pub fn delete(&mut self, doc: &sync::DocId) -> Result<(), ClientError> {
        let req = sync::Request::Delete { doc: doc.clone() };
        expect_reply!(self.call(&req)?, sync::Response::Deleted {} => ())
    }

    pub fn list(&mut self) -> Result<Vec<sync::DocInfo>, ClientError> {
        expect_reply!(self.call(&sync::Request::List {})?, sync::Response::Docs { docs } => docs)
    }

    /// Apply `ops` once per `op_id` (a retry after a lost answer is safe); `at`: the version
    /// the user saw.
    pub fn edit(
        &mut self,
        doc: &sync::DocId,
        op_id: &str,
        ops: Vec<sync::Op>,
        at: Option<sync::Version>,
    ) -> Result<sync::Edited, ClientError> {
        let req = sync::Request::Edit {
            doc: doc.clone(),
            op_id: op_id.into(),
            ops,
            at,
            utf16: false,
        };
        expect_reply!(self.call(&req)?, sync::Response::Edited(e) => e)
    }

    /// Undo this app's last edit of `doc` (never another app's); `op_id` makes a retry
    /// apply once. An `Err` with code `BadRequest` when there is nothing to undo.
    pub fn undo(
        &mut self,
        doc: &sync::DocId,
        op_id: Option<&str>,
    ) -> Result<sync::Edited, ClientError> {
        let req = sync::Request::Undo {
            doc: doc.clone(),
            op_id: op_id.map(Into::into),
        };
        expect_reply!(self.call(&req)?, sync::Response::Edited(e) => e)
    }

    /// Redo this app's last undone edit of `doc`.
    pub fn redo(
        &mut self,
        doc: &sync::DocId,
        op_id: Option<&str>,
    ) -> Result<sync::Edited, ClientError> {
        let req = sync::Request::Redo {
            doc: doc.clone(),
            op_id: op_id.map(Into::into),
        };
        expect_reply!(self.call(&req)?, sync::Response::Edited(e) => e)
    }

    pub fn read(&mut self, doc: &sync::DocId) -> Result<sync::Content, ClientError> {
        let req = sync::Request::Read { doc: doc.clone() };
        expect_reply!(self.call(&req)?, sync::Response::Content(c) => c)
    }

    /// Receive [`sync::SyncEvent`]s (every document, or `doc`) at the calling address.
    pub fn subscribe(&mut self, doc: Option<sync::DocId>) -> Result<(), ClientError> {
        let req = sync::Request::Subscribe { doc };
        expect_reply!(self.call(&req)?, sync::Response::Subscribed {} => ())
    }

    pub fn stats(&mut self) -> Result<sync::SyncStats, ClientError> {
        expect_reply!(self.call(&sync::Request::Stats {})?, sync::Response::Stats(s) => s)
    }

    /// Set (or renew) this app's caret or selection (code points) and state in `doc`; both
    /// `None` clears them. An entry not set again for 30 s expires.
    pub fn set_awareness(
        &mut self,
        doc: &sync::DocId,
        cursor: Option<sync::AwarenessCursor>,
        state: Option<sync::AwarenessState>,
    ) -> Result<(), ClientError> {
        let req = sync::Request::SetAwareness {
            doc: doc.clone(),
            cursor,
            state,
            utf16: false,
        };
        expect_reply!(self.call(&req)?, sync::Response::AwarenessSet {} => ())
    }

    /// Every live awareness entry of `doc` (this node's apps' too), positions in code points.
    pub fn get_awareness(
        &mut self,
        doc: &sync::DocId,
    ) -> Result<Vec<sync::AwarenessPeer>, ClientError> {
        let req = sync::Request::GetAwareness {
            doc: doc.clone(),
            utf16: false,
        };
        expect_reply!(self.call(&req)?, sync::Response::Awareness(v) => v.peers)
    }

    /// Network health as sync sees it (reachability and breakers of its outbox).
    pub fn health(&mut self) -> Result<crate::resilience::HealthReport, ClientError> {
        expect_reply!(self.call(&sync::Request::Health {})?, sync::Response::Health(h) => h)
    }
}

/// A presence event from the body of a request the subscriber received; None if the body is
/// something else.
pub fn parse_event(body: &[u8]) -> Option<crate::api::presence::PresenceEvent> {
    match serde_json::from_slice::<SubscriberMessage>(body).ok()? {
        SubscriberMessage::PresenceEvent(e) => Some(e),
        SubscriberMessage::Welcome { .. } | SubscriberMessage::Dropped { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{encode_result, ApiResult, ErrorCode};

    fn node(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    /// A transport that answers every call with `reply`.
    fn answering(
        reply: Result<Vec<u8>, SendErrorKind>,
    ) -> impl FnMut(&Address, Vec<u8>, u64) -> Result<Vec<u8>, SendErrorKind> {
        move |_: &Address, _: Vec<u8>, _: u64| reply.clone()
    }

    #[test]
    fn a_local_timeout_says_which_grant_to_check() {
        let alice = node("alice.os");
        let mut presence = PresenceClient::local(&alice, answering(Err(SendErrorKind::Timeout)));
        let err = presence.ping().unwrap_err();
        assert_eq!(
            err,
            ClientError::LocalTimeout {
                target: Address::ours(&alice, "presence"),
                timeout_s: DEFAULT_TIMEOUT_S
            }
        );
        assert_eq!(err.send_kind(), Some(SendErrorKind::Timeout));
        let text = err.to_string();
        assert!(
            text.contains(r#""grant_capabilities": ["presence:p2p-patterns:p2p-patterns.os"]"#),
            "{text}"
        );
        assert!(text.contains("pkg/manifest.json"), "{text}");
        assert_eq!(
            err.hint().as_deref(),
            Some(&text[text.find("the kernel").unwrap()..])
        );

        // Every process names its own grant.
        let mut sync = BaseClient::local(&alice, "sync", answering(Err(SendErrorKind::Timeout)));
        let text = sync.info().unwrap_err().to_string();
        assert!(
            text.contains(r#""grant_capabilities": ["sync:p2p-patterns:p2p-patterns.os"]"#),
            "{text}"
        );
    }

    #[test]
    fn remote_and_offline_failures_carry_no_grant_hint() {
        let alice = node("alice.os");
        let bob_sync = Address::ours(&node("bob.os"), "sync");
        let mut remote = BaseClient::new(&alice, bob_sync, answering(Err(SendErrorKind::Timeout)));
        let err = remote.ping().unwrap_err();
        assert_eq!(err, ClientError::Send(SendErrorKind::Timeout));
        assert_eq!(err.hint(), None);
        let mut offline = PresenceClient::local(&alice, answering(Err(SendErrorKind::Offline)));
        assert_eq!(
            offline.ping().unwrap_err(),
            ClientError::Send(SendErrorKind::Offline)
        );
    }

    #[test]
    fn a_reply_that_is_no_answer_is_a_bad_reply_not_a_refusal() {
        let alice = node("alice.os");
        for body in [
            &b"garbage"[..],
            br#"{"Ok": 5}"#,
            br#""Pong""#,
            br#"{"Ok": {"Dance": {}}}"#,
        ] {
            let mut sync = BaseClient::local(&alice, "sync", answering(Ok(body.to_vec())));
            match sync.ping() {
                Err(ClientError::BadReply(m)) => {
                    assert!(m.contains("sync:p2p-patterns:p2p-patterns.os"), "{m}");
                    assert!(m.contains(&*String::from_utf8_lossy(body)), "{m}");
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
            let mut presence = PresenceClient::local(&alice, answering(Ok(body.to_vec())));
            assert!(
                matches!(presence.ping(), Err(ClientError::BadReply(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // What the process did answer stays what it is: a refusal, or another valid answer.
        let refusal: ApiResult<Pong> = Err(ApiError::forbidden("no"));
        let mut sync = BaseClient::local(&alice, "sync", answering(Ok(encode_result(&refusal))));
        assert!(matches!(sync.ping(), Err(ClientError::Api(e)) if e.code == ErrorCode::Forbidden));
        let left: ApiResult<Response> = Ok(Response::Left {});
        let mut presence = PresenceClient::local(&alice, answering(Ok(encode_result(&left))));
        assert!(matches!(presence.ping(), Err(ClientError::Unexpected(_))));
    }

    #[test]
    fn base_client_reads_pong_and_info() {
        let alice = node("alice.os");
        let pong: ApiResult<BaseResponse> = Ok(BaseResponse::Pong(Pong {
            node: "alice.os".into(),
            protocol_version: 1,
        }));
        let mut c = BaseClient::local(&alice, "txcoord", answering(Ok(encode_result(&pong))));
        assert_eq!(
            c.target().to_string(),
            "alice.os@txcoord:p2p-patterns:p2p-patterns.os"
        );
        assert_eq!(c.ping().unwrap().node, "alice.os");
        assert!(matches!(c.info(), Err(ClientError::Unexpected(_))));
    }
}
