//! Wire types of the `txcoord` process: two-phase commit with presumed abort.
//!
//! Three kinds of bodies:
//! - [`Request`] *local* variants: what local apps send (start, abort, status, list, register
//!   and unregister a resource manager). Strict: an unknown field is a `BadRequest`.
//! - [`Request`] *protocol* variants: what txcoord processes on other nodes send (Prepare,
//!   Commit, Abort, QueryOutcome). Tolerant of unknown fields (newer peers).
//! - [`ManagerMessage`] / [`ManagerAnswer`]: what txcoord sends a local resource manager and
//!   what the manager answers ([`crate::txcoord::Manager`] writes a manager in a few
//!   lines), and [`AppEvent`], the completion event to the app that started a transaction.

use super::wire::wire_enum;
use super::ApiError;
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

/// Process name on every node.
pub const PROCESS: &str = "txcoord";
/// Most participants one transaction may have.
pub const MAX_PARTICIPANTS: usize = 16;
/// Longest operation payload of one participant (bytes).
pub const MAX_OPERATION: usize = 16 * 1024;
/// Longest resource name.
pub const MAX_RESOURCE: usize = 64;
/// Longest reason a manager gives for its vote.
pub const MAX_REASON: usize = 256;
/// Default vote deadline: a participant that has not voted this long after Start counts as no.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Shortest and longest vote deadline a Start may ask for.
pub const MIN_TIMEOUT_MS: u64 = 1_000;
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Most nodes a manager may name in [`Coordinators::Only`].
pub const MAX_COORDINATORS: usize = 64;
/// Largest page of [`Request::List`].
pub const MAX_PAGE: u32 = 500;
pub const DEFAULT_PAGE: u32 = 100;

/// One participant of a transaction: the resource `resource` on node `node`, asked to apply
/// `operation` (opaque to txcoord; the resource manager reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSpec {
    pub node: NodeId,
    pub resource: String,
    #[serde(default)]
    pub operation: String,
}

/// A resource name: 1..=64 bytes of `a-z 0-9 - _ .`
pub fn validate_resource(r: &str) -> Result<(), String> {
    if r.is_empty()
        || r.len() > MAX_RESOURCE
        || !r
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(format!(
            "resource {r:?} must be 1..={MAX_RESOURCE} bytes of a-z, 0-9, '-', '_', '.'"
        ));
    }
    Ok(())
}

/// Who may coordinate transactions on a resource: `RegisterManager`'s `coordinators`. Left
/// out, it is `Only` this node (its own txcoord, i.e. its local apps' transactions): a
/// resource takes transactions from other nodes only if its manager names them, or says
/// `Any`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coordinators {
    /// Only txcoord on these nodes (1..=[`MAX_COORDINATORS`]; name this node too if local
    /// apps may start transactions on the resource).
    Only(Vec<NodeId>),
    /// Txcoord on any node. Then the manager must check each `PrepareTransaction`'s
    /// `coordinator` itself: Hyperware authenticates the sending node, nothing more.
    Any,
}

impl Coordinators {
    /// Sorted, without repeats (as txcoord keeps and reports it).
    pub fn normalized(self) -> Self {
        match self {
            Coordinators::Only(mut v) => {
                v.sort();
                v.dedup();
                Coordinators::Only(v)
            }
            any => any,
        }
    }
    /// Whether txcoord on `node` may coordinate (the list must be normalized).
    pub fn admits(&self, node: &NodeId) -> bool {
        match self {
            Coordinators::Only(v) => v.binary_search(node).is_ok(),
            Coordinators::Any => true,
        }
    }
}

/// A participant's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Vote {
    Yes,
    No,
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Collecting votes (coordinator) / asking the manager to vote (participant).
    Preparing,
    /// Participant only: voted yes, waiting for the decision.
    Prepared,
    /// Decided commit; participants are being told (coordinator) / the manager is (participant).
    Committing,
    /// Decided abort; participants / the manager are being told.
    Aborting,
    /// Finished: every participant acknowledged the commit.
    Committed,
    /// Finished: aborted.
    Aborted,
}

