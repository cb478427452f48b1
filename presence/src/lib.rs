//! The `presence` process: bootstrap registry, SWIM/Lifeguard membership, discovery and
//! events. Its pure core is [`core`]; on wasm32 the glue below runs it.

pub mod api;
pub mod candidates;
pub mod core;
pub mod detector;
pub mod dissemination;
pub mod events;
pub mod gossip;
pub mod members;
pub mod node;
pub mod regclient;
pub mod registry;
pub mod storage;

/// Process name on the node: `presence:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "presence";

p2p_common::process_glue!(core::new, serve_ui);
