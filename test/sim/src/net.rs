//! Network and fault configuration.

use p2p_common::Millis;

/// Per-link latency: uniform in `[min_ms, max_ms]`, and with probability `spike_p` a spike of
/// `spike_factor` times that.
#[derive(Debug, Clone)]
pub struct Latency {
    pub min_ms: Millis,
    pub max_ms: Millis,
    pub spike_p: f64,
    pub spike_factor: u64,
}

impl Default for Latency {
    fn default() -> Self {
        // Hyperware peers talk over the internet: tens to hundreds of milliseconds.
        Latency {
            min_ms: 20,
            max_ms: 200,
            spike_p: 0.0,
            spike_factor: 10,
        }
    }
}

/// Network behaviour for remote messages (local messages are never lost or duplicated).
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub latency: Latency,
    /// Latency of a message between two processes on one node.
    pub local_latency_ms: Millis,
    /// Probability that a remote message is lost.
    pub loss: f64,
    /// Probability that a remote message is delivered twice.
    pub duplicate: f64,
    /// How long the kernel tries to connect before answering Offline (Hyperware: 5 s).
    pub connect_timeout_ms: Millis,
    /// When a connection breaks, the chance that a message written to it still arrives
    /// (outside FIFO order); otherwise it is lost.
    pub stale_delivery: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Latency::default(),
            local_latency_ms: 1,
            loss: 0.0,
            duplicate: 0.0,
            connect_timeout_ms: 5_000,
            stale_delivery: 0.5,
        }
    }
}