/// This node's role in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Coordinator,
    Participant,
}

/// One participant's vote as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteView {
    pub node: NodeId,
    pub resource: String,
    /// None: no vote yet (at the deadline that counts as no).
    pub vote: Option<Vote>,
    #[serde(default)]
    pub reason: String,
    /// The participant acknowledged the decision.
    #[serde(default)]
    pub acked: bool,
}

/// A transaction as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxStatus {
    pub tx_id: String,
    pub role: Role,
    pub phase: Phase,
    /// Coordinator: every participant's vote. Participant: this node's resource only.
    pub votes: Vec<VoteView>,
    /// Why it aborted, if it did.
    #[serde(default)]
    pub reason: String,
}

/// The decision as a termination query answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Committed,
    Aborted,
    /// Not decided yet (ask again later).
    Pending,
    /// The answering participant has no record of the transaction.
    Unknown,
}

/// A filter for [`Request::List`]; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilter {
    pub phase: Option<Phase>,
    pub role: Option<Role>,
    /// Start after this entry: a previous page's `next_cursor` ("<tx_id> <role>"); a bare
    /// tx id starts after every entry of that transaction.
    pub cursor: Option<String>,
    /// 1..=[`MAX_PAGE`]; [`DEFAULT_PAGE`] if left out.
    pub limit: Option<u32>,
    /// Also list the finished transactions this node coordinated, from its bounded history
    /// (phase `Committed` or `Aborted`, each participant's vote as it ended); left out or
    /// false: only those in progress.
    pub include_finished: Option<bool>,
}

