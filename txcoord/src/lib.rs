//! The `txcoord` process: its pure core ([`core`]) and, on wasm32, the glue that runs it.

pub mod coordinator;
pub mod core;
pub mod participant;

/// Process name on the node: `txcoord:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "txcoord";

p2p_common::process_glue!(core::new);
