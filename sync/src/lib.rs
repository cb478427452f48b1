//! The `sync` process: its pure core ([`core`]) and, on wasm32, the glue that runs it.

pub mod core;

/// Process name on the node: `sync:p2p-patterns:p2p-patterns.os`.
pub const NAME: &str = "sync";

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
