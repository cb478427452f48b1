//! Every request → response example in README.md and docs/api.md is what a real core
//! answers. Each `→` line (a request body; `→ request ← response` on one line is a pair too)
//! is sent, exactly as written, to a real core behind the shared driver (the
//! [`p2p_sim::harness`]), and the `←` line that follows is compared with the answer as JSON.
//! A `→` line holding a `Welcome` or `PresenceEvent` is a request presence sends the app: it
//! is compared with the next one the app received.
//!
//! The lines of a section run as one session, in order, against one core, so each example
//! shows the state the ones before it left (see [`SECTIONS`]). Where an example needs more
//! than the app's own calls (members, a death), the test plays the other nodes first: the
//! [`Hook`]s, each named after the line it prepares. A `←` line after the first one under
//! the same request is another answer it can get; each has its recipe in
//! [`alternative_answer`].
//!
//! Normalization (what may differ between the documented and the real answer):
//! - Timestamps (`last_seen`, `status_since`, `at`) are Unix ms of the session's wall
//!   clock: a documented 0 must be 0; any other documented value stands for "a time of this
//!   session", so the answer must lie between the session's start and now (a core reporting
//!   its monotonic clock, or 0, fails).
//! - `Stats` counters depend on a node's history (hours of probing): the same counters must
//!   be there, each a number; their values are not compared.
//! - The "Every process" examples show presence's answers; for sync, notify and txcoord the
//!   process name in `"name"` and in "not a presence request" is that process's.
//! - Elisions (README): `...` as an object member stands for the other fields, as an array
//!   element for further elements, and inside a string for any text.
//! - A field whose real value is `null` may be left out.
//!
//! Everything else is compared exactly: node names (each session's nodes are the ones its
//! examples name), incarnations (a fresh node starts at 1; every step is in the session),
//! sequence numbers, messages, settings.
//!
//! A request with no documented answer must succeed: `{"Ok": ...}`, or for presence's one-way
//! messages `{"Ok": "Accepted"}` (docs/api.md says so). A `Subscribe` whose documented answer
//! is `Forbidden` for an app comes from that app, whose kernel refuses presence's messages.
//!
//! Nothing is skipped: an example no session covers, a hook whose line is gone, or a
//! second `←` without a recipe fails the test.

use p2p_common::api::presence::{Config, MemberStatus, NodeInfo};
use p2p_common::api::OLDEST_PROTOCOL_VERSION;
use p2p_common::{Address, NodeId};
use p2p_sim::harness::{presence_of, update, AppSide, Harness, PROCESSES, WALL_START};
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents checked.
const FILES: [&str; 2] = ["README.md", "docs/api.md"];

/// How the lines under a heading run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Ping, Info and bad requests, sent to each of our four processes on a fresh alice.os
    /// by the app alice.os@my-app:my-app:someone.os.
    EveryProcess,
    /// presence's local operations: alice.os's presence, called by alice.os's app, with the
    /// hooks of the file.
    Local,
    /// presence's protocol messages: a fresh alice.os's presence, called by bob.os's.
    Protocol,
    /// sync's local operations: alice.os's sync, called by alice.os's app.
    SyncLocal,
    /// sync's protocol messages: a fresh alice.os's sync, called by bob.os's.
    SyncProtocol,
    /// notify's section: its examples carry blobs and need two nodes and sign:sign:sys, so
    /// they run on simulated nodes in `tests/notify.rs`
    /// (`documented_notify_examples_are_what_notify_answers`), not here.
    Notify,
    /// txcoord's section: it needs three nodes and a resource manager, so it runs on
    /// simulated nodes in `tests/txcoord.rs`
    /// (`documented_txcoord_examples_are_what_txcoord_answers`), not here.
    Txcoord,
}

