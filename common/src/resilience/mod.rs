//! The resilience kit: pure building blocks, time (`now: Millis`) and randomness (`&mut impl
//! RngCore`) passed in by the caller.
//!
//! - [`backoff`]: exponential backoff with jitter, retry policy with attempt cap and deadline.
//! - [`budget`]: token-bucket retry budget, so retries add bounded extra load.
//! - [`breaker`]: circuit breaker, and a bounded per-node map of them.
//! - [`capped`]: the bounded per-node map breakers, reachability and traffic counts use.
//! - [`reachability`]: per-node reachability and RTT-based timeouts from send outcomes.
//! - [`dedup`]: bounded idempotency windows (seen-before, and remembered replies).
//! - [`vv`]: version vectors for causality and delta sync.
//! - [`inbound`]: per-sender token buckets, item caps, member-only gating of remote input.
//! - [`health`]: the `Health` answer (reachability, breaker, message counts per peer).
//! - [`nethealth`]: whether a failure to reach peers is ours (just started, contradicted).

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod capped;
pub mod dedup;
pub mod health;
pub mod inbound;
pub mod nethealth;
pub mod reachability;
pub mod vv;

pub use backoff::{Backoff, Jitter, RetryPolicy};
pub use breaker::{BreakerConfig, BreakerState, Breakers, CircuitBreaker, Rejected};
pub use budget::RetryBudget;
pub use capped::CappedMap;
pub use dedup::{DedupCache, DedupWindow};
pub use health::{BreakerStatus, HealthReport, PeerHealth, Traffic};
pub use inbound::{members_only, take_capped, BudgetConfig, SenderBudgets};
pub use nethealth::{NetHealth, NetHealthConfig};
pub use reachability::{PeerStats, Reachability, ReachabilityConfig, Status};
pub use vv::{Causality, VersionVector};
