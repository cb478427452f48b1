//! The `presence` process: bootstrap registry, SWIM/Lifeguard membership, discovery and
//! events. Its pure core is [`core`]; on wasm32 the glue below runs it.

pub mod core;
pub mod gossip;
pub mod members;
pub mod registry;

/// Process name on the node: `presence:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "presence";

#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../target/wit",
    world: "p2p-patterns-p2p-patterns-dot-os-v0",
    generate_unused_types: true,
});

#[cfg(target_arch = "wasm32")]
use hyperware_process_lib::Address;

#[cfg(target_arch = "wasm32")]
hyperware_process_lib::call_init!(init);

#[cfg(target_arch = "wasm32")]
fn init(our: Address) {
    p2p_common::runner::run(our, core::new);
}
