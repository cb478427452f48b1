//! Helpers shared by the txcoord integration tests (api.rs, strangers.rs).

use p2p_common::service::{Effect, Input, Now, Service};
use p2p_common::Address;
use txcoord::core::{Ctx, Eff, TxCoord};

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
