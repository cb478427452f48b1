//! A Hyperware node emulator for tests: several nodes in one process, each running the
//! package's real `pkg/*.wasm` components on wasmtime (component model, WASI 0.2 through
//! the reactor adapter) behind the `hyperware:process/standard@1.0.0` host interface, with
//! the kernel's message semantics of Hyperdrive 1.9.2 (platform notes §3, §6, §6.1):
//!
//! - requests with and without `expects_response`, Timeout after the request's seconds,
//!   Offline for unknown and unreachable nodes and while a node's networking is still down
//!   after a start; contexts come back with responses and errors;
//! - the prompting message (the last request that wants an answer) receives
//!   `send-response`, and an answer restores the prompt saved with its request;
//! - blobs: `get-blob` only for the current message, `last-blob` for the last one seen;
//! - capabilities: networking (sending and receiving remote messages), messaging between
//!   local processes (unless the target is `public`), checked on requests **and** responses;
//! - system processes: `timer:distro:sys`, `sqlite:distro:sys` on real SQLite files, and
//!   process state (`get-state`/`set-state`), kept across process and node restarts.
//!
//! Time is virtual and the scheduler gives one process the turn at a time, so a run is
//! deterministic for a given [`EmuConfig::seed`]: the WASI clocks read the virtual clock
//! and WASI randomness is seeded per process life.
//!
//! ```no_run
//! use p2p_emu::{Emulator, EmuConfig, package::workspace_package_zip};
//! let zip = workspace_package_zip().unwrap();
//! let emu = Emulator::boot(EmuConfig::default(), &zip, &["alice.os", "bob.os"]).unwrap();
//! let r = emu.request(&Emulator::app("alice.os"), &Emulator::ours("bob.os", "presence"), "\"Ping\"", 5);
//! ```

mod bindings;
mod emulator;
mod host;
#[cfg(test)]
mod host_tests;
pub mod http_server;
pub mod ids;
mod kernel;
pub mod kit;
pub mod package;
mod sqlite;
mod vfs;

pub use bindings::wit::{Address, Capability, ProcessId, SendErrorKind};
pub use emulator::{Emulator, DEFAULT_APP};
pub use http_server::{HttpReply, WsFrame};
pub use kernel::{AppMessage, AppSpec, Crash, EmuConfig, LogLine, Reply};
