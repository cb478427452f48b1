//! The `notify` process: its pure core ([`core`]) and, on wasm32, the glue that runs it.

pub mod core;

/// Process name on the node: `notify:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "notify";

p2p_common::process_glue!(core::new);
