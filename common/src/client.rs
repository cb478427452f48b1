//! Typed helpers for Rust apps that call our processes.
//!
//! A [`Transport`] sends one request and waits for its response. On a node,
//! [`ProcessTransport`] (wasm32 only) uses process_lib's `send_and_await_response`; tests can
//! plug in anything. The clients turn requests and responses into typed calls:
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

use crate::api::presence::{
    Config, ConfigPatch, ListFilter, NodeInfo, NodeView, PresenceStats, Request, Response,
    SubscriberMessage, PROCESS,
};
use crate::api::{decode_response, encode, ApiError, Pong, ServiceInfo};
use crate::ids::{Address, NodeId};
use crate::service::SendErrorKind;
use std::collections::BTreeMap;
use std::fmt;

/// Default timeout of client calls (seconds).
pub const DEFAULT_TIMEOUT_S: u64 = 10;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The request did not get an answer (Hyperware's Offline / Timeout).
    Send(SendErrorKind),
    /// The process answered with an error.
    Api(ApiError),
    /// The process answered something else than this call expects.
    Unexpected(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Send(k) => write!(f, "no answer: {k:?}"),
            ClientError::Api(e) => write!(f, "{e}"),
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

/// process_lib's blocking `send_and_await_response`. While it waits, other messages to the
/// calling process queue up (they are not lost); do not use it from a process that must keep
/// answering quickly. A process cannot call itself this way (the kernel traps it).
#[cfg(target_arch = "wasm32")]
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
}

/// Typed calls to the `presence` process on our node.
pub struct PresenceClient<T> {
    transport: T,
    target: Address,
    pub timeout_s: u64,
}

impl<T: Transport> PresenceClient<T> {
    /// The presence process on `our_node` (local-only operations need exactly that).
    pub fn local(our_node: &NodeId, transport: T) -> Self {
        PresenceClient {
            transport,
            target: Address::ours(our_node, PROCESS),
            timeout_s: DEFAULT_TIMEOUT_S,
        }
    }

    fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let body = self
            .transport
            .call(&self.target, encode(req), self.timeout_s)
            .map_err(ClientError::Send)?;
        decode_response::<Response>(&body).map_err(ClientError::Api)
    }

    pub fn ping(&mut self) -> Result<Pong, ClientError> {
        match self.call(&Request::Ping {})? {
            Response::Pong(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    pub fn info(&mut self) -> Result<ServiceInfo, ClientError> {
        match self.call(&Request::Info {})? {
            Response::Info(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// Join through `bootstrap` (empty: the ones given before). Returns the list in use.
    pub fn join(&mut self, bootstrap: Vec<NodeId>) -> Result<Vec<NodeId>, ClientError> {
        match self.call(&Request::Join { bootstrap })? {
            Response::Joining { bootstrap } => Ok(bootstrap),
            other => Err(unexpected(other)),
        }
    }

    pub fn leave(&mut self) -> Result<(), ClientError> {
        match self.call(&Request::Leave {})? {
            Response::Left {} => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn set_info(
        &mut self,
        app_version: &str,
        capabilities: Vec<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<NodeInfo, ClientError> {
        match self.call(&Request::SetInfo {
            app_version: app_version.to_string(),
            capabilities,
            metadata,
        })? {
            Response::InfoSet(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// One page of members and the cursor of the next page.
    pub fn list_nodes(
        &mut self,
        filter: ListFilter,
    ) -> Result<(Vec<NodeView>, Option<NodeId>), ClientError> {
        match self.call(&Request::ListNodes(filter))? {
            Response::Nodes { nodes, next_cursor } => Ok((nodes, next_cursor)),
            other => Err(unexpected(other)),
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
        match self.call(&Request::GetNode { node: node.clone() })? {
            Response::Node(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// Presence events will arrive at the calling process as requests; read them with
    /// [`parse_event`].
    pub fn subscribe(&mut self) -> Result<(), ClientError> {
        match self.call(&Request::Subscribe {})? {
            Response::Subscribed {} => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn unsubscribe(&mut self) -> Result<(), ClientError> {
        match self.call(&Request::Unsubscribe {})? {
            Response::Unsubscribed {} => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn config(&mut self) -> Result<Config, ClientError> {
        match self.call(&Request::GetConfig {})? {
            Response::Config(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Change some settings: the fields of `patch` that are `Some`.
    pub fn set_config(&mut self, patch: ConfigPatch) -> Result<Config, ClientError> {
        match self.call(&Request::SetConfig(patch))? {
            Response::Config(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    pub fn stats(&mut self) -> Result<PresenceStats, ClientError> {
        match self.call(&Request::Stats {})? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

/// A presence event from the body of a request the subscriber received; None if the body is
/// something else.
pub fn parse_event(body: &[u8]) -> Option<crate::api::presence::PresenceEvent> {
    match serde_json::from_slice::<SubscriberMessage>(body).ok()? {
        SubscriberMessage::PresenceEvent(e) => Some(e),
        SubscriberMessage::Welcome { .. } => None,
    }
}
