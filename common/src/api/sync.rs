//! Wire types of the `sync` process: replicated documents on the Loro CRDT, their local API,
//! and the messages between sync processes. JSON examples are in docs/api.md (sync section);
//! the design is in docs/sync.md.
//!
//! Local apps use the variants of [`Request`] marked *local*; remote `sync` processes use the
//! *protocol* variants ([`PROTOCOL_REQUESTS`]). Local requests are strict (an unknown field is
//! a `BadRequest` naming it); protocol messages and responses ignore unknown fields, so a
//! newer peer can add some. Loro's binary updates and snapshots travel in the message blob,
//! never inside the JSON.

use super::wire::{self, wire_enum};
use super::ApiError;
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Process name on every node.
pub const PROCESS: &str = "sync";
/// Longest document name (bytes); names are `[a-z0-9._-]`, starting with a letter or digit.
pub const MAX_DOC_NAME: usize = 64;
/// Most members (readers and writers, the creator not counted) a document may have.
pub const MAX_MEMBERS: usize = 64;
/// Most operations in one `Edit`.
pub const MAX_OPS_PER_EDIT: usize = 256;
/// Longest text one `Insert` (or string value) may carry (bytes).
pub const MAX_OP_TEXT: usize = 64 << 10;
/// Longest op id, item id, field, list or counter name (bytes).
pub const MAX_KEY: usize = 128;
/// Most changes one `GetDataSince` page may ask for.
pub const MAX_PAGE: u32 = 10_000;
/// Page size when `GetDataSince` names none.
pub const DEFAULT_PAGE: u32 = 1_000;
/// Largest local request body (bytes).
pub const MAX_LOCAL_REQUEST: usize = 1 << 20;

/// A document: the node that created it (and administers it) and a name unique on that node.
/// On the wire the string `"<creator>/<name>"`, e.g. `"alice.os/notes"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId {
    pub creator: NodeId,
    pub name: String,
}

impl DocId {
    pub fn new(creator: NodeId, name: &str) -> Result<DocId, String> {
        validate_name(name)?;
        Ok(DocId {
            creator,
            name: name.to_string(),
        })
    }
}

/// Check a document name: 1..=[`MAX_DOC_NAME`] bytes of `[a-z0-9._-]`, first a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_DOC_NAME || !first_ok || !name.chars().all(ok_char) {
        return Err(format!(
            "document name {name:?} must be 1..={MAX_DOC_NAME} characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.creator, self.name)
    }
}

impl FromStr for DocId {
    type Err = String;
    fn from_str(s: &str) -> Result<DocId, String> {
        let (creator, name) = s
            .split_once('/')
            .ok_or_else(|| format!("document id {s:?} must be \"<creator node>/<name>\""))?;
        let creator = NodeId::parse(creator).map_err(|e| format!("document id {s:?}: {e}"))?;
        DocId::new(creator, name)
    }
}

impl Serialize for DocId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a member may do. The creator administers (changes members, deletes) and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Reader,
    Writer,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub node: NodeId,
    pub role: Role,
}

/// One entry of a version vector: Loro PeerID `peer` (a u64, written in decimal as a string
/// so JavaScript reads it exactly) has its changes up to, not including, `counter`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionEntry {
    pub peer: String,
    pub counter: u32,
}

/// A document version: a version vector, sorted by peer. The empty list is the empty
/// document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub Vec<VersionEntry>);

impl Version {
    /// `(peer, counter)` pairs; an entry whose peer is not a decimal u64 is an error.
    pub fn pairs(&self) -> Result<Vec<(u64, u32)>, String> {
        self.0
            .iter()
            .map(|e| {
                e.peer
                    .parse::<u64>()
                    .map(|p| (p, e.counter))
                    .map_err(|_| format!("version peer {:?} is not a decimal u64", e.peer))
            })
            .collect()
    }
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, u32)>) -> Version {
        let mut v: Vec<(u64, u32)> = pairs.into_iter().filter(|(_, c)| *c > 0).collect();
        crate::sort::sort_unstable(&mut v);
        Version(
            v.into_iter()
                .map(|(p, c)| VersionEntry {
                    peer: p.to_string(),
                    counter: c,
                })
                .collect(),
        )
    }
}

/// A field or list value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// One edit operation. Text positions count Unicode code points (UTF-16 code units when the
/// `Edit` says `utf16`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Op {
    /// Insert `text` into the document's text at `pos`.
    Insert { pos: u32, text: String },
    /// Delete `len` characters of the text from `pos`.
    Delete { pos: u32, len: u32 },
    /// Set `field` of item `item_id` (items: a map of maps).
    Update {
        item_id: String,
        field: String,
        value: Value,
    },
    /// Remove a whole item.
    RemoveItem { item_id: String },
    /// Insert `value` into list `list` at `index`.
    ListInsert {
        list: String,
        index: u32,
        value: Value,
    },
    /// Delete `len` entries of list `list` from `index`.
    ListDelete { list: String, index: u32, len: u32 },
    /// Add `by` to counter `counter`.
    Increment { counter: String, by: i64 },
}

