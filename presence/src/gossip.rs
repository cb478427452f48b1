//! Facts waiting to be gossiped. Each is sent a bounded number of times (retransmit limit),
//! the least-sent first; a newer fact about a node replaces older ones, except that several
//! nodes' suspicions of one node are kept apart (they are Lifeguard's confirmations).

use p2p_common::api::presence::{MemberStatus, Update};
use p2p_common::NodeId;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Entry {
    update: Update,
    sent: u32,
    /// Insertion order, to break ties oldest-first and keep selection deterministic.
    order: u64,
}

/// (node, origin for suspicions / None for the node's one current fact).
type Key = (NodeId, Option<NodeId>);

#[derive(Debug, Default)]
pub struct Broadcasts {
    queue: BTreeMap<Key, Entry>,
    next: u64,
}

impl Broadcasts {
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queue a fact. An Alive/Dead/Left fact replaces every queued fact about its node; a
    /// suspicion replaces only the same origin's.
    pub fn push(&mut self, update: Update) {
        let key = match update.status {
            MemberStatus::Suspect => (update.node.clone(), Some(update.origin.clone())),
            _ => {
                let node = update.node.clone();
                self.queue.retain(|(n, _), _| n != &node);
                (node, None)
            }
        };
        if update.status == MemberStatus::Suspect {
            self.queue.remove(&(update.node.clone(), None));
        }
        self.next += 1;
        self.queue.insert(
            key,
            Entry {
                update,
                sent: 0,
                order: self.next,
            },
        );
    }

    /// Up to `max` facts to send now, the least-sent first; facts about `first` (the probe
    /// target) go ahead of all others. Each chosen fact counts one transmission and leaves
    /// the queue after `limit` of them.
    pub fn take(&mut self, max: usize, limit: u32, first: Option<&NodeId>) -> Vec<Update> {
        if max == 0 || self.queue.is_empty() {
            return Vec::new();
        }
        let mut keys: Vec<(bool, u32, u64, Key)> = self
            .queue
            .iter()
            .map(|(k, e)| (Some(&k.0) != first, e.sent, e.order, k.clone()))
            .collect();
        keys.sort();
        let mut out = Vec::with_capacity(max.min(keys.len()));
        for (_, _, _, k) in keys.into_iter().take(max) {
            let e = self.queue.get_mut(&k).expect("key from the queue");
            e.sent += 1;
            out.push(e.update.clone());
            if e.sent >= limit.max(1) {
                self.queue.remove(&k);
            }
        }
        out
    }

    /// Whether a fact about `node` is waiting.
    pub fn has(&self, node: &NodeId) -> bool {
        self.queue.keys().any(|(n, _)| n == node)
    }
}

/// How many times each fact is sent: `mult × ceil(log10(n + 1))`, at least once.
pub fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let l = ((n as f64) + 1.0).log10().ceil() as u32;
    (mult * l.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(node: &str, status: MemberStatus, inc: u64, origin: &str) -> Update {
        Update {
            node: NodeId::parse(node).unwrap(),
            status,
            incarnation: inc,
            info: None,
            origin: NodeId::parse(origin).unwrap(),
        }
    }

    #[test]
    fn newer_facts_replace_and_suspicions_stack() {
        let mut b = Broadcasts::default();
        b.push(up("a.os", MemberStatus::Alive, 1, "a.os"));
        b.push(up("a.os", MemberStatus::Suspect, 1, "x.os"));
        b.push(up("a.os", MemberStatus::Suspect, 1, "y.os"));
        assert_eq!(
            b.len(),
            2,
            "the suspicions replaced the alive fact and stack by origin"
        );
        b.push(up("a.os", MemberStatus::Alive, 2, "a.os"));
        assert_eq!(b.len(), 1, "the refutation replaced both");
    }

    #[test]
    fn each_fact_is_sent_limit_times_least_sent_first() {
        let mut b = Broadcasts::default();
        b.push(up("a.os", MemberStatus::Alive, 1, "a.os"));
        b.push(up("b.os", MemberStatus::Alive, 1, "b.os"));
        let mut sent = 0;
        while !b.is_empty() {
            let got = b.take(1, 3, None);
            assert_eq!(got.len(), 1);
            sent += 1;
        }
        assert_eq!(sent, 6);
        b.push(up("a.os", MemberStatus::Alive, 1, "a.os"));
        b.push(up("c.os", MemberStatus::Alive, 1, "c.os"));
        let c = NodeId::parse("c.os").unwrap();
        assert_eq!(
            b.take(1, 3, Some(&c))[0].node,
            c,
            "facts about the probe target go first"
        );
    }

    #[test]
    fn retransmit_limit_grows_with_log_n() {
        assert_eq!(retransmit_limit(4, 0), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
    }
}
