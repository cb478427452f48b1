//! The run's trace: a digest of every line (for determinism checks), the last lines (for
//! failure reports), and optionally all lines (for `replay`).

use p2p_common::Millis;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

const TAIL: usize = 60;

pub struct Trace {
    hasher: Sha256,
    lines: u64,
    tail: VecDeque<String>,
    all: Option<Vec<String>>,
}

impl Trace {
    pub fn new(record_all: bool) -> Self {
        Trace {
            hasher: Sha256::new(),
            lines: 0,
            tail: VecDeque::with_capacity(TAIL),
            all: record_all.then(Vec::new),
        }
    }

    pub fn push(&mut self, t: Millis, line: String) {
        let l = format!("{t:>9} {line}");
        self.hasher.update(l.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(l.clone());
        if let Some(all) = &mut self.all {
            all.push(l);
        }
    }

    /// Hex SHA-256 of every line so far.
    pub fn digest(&self) -> String {
        let d = self.hasher.clone().finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
    pub fn lines(&self) -> u64 {
        self.lines
    }
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
    /// Every line, when recording was asked for.
    pub fn all(&self) -> Option<&[String]> {
        self.all.as_deref()
    }
}