impl Op {
    fn validate(&self) -> Result<(), String> {
        let key = |what: &str, k: &str| {
            if k.is_empty() || k.len() > MAX_KEY {
                Err(format!("{what} must be 1..={MAX_KEY} bytes"))
            } else {
                Ok(())
            }
        };
        let value = |v: &Value| match v {
            Value::Str(s) if s.len() > MAX_OP_TEXT => {
                Err(format!("a string value is longer than {MAX_OP_TEXT} bytes"))
            }
            Value::Float(f) if !f.is_finite() => Err("a float value must be finite".to_string()),
            _ => Ok(()),
        };
        match self {
            Op::Insert { text, .. } if text.len() > MAX_OP_TEXT => Err(format!(
                "Insert text is {} bytes; at most {MAX_OP_TEXT}",
                text.len()
            )),
            Op::Insert { .. } | Op::Delete { .. } => Ok(()),
            Op::Update {
                item_id,
                field,
                value: v,
            } => {
                key("item_id", item_id)?;
                key("field", field)?;
                value(v)
            }
            Op::RemoveItem { item_id } => key("item_id", item_id),
            Op::ListInsert { list, value: v, .. } => {
                key("list", list)?;
                value(v)
            }
            Op::ListDelete { list, .. } => key("list", list),
            Op::Increment { counter, .. } => key("counter", counter),
        }
    }
}

/// What a document is, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocInfo {
    pub doc: DocId,
    /// Readers and writers; the creator is not listed (it administers and writes).
    pub members: Vec<Member>,
    /// Whether this node holds the document's content (created or joined it).
    pub joined: bool,
    /// This node's role: `null` for the creator.
    pub role: Option<Role>,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub field: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_id: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List {
    pub list: String,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub counter: String,
    pub value: f64,
}

/// A document's content at `version`: the text, the items (sorted by id, fields by name),
/// the lists and the counters (sorted by name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    pub doc: DocId,
    pub text: String,
    pub items: Vec<Item>,
    pub lists: Vec<List>,
    pub counters: Vec<Counter>,
    pub version: Version,
}

/// One Loro change in a `GetDataSince` page: `len` operations by `peer` from `counter`,
/// written by node `author` (when the peer's owner is known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    pub peer: String,
    pub counter: u32,
    pub len: u32,
    pub lamport: u32,
    pub author: Option<NodeId>,
}

/// A page of `GetDataSince`: the changes after `since` up to `version` (the blob is Loro's
/// update encoding of exactly these changes), and whether more follow (ask again with
/// `since = version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPage {
    pub doc: DocId,
    pub since: Version,
    pub version: Version,
    pub changes: Vec<ChangeSummary>,
    pub more: bool,
}

/// The answer to `Edit`: the document's version after it. `duplicate`: this op id was seen
/// before and nothing was applied again (the version is the current one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edited {
    pub doc: DocId,
    pub version: Version,
    pub duplicate: bool,
}

/// Counters of this node's sync process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStats {
    pub docs: u64,
    pub edits: u64,
    pub duplicate_edits: u64,
    pub deltas_sent: u64,
    pub deltas_received: u64,
    pub snapshots_sent: u64,
    pub sync_requests: u64,
    pub imports_refused: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub compactions: u64,
}

/// Where a peer holding a document stands against this node's copy, as far as this node
/// knows (from the versions the peer last sent or acknowledged, and from our sends to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerSyncState {
    /// It has exactly what we have.
    InSync,
    /// It lacks changes we have (they are on their way, or it is offline).
    Behind,
    /// It has changes we lack.
    Ahead,
    /// Each has changes the other lacks.
    Diverged,
    /// Nothing heard from it yet about this document.
    Unknown,
    /// Our recent sends to it failed (offline, or timeouts in a row).
    Unreachable,
}

/// One peer of [`Request::Peers`]' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSync {
    pub node: NodeId,
    pub state: PeerSyncState,
    /// The version it is known to have, if any.
    pub version: Option<Version>,
}

/// The answer to `Peers`: every other node holding the document (the creator and the joined
/// members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPeers {
    pub doc: DocId,
    pub peers: Vec<PeerSync>,
}

/// Events sent to subscribed apps, as requests (any answer is fine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncEvent {
    /// A document changed: by this node's app (`local`) or by changes from `author`.
    Changed {
        doc: DocId,
        author: NodeId,
        local: bool,
        version: Version,
        seq: u64,
    },
    /// `from` (the creator) shared a document with this node; `Join` it to get its content.
    Invited {
        doc: DocId,
        from: NodeId,
        role: Role,
        seq: u64,
    },
    /// This node is no longer a member (removed, or the document was deleted).
    Removed { doc: DocId, seq: u64 },
    /// App `process` on `node` set, cleared or let expire its awareness entry in `doc`
    /// (coalesced: at most one per entry per 100 ms flush); `GetAwareness` says where.
    AwarenessChanged {
        doc: DocId,
        node: NodeId,
        process: String,
        seq: u64,
    },
}

/// How a blob of a protocol message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// Loro's bytes as they are.
    Raw,
    /// Loro's bytes deflated (raw deflate, RFC 1951).
    Deflate,
}

/// Which Loro PeerID belongs to which node (registered with the creator). `frozen`: the
/// node no longer writes; its changes up to this counter (exclusive) stay valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerOwner {
    pub peer: String,
    pub node: NodeId,
    #[serde(default)]
    pub frozen: Option<u32>,
}

/// The creator's word on a document: its members, the nodes holding it, the PeerIDs each
/// writer writes with; `epoch` grows with every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub doc: DocId,
    pub epoch: u64,
    #[serde(deserialize_with = "wire::lenient_facts")]
    pub members: Vec<Member>,
    #[serde(default)]
    pub joined: Vec<NodeId>,
    #[serde(default, deserialize_with = "wire::lenient_facts")]
    pub peers: Vec<PeerOwner>,
}

/// Most bytes one chunked transfer may carry (the wire bytes, before inflating).
pub const MAX_TRANSFER: u64 = 64 << 20;
/// Size of every chunk of a transfer but the last (a chunk travels in one message's blob;
/// Hyperware drops a connection over 10 MiB).
pub const TRANSFER_CHUNK: u32 = 4 << 20;

