//! What presence keeps on disk, and what it writes when.
//!
//! Keyed records: our incarnation and our settings in one forced batch (with the events'
//! number reservation) before anything carries them — a message with the new incarnation,
//! the answer to the app that changed a setting — and one small record per member
//! (`m/<node>`: status, incarnation, wall time of the last status change; no info, it is
//! re-fetched), written lazily: a write costs the change, not the table. [`Storage`] owns
//! the set of members not yet written. The whole-state format of version 1 is still loaded
//! and rewritten as records at once.

use crate::events::Events;
use crate::members::{Members, SavedMember};
use crate::node::{bump, Node};
use p2p_common::api::encode;
use p2p_common::api::presence::{Config, MemberStatus, NodeInfo};
use p2p_common::service::log;
use p2p_common::{Batch, Effect, Level, Millis, NodeId, Records};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

const KEY_INCARNATION: &[u8] = b"inc";
const KEY_STATE: &[u8] = b"state";
const MEMBER_PREFIX: &[u8] = b"m/";
/// Version of the keyed format (the whole-state format before it was version 1).
const STORAGE_VERSION: u32 = 2;

/// What we keep about a member on disk (no info: it is re-fetched).
#[derive(Debug, Serialize, Deserialize)]
struct MemberRecord {
    status: MemberStatus,
    incarnation: u64,
    /// Wall time (Unix ms) of the last status change: retention counts from it across
    /// restarts. 0 = unknown (records written before it existed), counted from the start.
    #[serde(default)]
    since: u64,
}

/// Our own settings on disk. New fields get defaults, so an upgrade never loses state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct StateRecord {
    v: u32,
    info: Option<NodeInfo>,
    left: bool,
    joined: bool,
    bootstrap: Vec<NodeId>,
    config: Config,
}

impl Default for StateRecord {
    fn default() -> Self {
        StateRecord {
            v: STORAGE_VERSION,
            info: None,
            left: false,
            joined: false,
            bootstrap: Vec::new(),
            config: Config::default(),
        }
    }
}

/// The whole-state format of version 1 (before keyed storage): still loaded.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    incarnation: u64,
    info: NodeInfo,
    left: bool,
    joined: bool,
    bootstrap: Vec<NodeId>,
    config: Config,
    members: Vec<SavedMember>,
}

fn member_key(n: &NodeId) -> Vec<u8> {
    let mut key = MEMBER_PREFIX.to_vec();
    key.extend_from_slice(n.as_str().as_bytes());
    key
}

/// Members changed or removed since the last write (written lazily).
#[derive(Debug, Default)]
pub struct Storage {
    dirty: BTreeSet<NodeId>,
}

impl Storage {
    /// `nodes` changed (or were removed) in the member table.
    pub fn changed(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        self.dirty.extend(nodes);
    }

    /// A forced write of our incarnation, settings and the event reservation: on disk
    /// before anything after it (a message carrying the incarnation, the answer to the app
    /// that changed a setting). Members are written lazily ([`Self::member_writes`]).
    pub fn persist<C, T>(node: &Node, events: &Events) -> Effect<C, T> {
        let reservation = events.reservation();
        let state = StateRecord {
            v: STORAGE_VERSION,
            info: Some(node.info.clone()),
            left: node.left,
            joined: node.joined,
            bootstrap: node.bootstrap.clone(),
            config: node.cfg.clone(),
        };
        Effect::Store(
            Batch::forced()
                .put(KEY_INCARNATION, node.incarnation.to_le_bytes().to_vec())
                .put(KEY_STATE, encode(&state))
                .put(reservation.0, reservation.1),
        )
    }

    /// A lazy write of the members that changed: costs the change, not the table.
    pub fn member_writes<C, T>(&mut self, members: &Members, node: &Node) -> Option<Effect<C, T>> {
        if self.dirty.is_empty() {
            return None;
        }
        let mut b = Batch::lazy();
        for n in std::mem::take(&mut self.dirty) {
            let key = member_key(&n);
            b = match members.get(&n) {
                Some(m) => b.put(
                    key,
                    encode(&MemberRecord {
                        status: m.status,
                        incarnation: m.incarnation,
                        since: node.to_wall(m.status_since).saturating_sub(m.carried_ms),
                    }),
                ),
                None => b.delete(key),
            };
        }
        Some(Effect::Store(b))
    }

    /// After a (re)start: our node, the member table and the events from what is on disk,
    /// in whichever format it is. Whether stored settings were loaded (the caller rebuilds
    /// what depends on them).
    pub fn restore<C, T>(
        &mut self,
        persisted: Option<Vec<u8>>,
        records: &Records,
        node: &mut Node,
        members: &mut Members,
        events: &mut Events,
        now: Millis,
        out: &mut Vec<Effect<C, T>>,
    ) -> bool {
        if records.contains_key(KEY_INCARNATION) || records.contains_key(KEY_STATE) {
            restore_records(records, node, members, events, now, out)
        } else {
            self.restore_whole_state(persisted.filter(|p| !p.is_empty()), node, members, now, out)
        }
    }

