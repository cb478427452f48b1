//! p2p-common: the one message crate of the p2p-patterns package.
//!
//! - [`ids`]: node ids, process ids and addresses, validated.
//! - [`api`]: the wire envelope (plain tagged-enum JSON), [`api::ApiError`], versions, limits.
//! - [`service`]: the pure-core contract, `handle(now, input) -> effects`.
//! - [`driver`]: the pure half of the shared runner (kernel events in, kernel calls out).
//! - `runner` (wasm32 only): the process_lib loop around [`driver::Driver`].
//! - [`client`]: typed helpers for apps calling our processes ([`client::PresenceClient`]).
//! - [`resilience`]: backoff, retry budget, circuit breaker, reachability, dedup window,
//!   version vectors — pure, with time and randomness passed in.

pub mod api;
pub mod basic;
pub mod client;
pub mod driver;
pub mod ids;
pub mod resilience;
pub mod service;

#[cfg(target_arch = "wasm32")]
pub mod runner;

pub use api::{ApiError, ApiResult, ErrorCode};
pub use ids::{Address, NodeId, ProcessId};
pub use service::{Effect, Input, Level, Millis, SendErrorKind, Service};