/// Tags of the protocol variants of [`Request`]: they ignore unknown fields.
pub const PROTOCOL_REQUESTS: [&str; 4] = ["Prepare", "Commit", "Abort", "QueryOutcome"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum Request {
    // ----- any caller -----
    Ping {},
    Info {},
    // ----- local apps only -----
    /// Start a transaction coordinated by this node; answered `Started` at once, the decision
    /// comes as an [`AppEvent`] to the caller. `timeout_ms`: vote deadline.
    Start {
        participants: Vec<ParticipantSpec>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Abort a transaction this node coordinates, if it is not decided yet (idempotent:
    /// answers the recorded outcome).
    AbortTx {
        tx_id: String,
    },
    Status {
        tx_id: String,
    },
    List(ListFilter),
    /// Handle Prepare/Commit/Abort of `resource` on this node: txcoord messages the caller.
    /// `coordinators`: whose transactions it takes part in (left out: this node's only).
    RegisterManager {
        resource: String,
        #[serde(default)]
        coordinators: Option<Coordinators>,
    },
    UnregisterManager {
        resource: String,
    },
    // ----- protocol, from txcoord on the coordinator's node only -----
    /// Phase one: vote on `operation` of `resource`. `participants`: every node of the
    /// transaction (for cooperative termination). `deadline_ms`: how long the vote may take.
    Prepare {
        tx_id: String,
        resource: String,
        operation: String,
        participants: Vec<NodeId>,
        deadline_ms: u64,
    },
    /// Phase two.
    Commit {
        tx_id: String,
        resource: String,
    },
    Abort {
        tx_id: String,
        resource: String,
    },
    /// Termination: a prepared participant asks the coordinator or another participant.
    QueryOutcome {
        tx_id: String,
    },
}

wire_enum!(Request, "txcoord request", |tag| !PROTOCOL_REQUESTS
    .contains(&tag));

impl Request {
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            Request::Prepare { .. }
                | Request::Commit { .. }
                | Request::Abort { .. }
                | Request::QueryOutcome { .. }
        )
    }
    pub fn is_open(&self) -> bool {
        matches!(self, Request::Ping {} | Request::Info {})
    }
    /// Range checks of the local API; the error names the rule.
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = ApiError::bad_request;
        match self {
            Request::Start {
                participants,
                timeout_ms,
            } => {
                if participants.is_empty() || participants.len() > MAX_PARTICIPANTS {
                    return Err(bad(format!(
                        "a transaction has 1..={MAX_PARTICIPANTS} participants (got {})",
                        participants.len()
                    )));
                }
                for (i, p) in participants.iter().enumerate() {
                    validate_resource(&p.resource).map_err(bad)?;
                    if p.operation.len() > MAX_OPERATION {
                        return Err(bad(format!(
                            "operation of participant {i} is longer than {MAX_OPERATION} bytes"
                        )));
                    }
                    if participants[..i]
                        .iter()
                        .any(|q| q.node == p.node && q.resource == p.resource)
                    {
                        return Err(bad(format!(
                            "participant {} / {} is listed twice",
                            p.node, p.resource
                        )));
                    }
                }
                if let Some(t) = timeout_ms {
                    if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(t) {
                        return Err(bad(format!(
                            "timeout_ms must be {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS} (got {t})"
                        )));
                    }
                }
                Ok(())
            }
            Request::List(f) => match f.limit {
                Some(l) if !(1..=MAX_PAGE).contains(&l) => Err(bad(format!(
                    "limit must be 1..={MAX_PAGE} (got {l}); leave it out for {DEFAULT_PAGE}"
                ))),
                _ => Ok(()),
            },
            Request::RegisterManager {
                resource,
                coordinators,
            } => {
                validate_resource(resource).map_err(bad)?;
                match coordinators {
                    Some(Coordinators::Only(v)) if v.is_empty() || v.len() > MAX_COORDINATORS => {
                        Err(bad(format!(
                            "coordinators: Only lists 1..={MAX_COORDINATORS} nodes (got {}); \
                             leave it out for this node only, or say \"Any\"",
                            v.len()
                        )))
                    }
                    _ => Ok(()),
                }
            }
            Request::UnregisterManager { resource } => validate_resource(resource).map_err(bad),
            _ => Ok(()),
        }
    }
    pub fn validated(self) -> Result<Self, ApiError> {
        self.validate().map(|()| self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum Response {
    Pong(crate::api::Pong),
    Info(crate::api::ServiceInfo),
    Started {
        tx_id: String,
    },
    Status(TxStatus),
    Transactions {
        transactions: Vec<TxStatus>,
        next_cursor: Option<String>,
    },
    /// The manager is registered; `pending`: decisions and votes it is being asked for now
    /// (transactions it had not finished).
    ManagerRegistered {
        resource: String,
        pending: u32,
        /// Whose transactions it takes part in, as txcoord applies it (sorted).
        coordinators: Coordinators,
    },
    ManagerUnregistered {
        resource: String,
    },
    /// Answer to Prepare.
    Voted {
        tx_id: String,
        vote: Vote,
        #[serde(default)]
        reason: String,
    },
    /// Answer to Prepare while the manager has not voted yet: ask again later.
    Voting {
        tx_id: String,
    },
    /// Answer to Commit and Abort.
    Ack {
        tx_id: String,
        outcome: Outcome,
    },
    /// Answer to QueryOutcome.
    Outcome {
        tx_id: String,
        outcome: Outcome,
    },
}
wire_enum!(Response, "txcoord response", |_tag| false);

/// What txcoord sends a resource manager (a request expecting a [`ManagerAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum ManagerMessage {
    /// After `RegisterManager`, and after txcoord restarts: proves txcoord may message the
    /// app, and asks for the transactions it is in doubt about.
    Hello { resource: String },
    /// Vote on the operation. Before answering Yes, the manager must make sure it can
    /// commit after a crash of its own (its prepared state is durable).
    PrepareTransaction {
        tx_id: String,
        coordinator: NodeId,
        resource: String,
        operation: String,
    },
    /// Apply the prepared operation (may come more than once: idempotent).
    CommitTransaction { tx_id: String, resource: String },
    /// Drop the prepared operation (may come more than once, or without a prepare).
    AbortTransaction { tx_id: String, resource: String },
}
wire_enum!(ManagerMessage, "txcoord manager message", |_tag| false);

/// A manager's answer (inside `{"Ok": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum ManagerAnswer {
    Vote {
        vote: Vote,
        #[serde(default)]
        reason: String,
    },
    /// Commit or abort applied.
    Done {},
    /// Answer to Hello: the transactions the manager voted yes on and has not been told the
    /// outcome of. txcoord aborts those it has no record of (it never voted yes for them).
    InDoubt { tx_ids: Vec<String> },
}
wire_enum!(ManagerAnswer, "txcoord manager answer", |_tag| false);

/// What the app that started a transaction receives when it is decided (a request; any
/// answer will do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum AppEvent {
    TxDecided {
        tx_id: String,
        /// `Committed` or `Aborted`.
        outcome: Outcome,
        votes: Vec<VoteView>,
        #[serde(default)]
        reason: String,
    },
}
wire_enum!(AppEvent, "txcoord event", |_tag| false);