/// A blob too large for one message, offered in chunks instead: the receiver fetches chunk
/// `i` with [`Request::GetChunk`] and checks it against `digests[i]` (SHA-256, hex). Every
/// chunk but the last has `chunk` bytes; `total` bytes in all, `digests.len()` chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunked {
    pub transfer: u64,
    pub total: u64,
    pub chunk: u32,
    pub digests: Vec<String>,
}

impl Chunked {
    /// Range checks: at most [`MAX_TRANSFER`] bytes, chunks of at least 64 KiB and at most
    /// [`TRANSFER_CHUNK`], a digest per chunk, each 64 hex digits.
    pub fn validate(&self) -> Result<(), String> {
        if self.total == 0 || self.total > MAX_TRANSFER {
            return Err(format!(
                "a transfer carries 1..={MAX_TRANSFER} bytes (offered {})",
                self.total
            ));
        }
        if !(64 << 10..=TRANSFER_CHUNK).contains(&self.chunk) {
            return Err(format!(
                "chunks are 64 KiB..={TRANSFER_CHUNK} bytes (offered {})",
                self.chunk
            ));
        }
        let count = self.total.div_ceil(u64::from(self.chunk));
        if self.digests.len() as u64 != count {
            return Err(format!("{} digests for {count} chunks", self.digests.len()));
        }
        if self
            .digests
            .iter()
            .any(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("a digest is not 64 hex digits".into());
        }
        Ok(())
    }
    pub fn count(&self) -> u32 {
        self.digests.len() as u32
    }
    /// Bytes chunk `index` has.
    pub fn len_of(&self, index: u32) -> u64 {
        let start = u64::from(index) * u64::from(self.chunk);
        self.total.saturating_sub(start).min(u64::from(self.chunk))
    }
}

/// The answer to a protocol `Join`: the ACL and the document (snapshot in the blob, or
/// offered in chunks when too large for one message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub acl: Acl,
    pub version: Version,
    pub encoding: Encoding,
    #[serde(default)]
    pub chunked: Option<Chunked>,
}

/// The answer to `SyncRequest`: the changes the asker lacks (blob), the answerer's version
/// (so the asker can send what the answerer lacks), and the answerer's ACL if the asker's
/// epoch is older. `full_sync_needed`: the blob is a whole snapshot, not a delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAnswer {
    pub doc: DocId,
    pub version: Version,
    #[serde(default)]
    pub full_sync_needed: bool,
    pub encoding: Encoding,
    #[serde(default)]
    pub acl: Option<Acl>,
    /// The blob is offered in chunks (too large for one message).
    #[serde(default)]
    pub chunked: Option<Chunked>,
}

// ----- awareness (ephemeral: who is where in a document; docs/sync.md, "Awareness") -----

/// Most awareness entries one node has per document (one per app process).
pub const MAX_AWARENESS_PER_NODE: usize = 8;
/// Most keys an awareness `state` has, and most bytes of its keys and values together.
pub const MAX_AWARENESS_KEYS: usize = 16;
pub const MAX_AWARENESS_STATE: usize = 1024;
/// Longest encoded Loro cursor on the wire (hex digits).
pub const MAX_WIRE_CURSOR: usize = 128;

/// A caret or selection in a document's text: `anchor` where it started, `head` where the
/// caret is (equal for a caret). Code points, or UTF-16 code units with `utf16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwarenessCursor {
    pub anchor: u32,
    pub head: u32,
}

/// An app's awareness state (its user's name, colour...): string keys and values. On the
/// wire a list of `{"key": .., "value": ..}` records sorted by key (a JSON object is no WIT
/// type), or `null`; the object form `{"name": "alice"}` is read too.
pub type AwarenessState = std::collections::BTreeMap<String, String>;

/// `Option<AwarenessState>` in the JSON of [`wire::metadata`].
mod opt_state {
    use super::AwarenessState;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct List<'a>(&'a AwarenessState);
    impl Serialize for List<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            crate::api::wire::metadata::serialize(self.0, s)
        }
    }
    #[derive(Deserialize)]
    struct Read(
        #[serde(deserialize_with = "crate::api::wire::metadata::deserialize_strict")]
        AwarenessState,
    );
    pub fn serialize<S: Serializer>(v: &Option<AwarenessState>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(List).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<AwarenessState>, D::Error> {
        Ok(Option::<Read>::deserialize(d)?.map(|r| r.0))
    }
}

/// Range checks of a `state`: at most [`MAX_AWARENESS_KEYS`] keys of 1..=64 bytes, at most
/// [`MAX_AWARENESS_STATE`] bytes of keys and values.
pub fn validate_awareness_state(s: &AwarenessState) -> Result<(), String> {
    let bytes: usize = s.iter().map(|(k, v)| k.len() + v.len()).sum();
    if s.len() > MAX_AWARENESS_KEYS || bytes > MAX_AWARENESS_STATE {
        return Err(format!(
            "an awareness state has at most {MAX_AWARENESS_KEYS} keys and {MAX_AWARENESS_STATE} bytes of keys and values (this one: {} keys, {bytes} bytes)",
            s.len()
        ));
    }
    if s.keys().any(|k| k.is_empty() || k.len() > 64) {
        return Err("an awareness state key is 1..=64 bytes".into());
    }
    Ok(())
}

/// One entry of [`Response::Awareness`]: app `process` on `node` has its caret or selection
/// at `cursor` (resolved in this node's current text; `null` if it set none, or while it
/// points at text that has not arrived here yet) and `state`; last set `age_ms` ago.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwarenessPeer {
    pub node: NodeId,
    pub process: String,
    pub cursor: Option<AwarenessCursor>,
    #[serde(default, with = "opt_state")]
    pub state: Option<AwarenessState>,
    pub age_ms: u64,
}

