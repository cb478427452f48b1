//! The run's trace. Every event mixes a compact key (time, kind, request id, size) into a
//! SHA-256 digest, so two runs of one seed can be compared cheaply. Readable lines are only
//! formatted when recording (`replay`, or a failing `check` re-run of its seed), which keeps
//! unrecorded runs fast; the digest is the same either way.

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

    pub fn push(&mut self, t: Millis, key: u64, line: impl FnOnce() -> String) {
        self.hasher.update(t.to_le_bytes());
        self.hasher.update(key.to_le_bytes());
        self.lines += 1;
        if let Some(all) = &mut self.all {
            let l = format!("{t:>9} {}", line());
            if self.tail.len() == TAIL {
                self.tail.pop_front();
            }
            self.tail.push_back(l.clone());
            all.push(l);
        }
    }
    pub fn recording(&self) -> bool {
        self.all.is_some()
    }

    /// Hex SHA-256 of every event key so far.
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