/// The coordinator named in a transaction id (`<node>/<hex>`).
pub fn coordinator_of(tx_id: &str) -> Option<NodeId> {
    let (node, rest) = tx_id.split_once('/')?;
    if rest.is_empty() || rest.len() > 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    NodeId::parse(node).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode_request;

    fn decode(b: &str) -> Result<Request, ApiError> {
        decode_request::<Request>(b.as_bytes(), "txcoord", 1 << 20).and_then(Request::validated)
    }

    #[test]
    fn local_requests_are_strict_and_protocol_tolerant() {
        let e = decode(r#"{"Status": {"tx_id": "a.os/1", "full": true}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `full`"), "{e}");
        let e =
            decode(r#"{"Start": {"participants": [{"node": "a.os", "resource": "r", "op": ""}]}}"#)
                .unwrap_err();
        assert!(e.message.contains("unknown field `op`"), "{e}");
        let r = decode(r#"{"Commit": {"tx_id": "a.os/1", "resource": "r", "trace": 1}}"#).unwrap();
        assert!(r.is_protocol());
        let r: crate::api::ApiResult<Response> = serde_json::from_str(
            r#"{"Ok": {"Ack": {"tx_id": "a.os/1", "outcome": "Committed", "x": 1}}}"#,
        )
        .unwrap();
        assert!(matches!(r, Ok(Response::Ack { .. })));
    }

    #[test]
    fn start_is_range_checked() {
        let e = decode(r#"{"Start": {"participants": []}}"#).unwrap_err();
        assert!(e.message.contains("1..=16 participants"), "{e}");
        let e = decode(r#"{"Start": {"participants": [{"node": "a.os", "resource": "Bad/"}]}}"#)
            .unwrap_err();
        assert!(e.message.contains("resource \"Bad/\""), "{e}");
        let e = decode(
            r#"{"Start": {"participants": [{"node": "a.os", "resource": "r"}, {"node": "a.os", "resource": "r"}]}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("listed twice"), "{e}");
        let e = decode(
            r#"{"Start": {"participants": [{"node": "a.os", "resource": "r"}], "timeout_ms": 5}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("timeout_ms must be"), "{e}");
        decode(r#"{"Start": {"participants": [{"node": "a.os", "resource": "r"}]}}"#).unwrap();
    }

    fn tag(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// `v` without its `null` object members (a request may leave out an optional field).
    fn no_nulls(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as V;
        match v {
            V::Object(m) => V::Object(
                m.into_iter()
                    .filter(|(_, x)| !x.is_null())
                    .map(|(k, x)| (k, no_nulls(x)))
                    .collect(),
            ),
            V::Array(a) => V::Array(a.into_iter().map(no_nulls).collect()),
            x => x,
        }
    }

    /// Every `→` / `←` line of docs/api.md's txcoord section decodes into our types (a
    /// request; a manager message, followed by the manager's answer; the decision event; or a
    /// refused request followed by its exact error) and is written in the shape we send;
    /// every request, response, manager message, manager answer and event has an example.
    #[test]
    fn documented_examples_decode() {
        use crate::api::wire::variant_names;
        use std::collections::BTreeSet;
        let doc = include_str!("../../../docs/api.md");
        let start = doc.find("\n## txcoord").expect("txcoord section") + 1;
        let section = &doc[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        let mut seen: [BTreeSet<String>; 5] = Default::default();
        let (mut refused, mut to_manager) = (None::<ApiError>, false);
        for line in section.lines() {
            if let Some(body) = line.strip_prefix("→ ") {
                assert!(refused.is_none(), "no documented error before {body}");
                let documented: serde_json::Value =
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
                let t = tag(&documented);
                to_manager = false;
                let ours = if let Ok(m) = serde_json::from_str::<ManagerMessage>(body) {
                    to_manager = true;
                    seen[2].insert(t);
                    serde_json::to_value(&m).unwrap()
                } else if let Ok(e) = serde_json::from_str::<AppEvent>(body) {
                    seen[4].insert(t);
                    serde_json::to_value(&e).unwrap()
                } else {
                    match decode(body) {
                        Ok(r) => {
                            assert_eq!(r.is_protocol(), PROTOCOL_REQUESTS.contains(&t.as_str()));
                            seen[0].insert(t);
                            serde_json::to_value(&r).unwrap()
                        }
                        Err(e) => {
                            refused = Some(e);
                            documented.clone()
                        }
                    }
                };
                assert_eq!(
                    no_nulls(documented),
                    no_nulls(ours),
                    "documented body is not the shape we send"
                );
            } else if let Some(body) = line.strip_prefix("← ") {
                let documented: serde_json::Value = serde_json::from_str(body).unwrap();
                let ours = if to_manager {
                    let r: crate::api::ApiResult<ManagerAnswer> = serde_json::from_str(body)
                        .unwrap_or_else(|e| panic!("not a manager answer ({e}): {body}"));
                    if let Ok(a) = &r {
                        seen[3].insert(tag(&serde_json::to_value(a).unwrap()));
                    }
                    serde_json::to_value(&r).unwrap()
                } else {
                    let r: crate::api::ApiResult<Response> = serde_json::from_str(body)
                        .unwrap_or_else(|e| panic!("not a response ({e}): {body}"));
                    if let Some(e) = refused.take() {
                        assert_eq!(r, Err(e), "documented error is not the real one");
                    }
                    if let Ok(resp) = &r {
                        seen[1].insert(tag(&serde_json::to_value(resp).unwrap()));
                    }
                    serde_json::to_value(&r).unwrap()
                };
                assert_eq!(documented, ours, "{body}");
            }
        }
        assert!(
            refused.is_none(),
            "the last refused request has no documented error"
        );
        let all = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let want = [
            all(variant_names::<Request>()),
            all(variant_names::<Response>()),
            all(variant_names::<ManagerMessage>()),
            all(variant_names::<ManagerAnswer>()),
            all(variant_names::<AppEvent>()),
        ];
        for (what, (seen, want)) in [
            "requests",
            "responses",
            "manager messages",
            "manager answers",
            "events",
        ]
        .iter()
        .zip(seen.iter().zip(want.iter()))
        {
            assert_eq!(seen, want, "documented {what}");
        }
    }

    #[test]
    fn tx_ids_name_their_coordinator() {
        assert_eq!(
            coordinator_of("alice.os/00ff").unwrap().to_string(),
            "alice.os"
        );
        for bad in [
            "alice.os",
            "alice.os/",
            "alice.os/zz",
            "/00",
            "alice.os/00/1",
        ] {
            assert!(coordinator_of(bad).is_none(), "{bad}");
        }
    }
}