/// Which session the examples under each heading (file, heading text) belong to.
const SECTIONS: &[(&str, &str, Session)] = &[
    ("README.md", "API", Session::EveryProcess),
    (
        "README.md",
        "presence: who is out there, and who is gone",
        Session::Local,
    ),
    ("docs/api.md", "Every process", Session::EveryProcess),
    ("docs/api.md", "presence", Session::Local),
    ("docs/api.md", "Join and leave", Session::Local),
    ("docs/api.md", "Our own NodeInfo", Session::Local),
    ("docs/api.md", "Discovery", Session::Local),
    ("docs/api.md", "Events", Session::Local),
    ("docs/api.md", "Settings and counters", Session::Local),
    (
        "docs/api.md",
        "Protocol messages (presence to presence)",
        Session::Protocol,
    ),
    ("docs/api.md", "sync", Session::SyncLocal),
    ("docs/api.md", "Documents and edits", Session::SyncLocal),
    ("docs/api.md", "Awareness", Session::SyncLocal),
    (
        "docs/api.md",
        "Protocol messages (sync to sync)",
        Session::SyncProtocol,
    ),
    ("docs/api.md", "notify", Session::Notify),
    ("docs/api.md", "Topics and publishing", Session::Notify),
    ("docs/api.md", "Subscribing", Session::Notify),
    (
        "docs/api.md",
        "Protocol messages (notify to notify)",
        Session::Notify,
    ),
    ("docs/api.md", "txcoord", Session::Txcoord),
    ("docs/api.md", "Resource managers", Session::Txcoord),
    ("docs/api.md", "Transactions", Session::Txcoord),
    (
        "docs/api.md",
        "Protocol messages (txcoord to txcoord)",
        Session::Txcoord,
    ),
];

const OUR: &str = "alice.os";
const APP: &str = "alice.os@my-app:my-app:someone.os";

fn app() -> Address {
    Address::parse(APP).unwrap()
}

fn info(node: &str, app_version: &str, capabilities: &[&str]) -> NodeInfo {
    let mut i = NodeInfo::new(NodeId::parse(node).unwrap());
    i.app_version = app_version.into();
    i.capabilities = capabilities.iter().map(|c| c.to_string()).collect();
    i
}

/// What the test does, as other nodes, before the first example line containing `before`.
struct Hook {
    file: &'static str,
    before: &'static str,
    what: &'static str,
    run: fn(&mut Harness),
}

const HOOKS: &[Hook] = &[
    // README.md's presence session.
    Hook {
        file: "README.md",
        before: r#"{"ListNodes""#,
        what: "bob.os (app 1.0.0, capability chat) and carol.os speak for themselves",
        run: |h| {
            h.probe_from("bob.os", OUR, 3, Some(info("bob.os", "1.0.0", &["chat"])));
            h.probe_from("carol.os", OUR, 1, None);
        },
    },
    Hook {
        file: "README.md",
        before: r#""kind": "NodeDead", "node": "bob.os""#,
        what: "carol.os tells alice.os that bob.os is dead",
        run: |h| {
            h.gossip_from(
                "carol.os",
                OUR,
                vec![update("bob.os", MemberStatus::Dead, 3, "carol.os")],
            );
        },
    },
    // docs/api.md's presence session.
    Hook {
        file: "docs/api.md",
        before: r#"{"ListNodes""#,
        what: "bob.os (app 2.1.0, capability chat, incarnation 3) and carol.os speak for \
               themselves; bob.os then suspects carol.os",
        run: |h| {
            h.probe_from("bob.os", OUR, 3, Some(info("bob.os", "2.1.0", &["chat"])));
            h.probe_from("carol.os", OUR, 1, None);
            h.gossip_from(
                "bob.os",
                OUR,
                vec![update("carol.os", MemberStatus::Suspect, 1, "bob.os")],
            );
        },
    },
    Hook {
        file: "docs/api.md",
        before: r#""kind": "NodeJoined", "node": "dave.os""#,
        what: "dave.os speaks for itself",
        run: |h| {
            h.probe_from("dave.os", OUR, 1, None);
        },
    },
    Hook {
        file: "docs/api.md",
        before: r#""kind": "NodeDead", "node": "dave.os""#,
        what: "bob.os tells alice.os that dave.os is dead",
        run: |h| {
            h.gossip_from(
                "bob.os",
                OUR,
                vec![update("dave.os", MemberStatus::Dead, 1, "bob.os")],
            );
        },
    },
];

