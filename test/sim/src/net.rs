//! Network and fault configuration, in two modes.
//!
//! - **Realistic** (the default): what Hyperware does (platform notes §6). A live connection
//!   loses nothing; loss comes from connection breaks (messages written to a broken connection
//!   vanish, queued ones fail Offline); opening a connection costs a round trip; connections
//!   are recycled every 30 minutes; a node keeps at most 32 peer connections; a message over
//!   10 MiB tears its connection down; networking answers Offline for 15–20 s after a
//!   restart; capabilities are checked on requests and responses; responses restore the
//!   prompting message.
//! - **Hostile**: all of that, plus independent per-message loss and duplication.

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

/// Which network a run models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Realistic,
    Hostile,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Realistic, Mode::Hostile];
    pub fn name(self) -> &'static str {
        match self {
            Mode::Realistic => "realistic",
            Mode::Hostile => "hostile",
        }
    }
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "realistic" => Some(Mode::Realistic),
            "hostile" => Some(Mode::Hostile),
            _ => None,
        }
    }
}

/// Hyperware's `MESSAGE_MAX_SIZE`.
pub const MAX_MESSAGE_BYTES: usize = 10_485_800;

/// Network behaviour for remote messages (local messages are never lost or duplicated).
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub latency: Latency,
    /// Latency of a message between two processes on one node.
    pub local_latency_ms: Millis,
    /// Probability that a remote message is lost (hostile mode).
    pub loss: f64,
    /// Probability that a remote message is delivered twice (hostile mode).
    pub duplicate: f64,
    /// How long the kernel tries to connect before answering Offline (Hyperware: 5 s).
    pub connect_timeout_ms: Millis,
    /// When a connection breaks, the chance that a message written to it still arrives
    /// (outside FIFO order); otherwise it is lost.
    pub stale_delivery: f64,
    /// Opening a connection costs a round trip before the first message goes.
    pub setup_round_trip: bool,
    /// Connections are closed this long after they opened (Hyperware: 30 min).
    pub recycle_ms: Option<Millis>,
    /// Peer connections a node keeps (Hyperware: 32); the least recently used is culled.
    pub max_peers: Option<usize>,
    /// A message larger than this tears its connection down.
    pub max_message_bytes: Option<usize>,
    /// After a restart, networking answers Offline for this long (drawn in the range).
    pub boot_offline_ms: Option<(Millis, Millis)>,
    /// Also at the very first boot of a run.
    pub first_boot_offline: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig::realistic()
    }
}

impl NetConfig {
    /// What Hyperware does.
    pub fn realistic() -> Self {
        NetConfig {
            latency: Latency::default(),
            local_latency_ms: 1,
            loss: 0.0,
            duplicate: 0.0,
            connect_timeout_ms: 5_000,
            stale_delivery: 0.5,
            setup_round_trip: true,
            recycle_ms: Some(1_800_000),
            max_peers: Some(32),
            max_message_bytes: Some(MAX_MESSAGE_BYTES),
            boot_offline_ms: Some((15_000, 20_000)),
            first_boot_offline: false,
        }
    }
    /// Realistic plus independent loss and duplication.
    pub fn hostile(loss: f64, duplicate: f64) -> Self {
        NetConfig {
            loss,
            duplicate,
            ..NetConfig::realistic()
        }
    }
    /// The configuration of `mode` (hostile with 5% loss and 2% duplication).
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Realistic => NetConfig::realistic(),
            Mode::Hostile => NetConfig::hostile(0.05, 0.02),
        }
    }
}
