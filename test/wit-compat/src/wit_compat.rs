//! Test-only crate: the types a Hyperware app generates from our WIT (process_lib's
//! `hyperware.wit` plus `api/*.wit`, world `p2p-patterns-p2p-patterns-dot-os-v0`, with serde
//! derives as Hyperware apps use them). `tests/json.rs` checks that they read and write the
//! same JSON as p2p-common's types, for every request and response.

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