/// The answer to `GetAwareness`: every live entry of the document, this node's apps' too
/// (their `node` is this node), sorted by node and process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwarenessView {
    pub doc: DocId,
    pub peers: Vec<AwarenessPeer>,
}

/// A cursor on the wire: the anchor's and head's Loro cursors (`Cursor::encode`), in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCursor {
    pub anchor: String,
    pub head: String,
}

/// One entry of a protocol `Awareness` message: only ever the sending node's own apps'.
/// `clock` orders an entry's versions (a newer one replaces an older; equal refreshes its
/// age); `age_ms`: how long ago the app set it. Both `cursor` and `state` null: cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwarenessEntry {
    pub node: NodeId,
    pub process: String,
    pub clock: u64,
    pub age_ms: u64,
    #[serde(default)]
    pub cursor: Option<WireCursor>,
    #[serde(default, with = "opt_state")]
    pub state: Option<AwarenessState>,
}

/// Tags of the protocol variants of [`Request`]: they ignore unknown fields.
pub const PROTOCOL_REQUESTS: [&str; 11] = [
    "Invitation",
    "JoinDoc",
    "LeaveDoc",
    "AclUpdate",
    "SyncRequest",
    "Delta",
    "DocDeleted",
    "GetChunk",
    "Awareness",
    "Live",
    "LiveFrames",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum Request {
    // ----- any caller -----
    Ping {},
    Info {},
    // ----- local apps only -----
    /// Create a document on this node (its creator) shared with `members`, who are invited.
    Create {
        name: String,
        members: Vec<Member>,
    },
    /// Add a member, change its role (`role`), or remove it (`role: null`); creator only.
    SetMember {
        doc: DocId,
        node: NodeId,
        role: Option<Role>,
    },
    /// Get a document shared with this node from its creator; answered once it has arrived.
    Join {
        doc: DocId,
    },
    /// Stop holding a document (a member); the creator cannot leave, it deletes.
    Leave {
        doc: DocId,
    },
    /// Delete a document everywhere (creator only).
    Delete {
        doc: DocId,
    },
    /// Every document this node knows (created, joined or invited to).
    List {},
    /// Apply `ops` atomically. `op_id` makes a retry apply once. `at`: the version the app
    /// saw when the user typed; positions are then read in that version.
    Edit {
        doc: DocId,
        op_id: String,
        ops: Vec<Op>,
        #[serde(default)]
        at: Option<Version>,
        #[serde(default)]
        utf16: bool,
    },
    /// The content and its version.
    Read {
        doc: DocId,
    },
    /// The changes after `since` (the empty version if left out), at most `limit` changes
    /// per page, as Loro updates in the blob with a JSON summary.
    GetDataSince {
        doc: DocId,
        #[serde(default)]
        since: Option<Version>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Send [`SyncEvent`]s to the calling address (all documents, or just `doc`).
    Subscribe {
        #[serde(default)]
        doc: Option<DocId>,
    },
    Unsubscribe {},
    Stats {},
    /// Where each other node holding `doc` stands against our copy (read-only).
    Peers {
        doc: DocId,
    },
    // ----- protocol, from other nodes' sync only -----
    /// From the creator: the document is shared with you.
    Invitation {
        doc: DocId,
        role: Role,
    },
    /// To the creator: send me the document; `peer` is the Loro PeerID I will write with.
    JoinDoc {
        doc: DocId,
        #[serde(default)]
        peer: Option<String>,
    },
    /// To the creator: I no longer hold the document.
    LeaveDoc {
        doc: DocId,
    },
    /// From the creator: the ACL changed.
    AclUpdate(Acl),
    /// Anti-entropy: my version; answer with what I lack and your version.
    SyncRequest {
        doc: DocId,
        version: Version,
        #[serde(default)]
        acl_epoch: u64,
    },
    /// Changes for you (blob, or offered in `chunked`); `version` is mine after them.
    /// `stream`: the sender opens a live stream for this document; a receiver that answers
    /// `Ack` with the same `stream` takes the sender's later changes as [`Request::Live`].
    Delta {
        doc: DocId,
        version: Version,
        encoding: Encoding,
        #[serde(default)]
        chunked: Option<Chunked>,
        #[serde(default)]
        stream: Option<u32>,
    },
    /// From the creator: the document was deleted.
    DocDeleted {
        doc: DocId,
    },
    /// Chunk `index` of a transfer the asker was offered (answered with [`Response::Chunk`]
    /// and the chunk in the blob).
    GetChunk {
        doc: DocId,
        transfer: u64,
        index: u32,
    },
    // ----- awareness (local; then protocol) -----
    /// Set (or renew) the calling app's caret or selection and state in `doc`; both `null`
    /// clears them. Positions in code points (UTF-16 with `utf16`).
    SetAwareness {
        doc: DocId,
        cursor: Option<AwarenessCursor>,
        #[serde(default, with = "opt_state")]
        state: Option<AwarenessState>,
        #[serde(default)]
        utf16: bool,
    },
    /// Every live awareness entry of `doc`, positions resolved in the current text.
    GetAwareness {
        doc: DocId,
        #[serde(default)]
        utf16: bool,
    },
    /// To members holding `doc`: the sending node's own awareness entries (one-way).
    Awareness {
        doc: DocId,
        entries: Vec<AwarenessEntry>,
    },
    /// Changes on a live stream a `Delta` opened: the blob is a binary frame (stream id,
    /// sequence number, encoding, then Loro's bytes; see docs/sync.md). Usually one-way;
    /// sent expecting an answer now and then, answered [`Response::LiveAck`].
    Live {},
    /// Frames of several documents' live streams to one peer in one message (a flush): the
    /// blob is the frames, each its length and whether it expects an answer (LEB128: length
    /// times two, plus 1 if it asks), then the frame as in [`Request::Live`]. Sent only to a
    /// peer whose `Ack` said `frames`; answered [`Response::LiveAck`] when any frame asks,
    /// the blob then one version per frame that asked (docs/sync.md, "Live streams").
    LiveFrames {},
    // ----- local apps only (added later) -----
    /// Network health as this process sees it: per known peer, reachability, breaker and
    /// message counts (at most `MAX_HEALTH_PEERS`, see [`crate::resilience::health`]).
    Health {},
    // ----- local apps only (undo and redo) -----
    /// Undo the calling app's last edit of `doc` (its own, never another app's or node's),
    /// as a new change answered like an [`Request::Edit`]. `op_id` makes a retry apply once.
    Undo {
        doc: DocId,
        #[serde(default)]
        op_id: Option<String>,
    },
    /// Redo the calling app's last undone edit of `doc`.
    Redo {
        doc: DocId,
        #[serde(default)]
        op_id: Option<String>,
    },
}

wire_enum!(Request, "sync request", |tag| !PROTOCOL_REQUESTS
    .contains(&tag));

impl Request {
    /// Range checks the types cannot express (local API); the error names the limit.
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::bad_request(m));
        match self {
            Request::Create { name, members } => {
                validate_name(name).map_err(ApiError::bad_request)?;
                if members.len() > MAX_MEMBERS {
                    return bad(format!("at most {MAX_MEMBERS} members"));
                }
                let mut nodes: Vec<&NodeId> = members.iter().map(|m| &m.node).collect();
                crate::sort::sort_unstable(&mut nodes);
                if nodes.windows(2).any(|w| w[0] == w[1]) {
                    return bad("a node is listed twice in members".to_string());
                }
                Ok(())
            }
            Request::Edit { op_id, ops, .. } => {
                if op_id.is_empty() || op_id.len() > MAX_KEY {
                    return bad(format!("op_id must be 1..={MAX_KEY} bytes"));
                }
                if ops.is_empty() || ops.len() > MAX_OPS_PER_EDIT {
                    return bad(format!("an Edit carries 1..={MAX_OPS_PER_EDIT} ops"));
                }
                for (i, op) in ops.iter().enumerate() {
                    op.validate()
                        .map_err(|m| ApiError::bad_request(format!("op {i}: {m}")))?;
                }
                Ok(())
            }
            Request::Undo {
                op_id: Some(op_id), ..
            }
            | Request::Redo {
                op_id: Some(op_id), ..
            } if op_id.is_empty() || op_id.len() > MAX_KEY => {
                bad(format!("op_id must be 1..={MAX_KEY} bytes"))
            }
            Request::GetDataSince { limit: Some(l), .. } if !(1..=MAX_PAGE).contains(l) => bad(
                format!("limit must be 1..={MAX_PAGE} (got {l}); leave it out for {DEFAULT_PAGE}"),
            ),
            Request::SetAwareness {
                state: Some(st), ..
            } => validate_awareness_state(st).map_err(ApiError::bad_request),
            _ => Ok(()),
        }
    }
    /// The request if [`Request::validate`] passes.
    pub fn validated(self) -> Result<Self, ApiError> {
        self.validate().map(|()| self)
    }
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            Request::Invitation { .. }
                | Request::JoinDoc { .. }
                | Request::LeaveDoc { .. }
                | Request::AclUpdate(_)
                | Request::SyncRequest { .. }
                | Request::Delta { .. }
                | Request::DocDeleted { .. }
                | Request::GetChunk { .. }
                | Request::Awareness { .. }
                | Request::Live {}
                | Request::LiveFrames {}
        )
    }
    pub fn is_open(&self) -> bool {
        matches!(self, Request::Ping {} | Request::Info {})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum Response {
    Pong(crate::api::Pong),
    Info(crate::api::ServiceInfo),
    Created(DocInfo),
    MemberSet(DocInfo),
    Joined(DocInfo),
    Left {},
    Deleted {},
    Docs {
        docs: Vec<DocInfo>,
    },
    Edited(Edited),
    Content(Content),
    Data(DataPage),
    Subscribed {},
    Unsubscribed {},
    Stats(SyncStats),
    Peers(DocPeers),
    // ----- protocol answers -----
    JoinAnswer(JoinAnswer),
    SyncAnswer(SyncAnswer),
    /// A Delta was read: the receiver's version after importing it. `stream`: the live
    /// stream the Delta opened is accepted.
    Ack {
        version: Version,
        #[serde(default)]
        stream: Option<u32>,
        /// With `stream`: the receiver takes `LiveFrames`, at most this many frames each.
        #[serde(default)]
        frames: Option<u32>,
    },
    /// A `Live` frame was read; the blob is the receiver's version after importing it, in
    /// Loro's binary version-vector encoding.
    LiveAck {},
    Accepted {},
    /// Chunk `index` of `transfer` (in the blob).
    Chunk {
        transfer: u64,
        index: u32,
    },
    AwarenessSet {},
    Awareness(AwarenessView),
    Health(crate::resilience::HealthReport),
}
wire_enum!(Response, "sync response", |_tag| false);

/// What one sync process answers another: the protocol answers of [`Response`] alone, with
/// the same JSON. A sync process decodes its peers' answers with this (apps decode
/// [`Response`]), so it carries no decoder for answers only apps read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum PeerAnswer {
    JoinAnswer(JoinAnswer),
    SyncAnswer(SyncAnswer),
    Ack {
        version: Version,
        #[serde(default)]
        stream: Option<u32>,
        /// With `stream`: the receiver takes `LiveFrames`, at most this many frames each.
        #[serde(default)]
        frames: Option<u32>,
    },
    LiveAck {},
    Accepted {},
    Chunk {
        transfer: u64,
        index: u32,
    },
}
wire_enum!(PeerAnswer, "sync answer", |_tag| false);

