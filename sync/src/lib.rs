//! The `sync` process: replicated documents on the Loro CRDT. Its pure core ([`core`], with
//! the document wrapper [`doc`], the per-peer [`outbox`], live streams [`live`] and chunked
//! transfers [`transfer`]) and, on wasm32, the glue that
//! runs it.

pub mod awareness;
pub mod core;
pub mod doc;
pub mod live;
pub mod outbox;
pub mod transfer;
pub mod undo;
pub mod vecmap;

/// Process name on the node: `sync:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "sync";

p2p_common::process_glue!(core::new);
