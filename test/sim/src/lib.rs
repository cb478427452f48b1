//! p2p-sim: a deterministic multi-node simulator that runs the very cores the WASM processes
//! run, behind the same driver, under a virtual clock and seeded faults.
//!
//! See docs/simulator.md for the model and how a service plugs in its scenarios.

pub mod baseline;
pub mod baseline_2pc;
pub mod doc_examples;
pub mod editing;
pub mod harness;
pub mod net;
pub mod playground;
pub mod playground_rm;
pub mod scenarios;
pub mod sim;
pub mod stats;
pub mod testcore;
pub mod trace;

pub use net::{Latency, Mode, NetConfig};
pub use sim::{
    app_process, factory, node_name, AppOutcome, Factory, Hosted, Node, Sim, SimConfig, SimError,
};