/// The protocol variants of [`Request`] alone, with the same JSON: what a sync process sends
/// another (so it carries no encoder for requests only apps send).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum PeerRequest {
    Invitation {
        doc: DocId,
        role: Role,
    },
    JoinDoc {
        doc: DocId,
        #[serde(default)]
        peer: Option<String>,
    },
    LeaveDoc {
        doc: DocId,
    },
    AclUpdate(Acl),
    SyncRequest {
        doc: DocId,
        version: Version,
        #[serde(default)]
        acl_epoch: u64,
    },
    Delta {
        doc: DocId,
        version: Version,
        encoding: Encoding,
        #[serde(default)]
        chunked: Option<Chunked>,
        #[serde(default)]
        stream: Option<u32>,
    },
    DocDeleted {
        doc: DocId,
    },
    GetChunk {
        doc: DocId,
        transfer: u64,
        index: u32,
    },
    Awareness {
        doc: DocId,
        entries: Vec<AwarenessEntry>,
    },
    Live {},
    LiveFrames {},
}
wire_enum!(PeerRequest, "sync protocol request", |_tag| false);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{decode_request, encode, ErrorCode};

    #[test]
    fn doc_ids_are_creator_slash_name() {
        let d: DocId = "alice.os/notes".parse().unwrap();
        assert_eq!(d.creator.to_string(), "alice.os");
        assert_eq!(serde_json::to_string(&d).unwrap(), r#""alice.os/notes""#);
        for bad in ["notes", "alice.os/", "alice.os/Notes", "alice.os/a b", "/x"] {
            assert!(bad.parse::<DocId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<DocId>(r#""alice.os/-x""#).is_err());
    }

    #[test]
    fn local_requests_are_strict_and_validated() {
        let e = decode_request::<Request>(br#"{"List": {"x": 1}}"#, "sync", 1000).unwrap_err();
        assert!(e.message.contains("unknown field `x`"), "{e}");
        let e = decode_request::<Request>(
            br#"{"Edit": {"doc": "alice.os/n", "op_id": "1", "ops": [{"Insert": {"pos": 0, "text": "a", "z": 1}}]}}"#,
            "sync",
            1000,
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field `z`"), "{e}");
        let r: Request = decode_request(
            br#"{"Edit": {"doc": "alice.os/n", "op_id": "", "ops": []}}"#,
            "sync",
            1000,
        )
        .unwrap();
        assert_eq!(r.validate().unwrap_err().code, ErrorCode::BadRequest);
        let big = Request::Edit {
            doc: "alice.os/n".parse().unwrap(),
            op_id: "1".into(),
            ops: vec![Op::Insert {
                pos: 0,
                text: "x".repeat(MAX_OP_TEXT + 1),
            }],
            at: None,
            utf16: false,
        };
        assert!(big.validate().unwrap_err().message.contains("op 0"));
    }

    #[test]
    fn protocol_messages_tolerate_new_fields() {
        let r: Request = decode_request(
            br#"{"SyncRequest": {"doc": "alice.os/n", "version": [{"peer": "7", "counter": 3}], "future": true}}"#,
            "sync",
            1000,
        )
        .unwrap();
        assert!(r.is_protocol());
        assert_eq!(
            encode(&Request::List {}),
            br#""List""#,
            "a payload-less request is a bare string"
        );
    }

    fn without_nulls(v: serde_json::Value) -> serde_json::Value {
        match v {
            // Null, and `utf16: false` (the default), may be left out.
            serde_json::Value::Object(m) => m
                .into_iter()
                .filter(|(k, v)| !v.is_null() && !(k == "utf16" && v == &serde_json::json!(false)))
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
            serde_json::Value::Array(a) => a.into_iter().map(without_nulls).collect(),
            other => other,
        }
    }

    /// Every `→` / `←` line of docs/api.md's sync section decodes into our types (a request,
    /// or an event sync sends an app) and is written in the shape we send (nulls may be left
    /// out). That each answer is what sync answers is checked by p2p-sim's
    /// `tests/doc_answers.rs`.
    #[test]
    fn documented_examples_decode() {
        let doc = include_str!("../../../docs/api.md");
        let section = &doc[doc.find("\n## sync").expect("sync section")..];
        // Up to the next service's section.
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        let same = |body: &str, ours: serde_json::Value| {
            let documented: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                without_nulls(documented),
                without_nulls(ours.clone()),
                "documented body is not in the shape we send: {body}\nwe send {ours}"
            );
        };
        let (mut requests, mut answers) = (0, 0);
        let mut refused: Option<ApiError> = None;
        for line in section.lines() {
            if let Some(body) = line.strip_prefix("→ ") {
                requests += 1;
                assert!(refused.is_none(), "no documented error before {body}");
                let ours = match decode_request::<Request>(body.as_bytes(), "sync", 1 << 20) {
                    Ok(r) => serde_json::to_value(&r).unwrap(),
                    Err(e) => match serde_json::from_str::<SyncEvent>(body) {
                        Ok(ev) => serde_json::to_value(&ev).unwrap(),
                        // A request sync refuses while decoding: the next answer is that error.
                        Err(_) => {
                            refused = Some(e);
                            serde_json::from_str(body).unwrap()
                        }
                    },
                };
                same(body, ours);
            } else if let Some(body) = line.strip_prefix("← ") {
                answers += 1;
                let r: crate::api::ApiResult<Response> =
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
                if let Some(e) = refused.take() {
                    assert_eq!(
                        r,
                        Err(e),
                        "the documented error is not the one decoding gives"
                    );
                }
                same(body, serde_json::to_value(&r).unwrap());
            }
        }
        assert!(
            requests >= 15 && answers >= 12,
            "{requests} requests, {answers} answers"
        );
    }

    #[test]
    fn peer_answers_are_the_protocol_responses_json() {
        let v = Version::from_pairs([(7, 3)]);
        let acl = Acl {
            doc: "alice.os/n".parse().unwrap(),
            epoch: 2,
            members: vec![],
            joined: vec![],
            peers: vec![],
        };
        let chunked = Chunked {
            transfer: 9,
            total: 5 << 20,
            chunk: 4 << 20,
            digests: vec!["ab".repeat(32), "cd".repeat(32)],
        };
        assert_eq!(chunked.validate(), Ok(()));
        let pairs = [
            (
                Response::JoinAnswer(JoinAnswer {
                    acl: acl.clone(),
                    version: v.clone(),
                    encoding: Encoding::Raw,
                    chunked: Some(chunked.clone()),
                }),
                PeerAnswer::JoinAnswer(JoinAnswer {
                    acl,
                    version: v.clone(),
                    encoding: Encoding::Raw,
                    chunked: Some(chunked),
                }),
            ),
            (
                Response::Ack {
                    version: v.clone(),
                    stream: None,
                    frames: None,
                },
                PeerAnswer::Ack {
                    version: v.clone(),
                    stream: None,
                    frames: None,
                },
            ),
            (
                Response::Ack {
                    version: v.clone(),
                    stream: Some(3),
                    frames: Some(64),
                },
                PeerAnswer::Ack {
                    version: v,
                    stream: Some(3),
                    frames: Some(64),
                },
            ),
            (Response::LiveAck {}, PeerAnswer::LiveAck {}),
            (Response::Accepted {}, PeerAnswer::Accepted {}),
            (
                Response::Chunk {
                    transfer: 9,
                    index: 1,
                },
                PeerAnswer::Chunk {
                    transfer: 9,
                    index: 1,
                },
            ),
        ];
        for (r, p) in pairs {
            let body = crate::api::encode_result::<Response>(&Ok(r));
            assert_eq!(
                body,
                crate::api::encode_result::<PeerAnswer>(&Ok(p.clone()))
            );
            assert_eq!(crate::api::decode_response::<PeerAnswer>(&body), Ok(p));
        }
        // An answer only apps read is no peer answer.
        let body = crate::api::encode_result::<Response>(&Ok(Response::Left {}));
        assert!(crate::api::decode_response::<PeerAnswer>(&body).is_err());
    }

    #[test]
    fn peer_requests_are_the_protocol_requests_json() {
        let doc: DocId = "alice.os/n".parse().unwrap();
        let v = Version::from_pairs([(7, 3)]);
        let pairs = [
            (
                PeerRequest::Invitation {
                    doc: doc.clone(),
                    role: Role::Writer,
                },
                Request::Invitation {
                    doc: doc.clone(),
                    role: Role::Writer,
                },
            ),
            (
                PeerRequest::JoinDoc {
                    doc: doc.clone(),
                    peer: Some("5".into()),
                },
                Request::JoinDoc {
                    doc: doc.clone(),
                    peer: Some("5".into()),
                },
            ),
            (
                PeerRequest::LeaveDoc { doc: doc.clone() },
                Request::LeaveDoc { doc: doc.clone() },
            ),
            (
                PeerRequest::SyncRequest {
                    doc: doc.clone(),
                    version: v.clone(),
                    acl_epoch: 2,
                },
                Request::SyncRequest {
                    doc: doc.clone(),
                    version: v.clone(),
                    acl_epoch: 2,
                },
            ),
            (
                PeerRequest::Delta {
                    doc: doc.clone(),
                    version: v.clone(),
                    encoding: Encoding::Deflate,
                    chunked: None,
                    stream: Some(2),
                },
                Request::Delta {
                    doc: doc.clone(),
                    version: v,
                    encoding: Encoding::Deflate,
                    chunked: None,
                    stream: Some(2),
                },
            ),
            (PeerRequest::Live {}, Request::Live {}),
            (PeerRequest::LiveFrames {}, Request::LiveFrames {}),
            (
                PeerRequest::DocDeleted { doc: doc.clone() },
                Request::DocDeleted { doc: doc.clone() },
            ),
            (
                PeerRequest::GetChunk {
                    doc: doc.clone(),
                    transfer: 3,
                    index: 0,
                },
                Request::GetChunk {
                    doc: doc.clone(),
                    transfer: 3,
                    index: 0,
                },
            ),
            (
                PeerRequest::Awareness {
                    doc: doc.clone(),
                    entries: vec![entry()],
                },
                Request::Awareness {
                    doc,
                    entries: vec![entry()],
                },
            ),
        ];
        assert_eq!(pairs.len() + 1, PROTOCOL_REQUESTS.len(), "AclUpdate below");
        // A live frame's body is the bare tag (its header is in the blob); a newer peer's
        // fields are ignored.
        assert_eq!(encode(&PeerRequest::Live {}), br#""Live""#);
        let r: Request = decode_request(br#"{"Live": {"later": 1}}"#, "sync", 1 << 20).unwrap();
        assert_eq!(r, Request::Live {});
        // An old peer's Delta and Ack (no stream) still decode.
        let r: Request = decode_request(
            br#"{"Delta": {"doc": "alice.os/n", "version": [], "encoding": "Raw"}}"#,
            "sync",
            1 << 20,
        )
        .unwrap();
        assert!(matches!(r, Request::Delta { stream: None, .. }), "{r:?}");
        assert_eq!(
            crate::api::decode_response::<PeerAnswer>(br#"{"Ok":{"Ack":{"version":[]}}}"#),
            Ok(PeerAnswer::Ack {
                version: Version::default(),
                stream: None,
                frames: None
            })
        );
        for (p, r) in pairs {
            let body = encode(&p);
            assert_eq!(body, encode(&r));
            let back: Request = decode_request(&body, "sync", 1 << 20).unwrap();
            assert_eq!(back, r);
        }
    }

    fn entry() -> AwarenessEntry {
        AwarenessEntry {
            node: NodeId::parse("bob.os").unwrap(),
            process: "my-app:my-app:someone.os".into(),
            clock: 5,
            age_ms: 20,
            cursor: Some(WireCursor {
                anchor: "00".into(),
                head: "01".into(),
            }),
            state: Some([("name".to_string(), "Bob".to_string())].into()),
        }
    }

    #[test]
    fn awareness_state_is_a_string_map_read_as_list_or_object_and_bounded() {
        let list = br#"{"SetAwareness": {"doc": "alice.os/n", "cursor": {"anchor": 1, "head": 3}, "state": [{"key": "name", "value": "Alice"}]}}"#;
        let object = br#"{"SetAwareness": {"doc": "alice.os/n", "cursor": {"anchor": 1, "head": 3}, "state": {"name": "Alice"}}}"#;
        let a: Request = decode_request(list, "sync", 1000).unwrap();
        let b: Request = decode_request(object, "sync", 1000).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            encode(&a),
            br#"{"SetAwareness":{"doc":"alice.os/n","cursor":{"anchor":1,"head":3},"state":[{"key":"name","value":"Alice"}],"utf16":false}}"#
        );
        let cleared: Request = decode_request(
            br#"{"SetAwareness": {"doc": "alice.os/n", "cursor": null, "state": null}}"#,
            "sync",
            1000,
        )
        .unwrap();
        assert!(
            matches!(
                cleared,
                Request::SetAwareness {
                    cursor: None,
                    state: None,
                    ..
                }
            ),
            "{cleared:?}"
        );
        // Strict: an unknown field in the cursor is refused; too big a state too.
        let e = decode_request::<Request>(
            br#"{"SetAwareness": {"doc": "alice.os/n", "cursor": {"anchor": 1, "head": 1, "x": 0}, "state": null}}"#,
            "sync",
            1000,
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field `x`"), "{e}");
        let big = Request::SetAwareness {
            doc: "alice.os/n".parse().unwrap(),
            cursor: None,
            state: Some([("k".to_string(), "v".repeat(MAX_AWARENESS_STATE))].into()),
            utf16: false,
        };
        assert!(big.validate().unwrap_err().message.contains("at most"));
        let many = Request::SetAwareness {
            doc: "alice.os/n".parse().unwrap(),
            cursor: None,
            state: Some(
                (0..=MAX_AWARENESS_KEYS)
                    .map(|i| (format!("k{i}"), String::new()))
                    .collect(),
            ),
            utf16: false,
        };
        assert!(many.validate().is_err());
        let ok = Request::SetAwareness {
            doc: "alice.os/n".parse().unwrap(),
            cursor: None,
            state: Some([("name".to_string(), "x".repeat(100))].into()),
            utf16: false,
        };
        assert_eq!(ok.validate(), Ok(()));
        // A protocol entry tolerates new fields.
        let r: Request = decode_request(
            br#"{"Awareness": {"doc": "alice.os/n", "entries": [{"node": "bob.os", "process": "p:p:x.os", "clock": 1, "age_ms": 0, "cursor": null, "state": null, "colour": 1}], "later": 2}}"#,
            "sync",
            1000,
        )
        .unwrap();
        assert!(r.is_protocol());
    }

    #[test]
    fn chunked_offers_are_range_checked() {
        let ok = Chunked {
            transfer: 1,
            total: 9 << 20,
            chunk: 4 << 20,
            digests: vec!["00".repeat(32); 3],
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.count(), 3);
        assert_eq!(ok.len_of(2), 1 << 20);
        let bad = [
            Chunked {
                total: MAX_TRANSFER + 1,
                ..ok.clone()
            },
            Chunked {
                total: 0,
                ..ok.clone()
            },
            Chunked {
                chunk: 1,
                ..ok.clone()
            },
            Chunked {
                chunk: TRANSFER_CHUNK + 1,
                ..ok.clone()
            },
            Chunked {
                digests: vec!["00".repeat(32); 2],
                ..ok.clone()
            },
            Chunked {
                digests: vec!["zz".repeat(32); 3],
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }

    #[test]
    fn versions_are_sorted_decimal_pairs() {
        let v = Version::from_pairs([(u64::MAX, 2), (5, 1), (9, 0)]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"[{"peer":"5","counter":1},{"peer":"18446744073709551615","counter":2}]"#
        );
        assert_eq!(v.pairs().unwrap(), vec![(5, 1), (u64::MAX, 2)]);
        let bad = Version(vec![VersionEntry {
            peer: "x".into(),
            counter: 1,
        }]);
        assert!(bad.pairs().is_err());
    }
}
