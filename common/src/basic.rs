//! The minimal core every process starts from: it answers `Ping` and `Info` and rejects
//! anything else with a clear error. Services embed [`base_answer`] for those two requests.

use crate::api::{
    decode_request, encode_result, ApiResult, BaseRequest, BaseResponse, Pong, ServiceInfo,
    MAX_REQUEST_BYTES, PACKAGE_VERSION, PROTOCOL_VERSION,
};
use crate::ids::{Address, NodeId};
use crate::service::{log, Effect, Input, Level, Now, Service};

/// The answer to a base request, for any service.
pub fn base_answer(req: &BaseRequest, our: &Address, name: &str) -> BaseResponse {
    match req {
        BaseRequest::Ping {} => BaseResponse::Pong(pong(&our.node)),
        BaseRequest::Info {} => BaseResponse::Info(service_info(name, &our.node)),
    }
}

/// Every process's answer to `Ping` on node `node`.
pub fn pong(node: &NodeId) -> Pong {
    Pong {
        node: node.to_string(),
        protocol_version: PROTOCOL_VERSION,
    }
}

/// Every process's answer to `Info`: process `name` of this package on node `node`.
pub fn service_info(name: &str, node: &NodeId) -> ServiceInfo {
    ServiceInfo {
        name: name.to_string(),
        version: PACKAGE_VERSION.to_string(),
        protocol_version: PROTOCOL_VERSION,
        node: node.to_string(),
    }
}

/// A process that only knows Ping and Info.
pub struct BasicService {
    name: &'static str,
    our: Address,
    /// How many requests it has answered since start (kept in memory only).
    pub answered: u64,
}

impl BasicService {
    pub fn new(name: &'static str, our: Address) -> Self {
        BasicService {
            name,
            our,
            answered: 0,
        }
    }
}

impl Service for BasicService {
    type Ctx = ();
    type Timer = ();

    fn name(&self) -> &'static str {
        self.name
    }

    fn handle(&mut self, _now: Now, input: Input<(), ()>) -> Vec<Effect<(), ()>> {
        match input {
            Input::Start { .. } => vec![log(
                Level::Info,
                format!("{} started on {}", self.name, self.our),
            )],
            Input::Request {
                id,
                from,
                body,
                timeout_s,
                ..
            } => {
                let result: ApiResult<BaseResponse> =
                    decode_request::<BaseRequest>(&body, self.name, MAX_REQUEST_BYTES)
                        .map(|r| base_answer(&r, &self.our, self.name));
                let mut out = Vec::new();
                if let Err(e) = &result {
                    out.push(log(Level::Debug, format!("bad request from {from}: {e}")));
                }
                if timeout_s.is_some() {
                    self.answered += 1;
                    out.push(Effect::reply(id, encode_result(&result)));
                }
                out
            }
            Input::Response { from, .. } => {
                vec![log(Level::Warn, format!("unexpected response from {from}"))]
            }
            Input::SendFailed { target, kind, .. } => vec![log(
                Level::Warn,
                format!("unexpected {kind:?} for {target}"),
            )],
            Input::Http { id, .. } => vec![Effect::HttpReply {
                id,
                status: 404,
                headers: Default::default(),
                body: b"no HTTP API here yet".to_vec(),
            }],
            Input::Timer(())
            | Input::Read { .. }
            | Input::WsOpen { .. }
            | Input::WsMessage { .. }
            | Input::WsClose { .. } => vec![],
        }
    }
}
