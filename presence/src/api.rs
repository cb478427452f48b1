//! The local API and the gate every request passes.
//!
//! [`Gate::admit`] decodes and validates a request (strictly: unknown fields in the local
//! API are errors, while peers' messages tolerate them, see `p2p_common::api::presence`),
//! checks who may send it (protocol messages only from presence on another node, local
//! operations only from our node) and charges the sender's budget (a remote node's flood
//! costs a fixed rate of work). It owns the per-sender budgets.
//!
//! [`command`] turns an admitted local operation into a checked [`Command`]: queries are
//! answered at once from the member table ([`list`], [`view`]); operations that change
//! something (`Join`, `Leave`, `SetInfo`, `SetConfig`, subscriptions) come back validated,
//! for the core to carry out across the machines they touch.

use crate::members::Members;
use crate::node::Node;
use p2p_common::api::presence::{
    Config, ListFilter, NodeInfo, NodeView, Request, Response, DEFAULT_PAGE, MAX_PAGE,
};
use p2p_common::api::{decode_request, ApiError, ApiResult, ErrorCode};
use p2p_common::resilience::{BudgetConfig, SenderBudgets};
use p2p_common::service::log;
use p2p_common::{Address, Effect, Level, Millis, NodeId};
use std::collections::BTreeSet;

/// Largest request body presence accepts (full-state exchanges can be large).
pub const MAX_BODY: usize = 4 << 20;
/// Messages per second one remote node may have us handle (steady state is a few per
/// protocol period), and the burst above that.
const INBOUND_PER_SECOND: u32 = 20;
const INBOUND_BURST: u32 = 200;
/// Most bootstrap nodes in a `Join`.
const MAX_BOOTSTRAPS: usize = 16;

/// Decoding, validation, who may call what, and per-sender budgets.
pub struct Gate {
    budgets: SenderBudgets,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            budgets: SenderBudgets::new(BudgetConfig {
                per_second: INBOUND_PER_SECOND,
                burst: INBOUND_BURST,
                max_senders: 4_096,
            }),
        }
    }
}

impl Gate {
    /// The request in `body` from `from`, if `from` may have us handle it now.
    pub fn admit<C, T>(
        &mut self,
        body: &[u8],
        from: &Address,
        our: &Address,
        now: Millis,
        out: &mut Vec<Effect<C, T>>,
    ) -> ApiResult<Request> {
        let req = decode_request(body, "presence", MAX_BODY).and_then(Request::validated)?;
        let local = from.node == our.node;
        let from_peer = !local && from.process == our.process;
        if req.is_protocol() && !from_peer {
            return Err(ApiError::forbidden(
                "protocol message: only presence processes on other nodes may send it",
            ));
        }
        if !local && !self.budgets.allow(&from.node, req.cost(), now) {
            // One sender's flood costs a fixed rate of work, and a few log lines.
            if self.budgets.refused.is_power_of_two() {
                out.push(log(
                    Level::Warn,
                    format!(
                        "{}: over its message budget; refusing ({} refusals so far)",
                        from.node, self.budgets.refused
                    ),
                ));
            }
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many messages from your node; slow down",
            ));
        }
        if !req.is_protocol() && !req.is_open() && !local {
            return Err(ApiError::forbidden(
                "local-only operation: only apps on this node may call it",
            ));
        }
        Ok(req)
    }
}

/// A local (or open) operation, checked.
#[derive(Debug)]
pub enum Command {
    /// A query, answered.
    Answer(Response),
    /// Join through these bootstraps (ourselves left out, deduplicated, at most 16).
    Join(Vec<NodeId>),
    Leave,
    /// Our new info, valid.
    SetInfo(NodeInfo),
    /// The new settings, valid.
    SetConfig(Config),
    /// Subscribe without an answer to wait for (fire-and-forget: no welcome either).
    Subscribe,
    Unsubscribe,
    Stats,
    Health,
}