    /// Whole-state format (version 1), kept loadable so an upgrade loses nothing; it is
    /// rewritten as records at once.
    fn restore_whole_state<C, T>(
        &mut self,
        persisted: Option<Vec<u8>>,
        node: &mut Node,
        members: &mut Members,
        now: Millis,
        out: &mut Vec<Effect<C, T>>,
    ) -> bool {
        match persisted.map(|b| serde_json::from_slice::<Saved>(&b)) {
            Some(Ok(s)) => {
                // A new life: a higher incarnation than anything we said before.
                node.incarnation = bump(s.incarnation);
                node.info = s.info;
                node.left = s.left;
                node.joined = s.joined;
                node.bootstrap = s.bootstrap;
                let settings = s.config.validate().is_ok();
                if settings {
                    node.cfg = s.config;
                }
                members.restore(s.members, &node.me, now);
                self.dirty = members.iter().map(|(n, _)| n.clone()).collect();
                out.push(log(
                    Level::Info,
                    format!(
                        "upgraded whole state to records: {} members, incarnation {}",
                        members.len(),
                        node.incarnation
                    ),
                ));
                settings
            }
            Some(Err(e)) => {
                out.push(log(
                    Level::Error,
                    format!("persisted state unreadable ({e}); starting fresh"),
                ));
                node.incarnation = 1;
                false
            }
            None => {
                node.incarnation = 1;
                false
            }
        }
    }
}

/// Keyed format (version 2).
fn restore_records<C, T>(
    records: &Records,
    node: &mut Node,
    members: &mut Members,
    events: &mut Events,
    now: Millis,
    out: &mut Vec<Effect<C, T>>,
) -> bool {
    let inc = records
        .get(KEY_INCARNATION)
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    // A new life: a higher incarnation than anything we said before.
    node.incarnation = bump(inc);
    let mut settings = false;
    match records
        .get(KEY_STATE)
        .map(|b| serde_json::from_slice::<StateRecord>(b))
    {
        Some(Ok(st)) => {
            if let Some(info) = st.info.filter(|i| i.node_id == node.me) {
                node.info = info;
            }
            node.left = st.left;
            node.joined = st.joined;
            node.bootstrap = st.bootstrap;
            if st.config.validate().is_ok() {
                node.cfg = st.config;
                settings = true;
            }
        }
        Some(Err(e)) => out.push(log(
            Level::Error,
            format!("stored settings unreadable ({e}); keeping defaults"),
        )),
        None => {}
    }
    let mut saved = Vec::new();
    let wall_now = node.to_wall(now);
    for (k, v) in records.range(MEMBER_PREFIX.to_vec()..) {
        let Some(name) = k.strip_prefix(MEMBER_PREFIX) else {
            break;
        };
        let (Ok(name), Ok(rec)) = (
            std::str::from_utf8(name)
                .map_err(|_| ())
                .and_then(|n| NodeId::parse(n).map_err(|_| ())),
            serde_json::from_slice::<MemberRecord>(v),
        ) else {
            continue;
        };
        // A wall clock behind the record (stepped back) counts as no age.
        let age_ms = match rec.since {
            0 => 0,
            since => wall_now.saturating_sub(since),
        };
        saved.push(SavedMember {
            info: NodeInfo::new(name.clone()),
            node: name,
            status: rec.status,
            incarnation: rec.incarnation,
            has_info: false,
            age_ms,
        });
    }
    members.restore(saved, &node.me, now);
    events.restore(records, out);
    out.push(log(
        Level::Info,
        format!(
            "restarted with {} members, {} subscribers, incarnation {}, events from {}",
            members.len(),
            events.subscribers(),
            node.incarnation,
            events.seq() + 1
        ),
    ));
    settings
}

/// What presence on `me` has on disk after it joined through `bootstrap` and learned every
/// node of `members` Alive at `incarnation` (its own incarnation is `incarnation` too once
/// it starts: a start moves one past the stored one). A simulator starts a converged cluster
/// from these records instead of simulating its join (the 1,000-node figures of the bench).
pub fn joined_records(
    me: &NodeId,
    bootstrap: &[NodeId],
    members: &[NodeId],
    incarnation: u64,
) -> Records {
    let state = StateRecord {
        info: Some(NodeInfo::new(me.clone())),
        joined: true,
        bootstrap: bootstrap.iter().filter(|b| *b != me).cloned().collect(),
        ..StateRecord::default()
    };
    let mut r = Records::new();
    r.insert(
        KEY_INCARNATION.to_vec(),
        incarnation.saturating_sub(1).to_le_bytes().to_vec(),
    );
    r.insert(KEY_STATE.to_vec(), encode(&state));
    for n in members.iter().filter(|n| *n != me) {
        let rec = MemberRecord {
            status: MemberStatus::Alive,
            incarnation,
            since: 0,
        };
        r.insert(member_key(n), encode(&rec));
    }
    r
}
