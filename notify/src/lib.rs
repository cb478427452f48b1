//! The `notify` process: its pure core ([`core`]), composed of [`streams`], [`outbox`],
//! [`relay`], [`apps`], [`catchup`], [`liveness`] and [`withhold`], and, on wasm32, the glue that runs it.

pub mod apps;
pub mod catchup;
pub mod core;
pub mod liveness;
#[cfg(test)]
mod liveness_tests;
pub mod outbox;
pub mod relay;
pub mod streams;
pub mod withhold;

/// Process name on the node: `notify:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "notify";

p2p_common::process_glue!(core::new);