/// The checked command for `req`, a request that is not a protocol message. `seq`: the
/// number of the last event, which a `ListNodes` answer reflects.
pub fn command(
    req: Request,
    node: &Node,
    members: &Members,
    seq: u64,
    now: Millis,
) -> ApiResult<Command> {
    Ok(match req {
        Request::Ping {} => Command::Answer(Response::Pong(p2p_common::basic::pong(&node.me))),
        Request::Info {} => Command::Answer(Response::Info(p2p_common::basic::service_info(
            crate::NAME,
            &node.me,
        ))),
        Request::Join { bootstrap } => {
            let list = if bootstrap.is_empty() {
                node.bootstrap.clone()
            } else {
                bootstrap
            };
            let list: Vec<NodeId> = list
                .into_iter()
                .filter(|b| b != &node.me)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if list.is_empty() && members.is_empty() {
                return Err(ApiError::bad_request(
                    "Join needs at least one bootstrap node other than ourselves",
                ));
            }
            if list.len() > MAX_BOOTSTRAPS {
                return Err(ApiError::bad_request(format!(
                    "at most {MAX_BOOTSTRAPS} bootstrap nodes"
                )));
            }
            Command::Join(list)
        }
        Request::Leave {} => Command::Leave,
        Request::SetInfo {
            app_version,
            capabilities,
            metadata,
        } => {
            let info = NodeInfo {
                node_id: node.me.clone(),
                app_version,
                capabilities,
                metadata,
                last_seen: 0,
            };
            info.validate().map_err(ApiError::bad_request)?;
            Command::SetInfo(info)
        }
        Request::ListNodes(f) => Command::Answer(list(node, members, seq, f, now)),
        Request::GetNode { node: n } => Command::Answer(
            view(node, members, &n, now)
                .map(Response::Node)
                .ok_or_else(|| ApiError::not_found(format!("no member {n}")))?,
        ),
        Request::Subscribe {} => Command::Subscribe,
        Request::Unsubscribe {} => Command::Unsubscribe,
        Request::GetConfig {} => Command::Answer(Response::Config(node.cfg.clone())),
        Request::SetConfig(patch) => {
            let cfg = patch.apply(&node.cfg);
            cfg.validate().map_err(ApiError::bad_request)?;
            Command::SetConfig(cfg)
        }
        Request::Stats {} => Command::Stats,
        Request::Health {} => Command::Health,
        // The core serves protocol messages itself; none reaches here.
        _ => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "a protocol message is not a local operation",
            ))
        }
    })
}

/// A member (or we) as apps see it: times are Unix ms (wall clock), ours are monotonic.
pub fn view(node: &Node, members: &Members, n: &NodeId, now: Millis) -> Option<NodeView> {
    if n == &node.me {
        let mut info = node.info.clone();
        info.last_seen = node.to_wall(now);
        return Some(NodeView {
            info,
            status: node.status(),
            incarnation: node.incarnation,
            status_since: 0,
            is_self: true,
        });
    }
    let m = members.get(n)?;
    let mut info = m.info.clone();
    info.last_seen = node.to_wall(m.last_seen);
    Some(NodeView {
        info,
        status: m.status,
        incarnation: m.incarnation,
        status_since: node.to_wall(m.status_since).saturating_sub(m.carried_ms),
        is_self: false,
    })
}

/// `ListNodes`: a page of members (and us) in node order, filtered, with the event number
/// it reflects.
pub fn list(node: &Node, members: &Members, seq: u64, f: ListFilter, now: Millis) -> Response {
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    let mut ids: Vec<&NodeId> = members.iter().map(|(n, _)| n).collect();
    ids.push(&node.me);
    ids.sort();
    let mut out = Vec::new();
    let mut next = None;
    for id in ids
        .into_iter()
        .filter(|n| f.cursor.as_ref().is_none_or(|c| *n > c))
    {
        let Some(v) = view(node, members, id, now) else {
            continue;
        };
        if f.status.is_some_and(|s| s != v.status) {
            continue;
        }
        if f.capability
            .as_ref()
            .is_some_and(|c| !v.info.capabilities.contains(c))
        {
            continue;
        }
        if out.len() == limit {
            next = out.last().map(|v: &NodeView| v.info.node_id.clone());
            break;
        }
        out.push(v);
    }
    Response::Nodes {
        nodes: out,
        next_cursor: next,
        seq,
    }
}
