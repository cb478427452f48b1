//! Parsing and printing of the WIT ids (`node@process:package:publisher`), and the few
//! well-known addresses the kernel uses.

use crate::bindings::wit::{Address, Capability, ProcessId};
use anyhow::{bail, Result};
use std::fmt;

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.process_name, self.package_name, self.publisher_node
        )
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.process)
    }
}

fn part_ok(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.'))
}

impl ProcessId {
    /// `process:package:publisher` with process_lib's rules (lowercase, digits, `-`; the
    /// publisher may hold dots).
    pub fn parse(s: &str) -> Result<ProcessId> {
        let parts: Vec<&str> = s.split(':').collect();
        let [p, pkg, publ] = parts.as_slice() else {
            bail!("{s:?} is not a process id (process:package:publisher)");
        };
        if !part_ok(p, false) || !part_ok(pkg, false) || !part_ok(publ, true) {
            bail!("{s:?} is not a process id: use lowercase letters, digits and `-`");
        }
        Ok(ProcessId {
            process_name: p.to_string(),
            package_name: pkg.to_string(),
            publisher_node: publ.to_string(),
        })
    }

    pub fn new(process: &str, package: &str, publisher: &str) -> ProcessId {
        ProcessId {
            process_name: process.into(),
            package_name: package.into(),
            publisher_node: publisher.into(),
        }
    }

    /// `package:publisher`.
    pub fn package_id(&self) -> String {
        format!("{}:{}", self.package_name, self.publisher_node)
    }
}

impl Address {
    /// `node@process:package:publisher` (exactly one `@`).
    pub fn parse(s: &str) -> Result<Address> {
        let Some((node, process)) = s.split_once('@') else {
            bail!("{s:?} is not an address (node@process:package:publisher)");
        };
        if node.is_empty() || process.contains('@') {
            bail!("{s:?} is not an address (node@process:package:publisher)");
        }
        Ok(Address {
            node: node.to_string(),
            process: ProcessId::parse(process)?,
        })
    }

    pub fn new(node: &str, process: ProcessId) -> Address {
        Address {
            node: node.to_string(),
            process,
        }
    }
}

pub(crate) fn kernel_pid() -> ProcessId {
    ProcessId::new("kernel", "distro", "sys")
}
pub(crate) fn timer_pid() -> ProcessId {
    ProcessId::new("timer", "distro", "sys")
}
pub(crate) fn sqlite_pid() -> ProcessId {
    ProcessId::new("sqlite", "distro", "sys")
}
pub(crate) fn vfs_pid() -> ProcessId {
    ProcessId::new("vfs", "distro", "sys")
}
pub(crate) fn http_server_pid() -> ProcessId {
    ProcessId::new("http-server", "distro", "sys")
}
/// `sign:sign:sys`: a process of a bundled package (not a runtime module), not public.
pub(crate) fn sign_pid() -> ProcessId {
    ProcessId::new("sign", "sign", "sys")
}

/// The runtime modules the emulator plays, with their `public` flag (Hyperdrive's values:
/// the timer is public, the database is not). Anything else of `distro:sys` does not exist
/// here, so a local request to it fails at once with Timeout, as a missing process does.
pub(crate) fn system_process(pid: &ProcessId) -> Option<bool> {
    if pid.package_name != "distro" || pid.publisher_node != "sys" {
        return None;
    }
    match pid.process_name.as_str() {
        "timer" => Some(true),
        "sqlite" | "state" | "kernel" | "vfs" | "http-server" => Some(false),
        _ => None,
    }
}

/// The kernel's `"messaging"` capability on `target` (issued by `target`).
pub fn messaging_cap(node: &str, target: &ProcessId) -> Capability {
    Capability {
        issuer: Address::new(node, target.clone()),
        params: "\"messaging\"".into(),
    }
}

/// The kernel's `"network"` capability (`request_networking: true`).
pub fn network_cap(node: &str) -> Capability {
    Capability {
        issuer: Address::new(node, kernel_pid()),
        params: "\"network\"".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print_like_process_lib() {
        let a = Address::parse("alice.os@presence:p2p-patterns:p2p-patterns.os").unwrap();
        assert_eq!(a.node, "alice.os");
        assert_eq!(a.process.process_name, "presence");
        assert_eq!(a.process.package_id(), "p2p-patterns:p2p-patterns.os");
        assert_eq!(
            a.to_string(),
            "alice.os@presence:p2p-patterns:p2p-patterns.os"
        );
        for bad in [
            "alice.os",
            "a@b@c:d:e",
            "@p:q:r",
            "a@p:q",
            "a@P:q:r",
            "a@p_x:q:r",
            "a@p:q.x:r",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn system_processes_have_hyperdrives_public_flags() {
        assert_eq!(system_process(&timer_pid()), Some(true));
        assert_eq!(system_process(&sqlite_pid()), Some(false));
        assert_eq!(system_process(&vfs_pid()), Some(false));
        assert_eq!(system_process(&http_server_pid()), Some(false));
        assert_eq!(
            system_process(&ProcessId::new("eth", "distro", "sys")),
            None
        );
        assert_eq!(
            system_process(&ProcessId::new("timer", "other", "sys")),
            None
        );
    }
}
