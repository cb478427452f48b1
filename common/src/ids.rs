//! Node ids, process ids and addresses, validated when they come from user input.
//!
//! Hyperware addresses read `node@process:package:publisher`. The guide takes target node
//! names straight from HTTP bodies; here every id from outside goes through `parse`, which
//! says exactly what is wrong.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Our package and publisher: every process of ours is `<name>:p2p-patterns:p2p-patterns.os`.
pub const PACKAGE: &str = "p2p-patterns";
pub const PUBLISHER: &str = "p2p-patterns.os";

/// Longest node id we accept (a DNS-like name).
pub const MAX_NODE_LEN: usize = 253;
/// Longest label (between dots) of a node id.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest segment of a process id.
pub const MAX_SEGMENT_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty {0}")]
    Empty(&'static str),
    #[error("{what} is {len} characters long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?} contains {ch:?}; allowed are a-z, 0-9, '-'{extra}")]
    BadChar {
        what: &'static str,
        value: String,
        ch: char,
        extra: &'static str,
    },
    #[error("node id {0:?} has an empty label (two dots, or a dot at an end)")]
    EmptyLabel(String),
    #[error("node id {0:?} has a label that starts or ends with '-'")]
    HyphenEdge(String),
    #[error("process id {0:?} must read process:package:publisher (three parts split by ':')")]
    ProcessShape(String),
    #[error("address {0:?} must read node@process:package:publisher (one '@')")]
    AddressShape(String),
}

fn check_len(what: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty(what));
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_chars(what: &'static str, s: &str, allow_dot: bool) -> Result<(), IdError> {
    if let Some(ch) = s.chars().find(|&c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.'))
    }) {
        return Err(IdError::BadChar {
            what,
            value: s.to_string(),
            ch,
            extra: if allow_dot { ", '.'" } else { "" },
        });
    }
    Ok(())
}

/// A node id such as `alice.os`: dot-separated labels of `a-z0-9-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_len("node id", s, MAX_NODE_LEN)?;
        check_chars("node id", s, true)?;
        for label in s.split('.') {
            if label.is_empty() {
                return Err(IdError::EmptyLabel(s.to_string()));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(IdError::TooLong {
                    what: "node id label",
                    len: label.len(),
                    max: MAX_LABEL_LEN,
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(IdError::HyphenEdge(s.to_string()));
            }
        }
        Ok(NodeId(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `process:package:publisher`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId {
    pub process: String,
    pub package: String,
    pub publisher: String,
}

impl ProcessId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return Err(IdError::ProcessShape(s.to_string()));
        }
        for (i, p) in parts.iter().enumerate() {
            let what = ["process name", "package name", "publisher"][i];
            check_len(what, p, MAX_SEGMENT_LEN)?;
            check_chars(what, p, i == 2)?;
        }
        Ok(ProcessId {
            process: parts[0].into(),
            package: parts[1].into(),
            publisher: parts[2].into(),
        })
    }
    /// One of this package's processes, e.g. `ProcessId::ours("presence")`.
    pub fn ours(process: &str) -> Self {
        ProcessId {
            process: process.into(),
            package: PACKAGE.into(),
            publisher: PUBLISHER.into(),
        }
    }
    pub fn is_ours(&self) -> bool {
        self.package == PACKAGE && self.publisher == PUBLISHER
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.process, self.package, self.publisher)
    }
}

/// `node@process:package:publisher`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub node: NodeId,
    pub process: ProcessId,
}

impl Address {
    pub fn new(node: NodeId, process: ProcessId) -> Self {
        Address { node, process }
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let mut it = s.split('@');
        match (it.next(), it.next(), it.next()) {
            (Some(n), Some(p), None) => Ok(Address {
                node: NodeId::parse(n)?,
                process: ProcessId::parse(p)?,
            }),
            _ => Err(IdError::AddressShape(s.to_string())),
        }
    }
    /// An address the Hyperware kernel handed us, taken as it is even where our checks are
    /// stricter than the kernel's (a response must still reach the core waiting for it).
    pub fn from_kernel(node: &str, process: &str, package: &str, publisher: &str) -> Self {
        Address::parse(&format!("{node}@{process}:{package}:{publisher}")).unwrap_or_else(|_| {
            Address {
                node: NodeId(node.to_string()),
                process: ProcessId {
                    process: process.into(),
                    package: package.into(),
                    publisher: publisher.into(),
                },
            }
        })
    }
    /// The same process of ours on another node: `node@<process>:p2p-patterns:p2p-patterns.os`.
    pub fn ours(node: &NodeId, process: &str) -> Self {
        Address::new(node.clone(), ProcessId::ours(process))
    }
    /// Same process, other node.
    pub fn on(&self, node: &NodeId) -> Self {
        Address::new(node.clone(), self.process.clone())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.process)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(NodeId);
string_serde!(ProcessId);
string_serde!(Address);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_ids_parse() {
        assert_eq!(NodeId::parse("alice.os").unwrap().as_str(), "alice.os");
        let a = Address::parse("bob.os@presence:p2p-patterns:p2p-patterns.os").unwrap();
        assert_eq!(a.node.as_str(), "bob.os");
        assert!(a.process.is_ours());
        assert_eq!(
            a.to_string(),
            "bob.os@presence:p2p-patterns:p2p-patterns.os"
        );
    }

    #[test]
    fn bad_ids_say_why() {
        let cases = [
            ("", "empty node id"),
            ("Alice.os", "contains 'A'"),
            ("alice..os", "empty label"),
            ("-alice.os", "starts or ends with '-'"),
            ("alice os", "contains ' '"),
        ];
        for (input, want) in cases {
            let e = NodeId::parse(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        let long = "a".repeat(300);
        assert!(NodeId::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 253"));
        assert!(ProcessId::parse("a:b")
            .unwrap_err()
            .to_string()
            .contains("three parts"));
        assert!(ProcessId::parse("a_b:c:d")
            .unwrap_err()
            .to_string()
            .contains("'_'"));
        assert!(Address::parse("a.os")
            .unwrap_err()
            .to_string()
            .contains("one '@'"));
        assert!(Address::parse("a@b@c:d:e").is_err());
    }

    #[test]
    fn kernel_addresses_are_kept_even_when_stricter_checks_fail() {
        let ok = Address::from_kernel("bob.os", "presence", "p2p-patterns", "p2p-patterns.os");
        assert_eq!(
            ok,
            Address::parse("bob.os@presence:p2p-patterns:p2p-patterns.os").unwrap()
        );
        let odd = Address::from_kernel("Bob_1.os", "my_app", "pkg", "pub.os");
        assert_eq!(odd.to_string(), "Bob_1.os@my_app:pkg:pub.os");
    }

    #[test]
    fn serde_is_a_plain_string_and_validates() {
        let a = Address::ours(&NodeId::parse("carol.os").unwrap(), "sync");
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"carol.os@sync:p2p-patterns:p2p-patterns.os\"");
        assert_eq!(serde_json::from_str::<Address>(&j).unwrap(), a);
        assert!(serde_json::from_str::<NodeId>("\"BAD\"").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(node in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,3}",
                                   p in "[a-z0-9-]{1,12}", k in "[a-z0-9-]{1,12}", u in "[a-z0-9.-]{1,12}") {
            let s = format!("{node}@{p}:{k}:{u}");
            let a = Address::parse(&s).unwrap();
            prop_assert_eq!(a.to_string(), s);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Address::parse(&s);
            let _ = NodeId::parse(&s);
        }
    }
}
