//! p2p-common: the one message crate of the p2p-patterns package.
//!
//! - [`ids`]: node ids, process ids and addresses, validated.
//! - [`api`]: the wire envelope (plain tagged-enum JSON), [`api::ApiError`], versions, limits.
//! - [`service`]: the pure-core contract (v2), `handle(now, input) -> effects`, with typed
//!   contexts and timers, replying later, keyed storage, blobs, HTTP and WebSocket.
//! - [`driver`]: the pure half of the shared runner (kernel events in, kernel calls out).
//! - [`host`]: carrying out kernel calls in order on a host (durability ordering).
//! - [`http`]: the mapping to and from Hyperware's http-server.
//! - [`web`]: every service's local API over HTTP (`POST /api`) and its events on `/ws`.
//! - [`sign`]: `sign:sign:sys` wire types (node-key signatures) and, natively, its model.
//! - [`chunk`]: sending data larger than one message.
//! - [`appreach`]: confirming that we can message an app before promising it anything.
//! - `runner` (wasm32 only): the process_lib loop around [`driver::Driver`].
//! - [`client`]: typed helpers for apps calling our processes ([`client::PresenceClient`]).
//! - [`txcoord`]: the typed txcoord client and the resource-manager helper.
//! - [`resilience`]: backoff, retry budget, circuit breaker, reachability, dedup window,
//!   version vectors, inbound budgets, own network health — pure, with time and
//!   randomness passed in.

pub mod api;
pub mod appreach;
pub mod basic;
pub mod chunk;
pub mod client;
pub mod driver;
pub mod host;
pub mod http;
pub mod ids;
pub mod resilience;
pub mod service;
pub mod sign;
pub mod sort;
pub mod txcoord;
pub mod web;

#[cfg(target_arch = "wasm32")]
pub mod runner;

pub use api::{ApiError, ApiResult, ErrorCode};
pub use ids::{Address, NodeId, ProcessId};
pub use service::{
    Batch, Effect, Expect, Input, Level, Millis, Now, Records, RequestId, SendErrorKind, Service,
};

/// The whole wasm32 glue of one of our processes: WIT bindings, the `init` export, and the
/// shared runner around the core built by `$make` (`fn(Address) -> impl Service`).
/// Expands to nothing on other targets, where the crate is just its pure core. The calling
/// crate depends on `hyperware_process_lib` and `wit-bindgen` for wasm32 (kit needs each
/// process crate to generate its own bindings). `process_glue!(core::new, serve_ui)` also
/// serves the package's page (presence does: see docs/api.md).
#[macro_export]
macro_rules! process_glue {
    ($make:path) => {
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
            $crate::runner::run(our, $make);
        }
    };
    // The same, and the process serves the package's page (`pkg/ui`) first.
    ($make:path, serve_ui) => {
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
            let _ui = $crate::runner::serve_ui();
            $crate::runner::run(our, $make);
        }
    };
}
