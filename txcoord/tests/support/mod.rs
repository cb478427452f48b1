//! Helpers shared by the txcoord integration tests (api.rs, strangers.rs, table.rs).

use p2p_common::api::txcoord::Response;
use p2p_common::api::ApiResult;
use p2p_common::service::{Effect, Input, Now, RequestId, Service};
use p2p_common::{Address, NodeId};
use txcoord::core::{Ctx, Eff, TxCoord};

/// A started txcoord on `node` with nothing on disk.
#[allow(dead_code)] // strangers.rs boots its own
pub fn core(node: &str) -> TxCoord {
    let mut c = txcoord::core::new(Address::ours(&NodeId::parse(node).unwrap(), "txcoord"));
    c.handle(
        Now::at(0),
        Input::Start {
            persisted: None,
            records: Default::default(),
            seed: 1,
        },
    );
    c
}

/// Send `body` from `from` at 1 s: the effects, and the answer if one came at once.
pub fn ask(c: &mut TxCoord, from: &str, body: &str) -> (Vec<Eff>, Option<ApiResult<Response>>) {
    let eff = c.handle(
        Now::at(1_000),
        Input::Request {
            id: RequestId(9),
            from: Address::parse(from).unwrap(),
            body: body.as_bytes().to_vec(),
            blob: None,
            timeout_s: Some(5),
        },
    );
    let answer = eff.iter().find_map(|e| match e {
        Effect::Reply {
            id: RequestId(9),
            body,
            ..
        } => Some(serde_json::from_slice(body).unwrap()),
        _ => None,
    });
    (eff, answer)
}

/// The requests (with an expected answer) among `eff`: target, body, context.
pub fn sends(eff: &[Eff]) -> Vec<(Address, String, Ctx)> {
    eff.iter()
        .filter_map(|e| match e {
            Effect::Send {
                to,
                body,
                expect: Some(x),
                ..
            } => Some((
                to.clone(),
                String::from_utf8_lossy(body).to_string(),
                x.ctx.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// The answer `body` to the request sent with `ctx`.
pub fn respond(c: &mut TxCoord, ctx: Ctx, body: Vec<u8>) -> Vec<Eff> {
    c.handle(
        Now::at(2_000),
        Input::Response {
            from: Address::parse("x.os@a:b:c.os").unwrap(),
            body,
            blob: None,
            ctx,
        },
    )
}