/// One `→` or `←` line of a document.
#[derive(Debug, Clone)]
struct Line {
    file: &'static str,
    no: usize,
    heading: String,
    text: String,
}

impl Line {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.no)
    }
}

/// A request and the answers documented for it.
#[derive(Debug, Clone)]
struct Step {
    request: (Line, String),
    answers: Vec<(Line, String)>,
}

/// Every `→` / `←` line inside a code block, with the heading it is under.
fn example_lines(file: &'static str) -> Vec<Line> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let mut heading = String::new();
    let mut fence: Option<String> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            let mark: String = t.chars().take_while(|c| *c == '`' || *c == '~').collect();
            match &fence {
                None => fence = Some(mark),
                Some(open) if t.trim_end() == open => fence = None,
                Some(_) => {}
            }
            continue;
        }
        match &fence {
            None => {
                if let Some(h) = line.strip_prefix('#') {
                    heading = h.trim_start_matches('#').trim().to_string();
                }
            }
            Some(_) => {
                if line.starts_with("→ ") || line.starts_with("← ") {
                    out.push(Line {
                        file,
                        no: i + 1,
                        heading: heading.clone(),
                        text: line.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// Whether a `→` line is a request presence sends the app (not one sent to presence).
fn to_the_app(request: &str) -> bool {
    documented(request).is_ok_and(|v| matches!(tag(&v).as_str(), "Welcome" | "PresenceEvent"))
}

/// The lines as steps: a `→` line starts one (`→ request ← answer` is a whole step), each
/// `←` line adds an answer to the last request sent to the process (a request to the app
/// in between, such as the welcome, arrives while presence holds that answer).
fn steps(lines: &[Line]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for l in lines {
        if let Some(rest) = l.text.strip_prefix("→ ") {
            let (req, answer) = match rest.split_once(" ← ") {
                Some((q, a)) => (q.trim(), Some(a.trim())),
                None => (rest.trim(), None),
            };
            steps.push(Step {
                request: (l.clone(), req.to_string()),
                answers: answer
                    .map(|a| vec![(l.clone(), a.to_string())])
                    .unwrap_or_default(),
            });
        } else if let Some(a) = l.text.strip_prefix("← ") {
            let last = steps
                .iter_mut()
                .rev()
                .find(|s| !to_the_app(&s.request.1))
                .unwrap_or_else(|| panic!("{}: an answer without a request", l.at()));
            last.answers.push((l.clone(), a.trim().to_string()));
        }
    }
    steps
}

// ----- documented JSON, with elisions -----

const ELIDED: &str = "...";

/// Parse a documented body: JSON in which `...` may stand for more members, elements or
/// text (see the module docs). Text after the value is a comment.
fn documented(text: &str) -> Result<Value, String> {
    // `...` outside strings becomes a member `"...": "..."` (in an object) or an element
    // `"..."` (in an array).
    let mut json = String::new();
    let mut stack: Vec<char> = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string && rest.starts_with(ELIDED) {
            json.push_str(match stack.last() {
                Some('{') => r#""...": "...""#,
                _ => r#""...""#,
            });
            rest = &rest[ELIDED.len()..];
            continue;
        }
        match c {
            '"' if !escaped => in_string = !in_string,
            '{' | '[' if !in_string => stack.push(c),
            '}' | ']' if !in_string => {
                stack.pop();
            }
            _ => {}
        }
        escaped = in_string && c == '\\' && !escaped;
        json.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let mut values = serde_json::Deserializer::from_str(&json).into_iter::<Value>();
    let value = values
        .next()
        .ok_or("no JSON")?
        .map_err(|e| format!("not JSON ({e}): {text}"))?;
    Ok(value)
}

/// The JSON of a complete documented body, without the comment after it.
fn json_part(text: &str) -> &str {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match values.next() {
        Some(Ok(_)) => &text[..values.byte_offset()],
        _ => text,
    }
}

fn has_elision(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(ELIDED),
        Value::Array(a) => a.iter().any(has_elision),
        Value::Object(m) => m.iter().any(|(k, v)| k == ELIDED || has_elision(v)),
        _ => false,
    }
}

fn tag(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

// ----- comparing -----

/// The wall-clock times of the session so far.
#[derive(Clone, Copy)]
struct Clock {
    start: u64,
    now: u64,
}

const TIMESTAMPS: [&str; 3] = ["last_seen", "status_since", "at"];

/// Where `real` differs from the documented `doc`, after the normalization of the module docs.
fn differences(doc: &Value, real: &Value, clock: Clock, path: &str, out: &mut Vec<String>) {
    let key = path.rsplit('.').next().unwrap_or("");
    if TIMESTAMPS.contains(&key) {
        match (doc.as_u64(), real.as_u64()) {
            (Some(0), Some(0)) => {}
            (Some(d), Some(r)) if d != 0 && (clock.start..=clock.now).contains(&r) => {}
            _ => out.push(format!(
                "{path}: documented {doc}, answered {real} (a time of this session is \
                 {}..={}, a documented 0 must be 0)",
                clock.start, clock.now
            )),
        }
        return;
    }
    if key == "Stats" {
        let (Some(d), Some(r)) = (doc.as_object(), real.as_object()) else {
            out.push(format!("{path}: documented {doc}, answered {real}"));
            return;
        };
        let (dk, rk): (Vec<&String>, Vec<&String>) = (d.keys().collect(), r.keys().collect());
        if dk != rk || r.values().any(|v| !v.is_number()) || d.values().any(|v| !v.is_number()) {
            out.push(format!(
                "{path}: documented counters {dk:?}, answered {real}"
            ));
        }
        return;
    }
    match (doc, real) {
        (Value::Object(d), Value::Object(r)) => {
            let open = d.contains_key(ELIDED);
            for (k, dv) in d.iter().filter(|(k, _)| *k != ELIDED) {
                match r.get(k) {
                    Some(rv) => differences(dv, rv, clock, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: documented, not answered")),
                }
            }
            for (k, rv) in r {
                if !d.contains_key(k) && !open && !rv.is_null() {
                    out.push(format!("{path}.{k}: answered {rv}, not documented"));
                }
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            let open = d.last() == Some(&Value::String(ELIDED.into()));
            let d = if open { &d[..d.len() - 1] } else { &d[..] };
            if r.len() < d.len() || (!open && r.len() != d.len()) {
                out.push(format!(
                    "{path}: documented {} elements{}, answered {}: {real}",
                    d.len(),
                    if open { " or more" } else { "" },
                    r.len()
                ));
                return;
            }
            for (i, (dv, rv)) in d.iter().zip(r).enumerate() {
                differences(dv, rv, clock, &format!("{path}[{i}]"), out);
            }
        }
        (Value::String(d), Value::String(r)) if d.contains(ELIDED) => {
            if !glob(d, r) {
                out.push(format!("{path}: documented {d:?}, answered {r:?}"));
            }
        }
        (d, r) if d == r => {}
        (d, r) => out.push(format!("{path}: documented {d}, answered {r}")),
    }
}

/// Whether `text` reads as `pattern`, each `...` standing for any text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split(ELIDED).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

// ----- running the sessions -----

struct Run {
    failures: Vec<String>,
    compared: usize,
    hooks_run: Vec<&'static str>,
}

impl Run {
    /// Compare one documented body with the real one.
    fn compare(&mut self, line: &Line, doc_text: &str, real: &[u8], clock: Clock) {
        self.compared += 1;
        let real: Value = match serde_json::from_slice(real) {
            Ok(v) => v,
            Err(e) => {
                self.fail(line, &format!("the answer is not JSON ({e})"));
                return;
            }
        };
        let doc = match documented(doc_text) {
            Ok(v) => v,
            Err(e) => {
                self.fail(line, &e);
                return;
            }
        };
        let mut diffs = Vec::new();
        differences(&doc, &real, clock, "", &mut diffs);
        if !diffs.is_empty() {
            self.fail(
                line,
                &format!(
                    "documented {doc_text}\n  the core answered {real}\n  {}",
                    diffs.join("\n  ")
                ),
            );
        }
    }

    fn fail(&mut self, line: &Line, why: &str) {
        self.failures.push(format!("{}: {why}", line.at()));
    }
}

/// The request after `f` changed its JSON (for the recipes of other answers).
fn altered(request: &str, f: impl Fn(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(request).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// A second (third...) documented answer to a request: how the test gets it. None: no
/// recipe.
fn alternative_answer(
    h: &mut Harness,
    from: &Address,
    to: &Address,
    request: &str,
    answer: &Value,
) -> Option<Vec<u8>> {
    let code = answer["Err"]["code"].as_str()?;
    let message = answer["Err"]["message"].as_str()?;
    match (code, message) {
        // The same request from a node speaking a protocol version older than any we do.
        ("VersionMismatch", _) => {
            let body = altered(request, |v| {
                let inner = v.as_object_mut().unwrap().values_mut().next().unwrap();
                inner["protocol_version"] = (OLDEST_PROTOCOL_VERSION - 1).into();
            });
            h.call(from, to, body, Some(5)).unwrap()
        }
        // The same registration, repeated within the minute until the rate limit refuses it.
        ("Overloaded", "too many registrations from this node; slow down") => {
            for _ in 0..=Config::default().registry_rate_per_min {
                let a = h
                    .call(from, to, request.as_bytes().to_vec(), Some(5))
                    .unwrap()?;
                if serde_json::from_slice::<Value>(&a)
                    .ok()?
                    .get("Err")
                    .is_some()
                {
                    return Some(a);
                }
            }
            None
        }
        _ => None,
    }
}

/// Presence's one-way messages: sent with a timeout anyway, they are answered `Accepted`.
const ONE_WAY: [&str; 4] = ["ProbeRequest", "IndirectAck", "IndirectNack", "Gossip"];

fn run_session(run: &mut Run, file: &'static str, session: Session, steps: &[Step]) {
    match session {
        // Checked by tests/notify.rs and tests/txcoord.rs on simulated nodes.
        Session::Notify | Session::Txcoord => {}
        Session::EveryProcess => {
            for name in PROCESSES {
                let mut h = Harness::with_nodes(&[OUR]);
                let to = Address::ours(&NodeId::parse(OUR).unwrap(), name);
                for step in steps {
                    let clock = Clock {
                        start: WALL_START,
                        now: h.now().wall,
                    };
                    let (line, req) = &step.request;
                    let answer = h
                        .call(&app(), &to, json_part(req).as_bytes().to_vec(), Some(5))
                        .unwrap()
                        .expect("answered");
                    let clock = Clock {
                        now: h.now().wall,
                        ..clock
                    };
                    let [(aline, doc)] = &step.answers[..] else {
                        run.fail(line, "an Every process example has exactly one answer");
                        continue;
                    };
                    let doc = doc
                        .replace(r#""name": "presence""#, &format!(r#""name": "{name}""#))
                        .replace("not a presence request", &format!("not a {name} request"));
                    run.compare(aline, &doc, &answer, clock);
                }
            }
        }
        Session::Local | Session::Protocol | Session::SyncLocal | Session::SyncProtocol => {
            let mut h = Harness::with_nodes(&[OUR]);
            let sync_of = |n: &str| Address::ours(&NodeId::parse(n).unwrap(), "sync");
            let to = match session {
                Session::SyncLocal | Session::SyncProtocol => sync_of(OUR),
                _ => presence_of(OUR),
            };
            let sender = match session {
                Session::Local | Session::SyncLocal => app(),
                Session::SyncProtocol => sync_of("bob.os"),
                _ => presence_of("bob.os"),
            };
            let mut inbox = 0;
            for step in steps {
                let (line, req) = &step.request;
                for hook in HOOKS.iter().filter(|k| k.file == file) {
                    if req.contains(hook.before) && !run.hooks_run.contains(&hook.what) {
                        (hook.run)(&mut h);
                        run.hooks_run.push(hook.what);
                    }
                }
                let clock = Clock {
                    start: WALL_START,
                    now: h.now().wall,
                };
                let doc = match documented(req) {
                    Ok(v) => v,
                    Err(e) => {
                        run.fail(line, &e);
                        continue;
                    }
                };
                // A request presence sends the app.
                if matches!(
                    tag(&doc).as_str(),
                    "Welcome"
                        | "PresenceEvent"
                        | "Changed"
                        | "Invited"
                        | "Removed"
                        | "AwarenessChanged"
                ) {
                    let received = h.sent_to(&sender);
                    match received.get(inbox) {
                        Some(body) => {
                            let body = body.to_vec();
                            run.compare(line, req, &body, clock);
                        }
                        None => run.fail(
                            line,
                            &format!("the app received no such message (only {inbox})"),
                        ),
                    }
                    inbox += 1;
                    if !step.answers.is_empty() {
                        run.fail(line, "a message to the app has no documented answer");
                    }
                    continue;
                }
                if has_elision(&doc) {
                    run.fail(line, "a request must be complete (no `...`)");
                    continue;
                }
                // Forbidden for an app presence cannot message: that app asks.
                let first: Option<Value> =
                    step.answers.first().and_then(|(_, a)| documented(a).ok());
                let refused_app = first
                    .as_ref()
                    .and_then(|a| a["Err"]["message"].as_str())
                    .and_then(|m| m.strip_prefix("presence cannot message "))
                    .and_then(|m| {
                        m.split(':')
                            .take(3)
                            .collect::<Vec<_>>()
                            .join(":")
                            .parse::<Address>()
                            .ok()
                    });
                let from = match &refused_app {
                    Some(a) => {
                        h.set_app(a, AppSide::Refuses);
                        a.clone()
                    }
                    None => sender.clone(),
                };
                let answer = h
                    .call(&from, &to, json_part(req).as_bytes().to_vec(), Some(5))
                    .unwrap();
                let clock = Clock {
                    now: h.now().wall,
                    ..clock
                };
                let Some(answer) = answer else {
                    run.fail(line, "presence did not answer");
                    continue;
                };
                match &step.answers[..] {
                    [] => {
                        let real: Value = serde_json::from_slice(&answer).unwrap();
                        let ok = if ONE_WAY.contains(&tag(&doc).as_str()) {
                            real == serde_json::json!({"Ok": "Accepted"})
                        } else {
                            real.get("Ok").is_some()
                        };
                        run.compared += 1;
                        if !ok {
                            run.fail(
                                line,
                                &format!(
                                    "no answer is documented, so it must be {}; presence \
                                     answered {real}",
                                    if ONE_WAY.contains(&tag(&doc).as_str()) {
                                        r#"{"Ok": "Accepted"}"#
                                    } else {
                                        r#"{"Ok": ...}"#
                                    }
                                ),
                            );
                        }
                    }
                    [(aline, a), others @ ..] => {
                        run.compare(aline, a, &answer, clock);
                        for (oline, o) in others {
                            let Ok(ov) = documented(o) else {
                                run.fail(oline, "not JSON");
                                continue;
                            };
                            match alternative_answer(&mut h, &from, &to, json_part(req), &ov) {
                                Some(real) => {
                                    let clock = Clock {
                                        now: h.now().wall,
                                        ..clock
                                    };
                                    run.compare(oline, o, &real, clock);
                                }
                                None => run.fail(
                                    oline,
                                    "another answer to the request above, with no recipe \
                                     in alternative_answer to reproduce it",
                                ),
                            }
                        }
                    }
                }
            }
            assert_eq!(h.stray_answers, 0, "{file}: answers nobody waited for");
        }
    }
}

#[test]
fn documented_answers_are_what_the_cores_answer() {
    let mut run = Run {
        failures: Vec::new(),
        compared: 0,
        hooks_run: Vec::new(),
    };
    let mut sessions_run = Vec::new();
    for file in FILES {
        let lines = example_lines(file);
        assert!(!lines.is_empty(), "{file} has no → / ← lines");
        // Group the lines by session, keeping their order.
        let mut groups: Vec<(Session, Vec<Line>)> = Vec::new();
        for l in lines {
            let Some((_, _, s)) = SECTIONS
                .iter()
                .find(|(f, h, _)| *f == file && *h == l.heading)
            else {
                run.fail(
                    &l,
                    &format!(
                        "an example under \"{}\", which no session covers: add the heading \
                         to SECTIONS",
                        l.heading
                    ),
                );
                continue;
            };
            match groups.iter_mut().find(|(g, _)| g == s) {
                Some((_, ls)) => ls.push(l),
                None => groups.push((*s, vec![l])),
            }
        }
        for (session, lines) in groups {
            let steps = steps(&lines);
            run_session(&mut run, file, session, &steps);
            sessions_run.push((file, session));
        }
    }
    for hook in HOOKS {
        if !run.hooks_run.contains(&hook.what) {
            run.failures.push(format!(
                "{}: the hook \"{}\" never ran: no example line contains {}",
                hook.file, hook.what, hook.before
            ));
        }
    }
    assert!(
        run.failures.is_empty(),
        "{} of the documented examples differ from what the cores answer:\n\n{}",
        run.failures.len(),
        run.failures.join("\n\n")
    );
    assert_eq!(sessions_run.len(), 9, "{sessions_run:?}");
    assert!(run.compared >= 60, "only {} comparisons", run.compared);
}

#[test]
fn elisions_and_normalization() {
    let doc = documented(
        r#"{"a": {"node_id": "bob.os", ...}, "m": "not a presence request: ..., x", "l": [1, ...]}  comment"#,
    )
    .unwrap();
    let clock = Clock { start: 10, now: 20 };
    let real = serde_json::json!({"a": {"node_id": "bob.os", "more": 1}, "m": "not a presence request: y, x", "l": [1, 2, 3], "n": null});
    let mut d = Vec::new();
    differences(&doc, &real, clock, "", &mut d);
    assert!(d.is_empty(), "{d:?}");
    let real = serde_json::json!({"a": {"node_id": "carol.os"}, "m": "other", "l": [], "x": 1});
    differences(&doc, &real, clock, "", &mut d);
    assert_eq!(d.len(), 4, "{d:?}");

    let doc: Value = serde_json::json!({"last_seen": 1764031200000u64, "at": 0, "status_since": 5});
    let mut d = Vec::new();
    differences(
        &doc,
        &serde_json::json!({"last_seen": 15, "at": 0, "status_since": 20}),
        clock,
        "",
        &mut d,
    );
    assert!(d.is_empty(), "{d:?}");
    differences(
        &doc,
        &serde_json::json!({"last_seen": 9, "at": 12, "status_since": 0}),
        clock,
        "",
        &mut d,
    );
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(glob("a...c...e", "abcde") && !glob("a...c", "abd"));
}
