//! Exhaustive model check of the real txcoord cores: 1 coordinator and 3 participants, every
//! interleaving of message deliveries, timer firings and lazy-write flushes, within a fault
//! budget of message loss, duplication, early timeout and crash–restart of any node at any
//! point. Safety is checked in every state; liveness by running, from every state reached,
//! a fault-free suffix (deliver everything, then fire timers) that must reach the
//! coordinator's decision at every participant within a bounded number of steps.
//! See docs/txcoord.md ("Model check") for the model and its budget.

use p2p_common::api::txcoord::{
    decision_message, ManagerAnswer, ManagerMessage, Outcome, Request, Response, Vote,
};
use p2p_common::api::{encode, encode_result};
use p2p_common::service::{Effect, Input, Now, RequestId, SendErrorKind, Service};
use p2p_common::sign::model::{NetKeys, SignOutcome};
use p2p_common::sign::{sign_address, signed_bytes};
use p2p_common::{Address, NodeId, ProcessId, Records};
use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use txcoord::core::{Config, Ctx, Timer, TxCoord};
use txcoord::participant::PTimer;

const N: usize = 4;
const NAMES: [&str; N] = ["alice.os", "bob.os", "carol.os", "dave.os"];

fn node(i: usize) -> NodeId {
    NodeId::parse(NAMES[i]).unwrap()
}
fn tx_addr(i: usize) -> Address {
    Address::ours(&node(i), "txcoord")
}
fn rm_addr(i: usize) -> Address {
    Address::new(
        node(i),
        ProcessId::parse("rm:model:p2p-patterns.os").unwrap(),
    )
}
fn app_addr() -> Address {
    Address::new(
        node(0),
        ProcessId::parse("app:model:p2p-patterns.os").unwrap(),
    )
}

/// A resource manager: durable vote and outcome (it survives crashes of txcoord).
#[derive(Clone, Debug, Default, Hash)]
struct Rm {
    vote: Option<Vote>,
    outcome: Option<Outcome>,
    /// Told to commit without having voted yes, or after an abort (must never happen).
    bad_commit: bool,
}

#[derive(Clone, Debug)]
enum Msg {
    /// A request to txcoord on `to`; `send` names the sender's outstanding entry (if awaited).
    ToCore {
        from: Address,
        to: usize,
        body: Vec<u8>,
        send: Option<(usize, u64)>,
        remote: bool,
    },
    /// A request from txcoord on `from` to its local RM or app.
    ToApp {
        node: usize,
        rm: bool,
        body: Vec<u8>,
        send: (usize, u64),
    },
    /// A request from txcoord on `node` to its `sign:sign:sys` (sign a decision, or verify a
    /// relayed one): answered by `NetKeys` (real ed25519) when delivered, or lost or answered
    /// late, which is the same to txcoord (a timeout; a fault).
    ToSign {
        node: usize,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        send: (usize, u64),
    },
    /// The answer to outstanding send `send` of node `to`.
    Answer {
        to: usize,
        send: u64,
        body: Result<Vec<u8>, SendErrorKind>,
        remote: bool,
        /// An answer from a local app (ordered with the node's other app answers).
        app: bool,
    },
}

#[derive(Clone)]
struct NodeState {
    core: TxCoord,
    disk: Records,
    lazy: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Armed timers and when each is due (model time).
    timers: BTreeMap<Timer, u64>,
    /// Awaited sends of this life: id -> context.
    outstanding: BTreeMap<u64, Ctx>,
    /// Requests this core holds: its request id -> the caller's outstanding entry.
    inbound: BTreeMap<u64, (usize, u64)>,
    rm: Rm,
}

#[derive(Clone)]
struct State {
    nodes: Vec<NodeState>,
    net: Vec<Msg>,
    faults: u32,
    next_id: u64,
    tx_id: String,
    /// Model time (ms): a timer that fires moves it to the timer's due time at least, a
    /// timeout delivered moves it on by the timeout.
    clock: u64,
    /// The coordinator's decision once it made one (it may forget it later).
    decided: Option<Outcome>,
}

struct Model {
    votes: [Vote; 3],
    cfg_coord: Config,
    cfg_part: Config,
    budget: u32,
    /// Steps the fault-free suffix may take.
    suffix_steps: usize,
    /// What the node's `sign:sign:sys` did, over every step taken (searches and suffixes):
    /// decisions signed, relayed decisions verified true and false, requests lost. Printed,
    /// and asserted where a search must reach the signature path.
    signs: Cell<u64>,
    verified_ok: Cell<u64>,
    verified_bad: Cell<u64>,
    signs_lost: Cell<u64>,
    /// Lies told by participants (`Step::Lie`).
    lies: Cell<u64>,
    /// The sign process's answers so far, by (node, request body, blob): the same few
    /// requests recur on many paths, and ed25519 in a debug build is slow.
    sign_answers: RefCell<HashMap<SignKey, SignOutcome>>,
    /// Liars' own signatures, by (liar, tx id, commit), for the same reason.
    lie_signatures: RefCell<HashMap<(usize, String, bool), Vec<u8>>>,
}

type SignKey = (usize, Vec<u8>, Option<Vec<u8>>);

/// Model time at the start.
const T0: u64 = 1_000_000;

/// The message that registers the manager of node `i` again (after its own crash).
fn register_body() -> Vec<u8> {
    encode(&Request::RegisterManager {
        resource: "r".into(),
        coordinators: Some(p2p_common::api::txcoord::Coordinators::Only(vec![node(0)])),
    })
}

fn strip_ids(s: &str) -> String {
    // RequestId(17) -> RequestId: ids are names, not state.
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if out.ends_with("RequestId(") {
            while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                chars.next();
            }
        }
    }
    out
}

impl Model {
    fn reset_counts(&self) {
        for c in [
            &self.signs,
            &self.verified_ok,
            &self.verified_bad,
            &self.signs_lost,
            &self.lies,
        ] {
            c.set(0);
        }
    }

    fn counts(&self) -> String {
        format!(
            "over all steps taken: {} decisions signed, relayed decisions verified {} true and {} \
             false, {} sign requests lost, {} lies told",
            self.signs.get(),
            self.verified_ok.get(),
            self.verified_bad.get(),
            self.signs_lost.get(),
            self.lies.get()
        )
    }

    fn core(&self, i: usize) -> TxCoord {
        let cfg = if i == 0 {
            self.cfg_coord.clone()
        } else {
            self.cfg_part.clone()
        };
        TxCoord::with_config(tx_addr(i), cfg)
    }

    fn init(&self) -> State {
        let mut s = State {
            nodes: Vec::new(),
            net: Vec::new(),
            faults: 0,
            next_id: 1,
            tx_id: String::new(),
            clock: T0,
            decided: None,
        };
        for i in 0..N {
            let mut disk = Records::new();
            if i > 0 {
                // Registered for alice.os's transactions.
                let only_alice = p2p_common::api::txcoord::Coordinators::Only(vec![node(0)]);
                let rec = txcoord::participant::manager_record(&rm_addr(i), &only_alice);
                disk.insert(b"m/r".to_vec(), rec);
            }
            s.nodes.push(NodeState {
                core: self.core(i),
                disk,
                lazy: Vec::new(),
                timers: BTreeMap::new(),
                outstanding: BTreeMap::new(),
                inbound: BTreeMap::new(),
                rm: Rm::default(),
            });
            self.boot(&mut s, i);
        }
        // The app starts the transaction.
        let participants = (1..N)
            .map(|i| p2p_common::api::txcoord::ParticipantSpec {
                node: node(i),
                resource: "r".into(),
                operation: format!("op{i}"),
            })
            .collect();
        let body = encode(&Request::Start {
            participants,
            timeout_ms: None,
        });
        let id = s.next_id;
        s.next_id += 1;
        let eff = s.nodes[0].core.handle(
            Now::at(s.clock),
            Input::Request {
                id: RequestId(id),
                from: app_addr(),
                body,
                blob: None,
                timeout_s: Some(10),
            },
        );
        for e in &eff {
            if let Effect::Reply { body, .. } = e {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                s.tx_id = v["Ok"]["Started"]["tx_id"].as_str().unwrap().to_string();
            }
        }
        self.apply(&mut s, 0, eff, None);
        s
    }

    fn boot(&self, s: &mut State, i: usize) {
        let records = s.nodes[i].disk.clone();
        let eff = s.nodes[i].core.handle(
            Now::at(s.clock),
            Input::Start {
                persisted: None,
                records,
                seed: 7 + i as u64,
            },
        );
        self.apply(s, i, eff, None);
    }

    /// Carry out a core's effects. `req`: the request being handled (for replies now).
    fn apply(&self, s: &mut State, i: usize, eff: Vec<Effect<Ctx, Timer>>, _req: Option<u64>) {
        for e in eff {
            match e {
                // The node's own sign:sign:sys: a message of its own (see `Msg::ToSign`).
                Effect::Send {
                    to,
                    body,
                    blob,
                    expect,
                } if to.process == p2p_common::sign::sign_process() => {
                    let Some(x) = expect else { continue };
                    let id = s.next_id;
                    s.next_id += 1;
                    s.nodes[i].outstanding.insert(id, x.ctx);
                    s.net.push(Msg::ToSign {
                        node: i,
                        body,
                        blob,
                        send: (i, id),
                    });
                }
                Effect::Send {
                    to, body, expect, ..
                } => {
                    let id = s.next_id;
                    s.next_id += 1;
                    let send = expect.map(|x| {
                        s.nodes[i].outstanding.insert(id, x.ctx);
                        (i, id)
                    });
                    if to.process.process == "txcoord" {
                        let t = NAMES.iter().position(|n| *n == to.node.as_str()).unwrap();
                        s.net.push(Msg::ToCore {
                            from: tx_addr(i),
                            to: t,
                            body,
                            send,
                            remote: t != i,
                        });
                    } else {
                        let rm = to == rm_addr(i);
                        match send {
                            Some(send) => s.net.push(Msg::ToApp {
                                node: i,
                                rm,
                                body,
                                send,
                            }),
                            None => {}
                        }
                    }
                }
                Effect::Reply { id, body, .. } => {
                    if let Some((caller, send)) = s.nodes[i].inbound.remove(&id.0) {
                        s.net.push(Msg::Answer {
                            to: caller,
                            send,
                            body: Ok(body),
                            remote: caller != i,
                            app: false,
                        });
                    }
                }
                Effect::SetTimer { timer, after_ms } => {
                    s.nodes[i].timers.insert(timer, s.clock + after_ms);
                }
                Effect::CancelTimer(t) => {
                    s.nodes[i].timers.remove(&t);
                }
                Effect::Store(b) => {
                    if b.forced {
                        let lazy = std::mem::take(&mut s.nodes[i].lazy);
                        for (k, v) in lazy.into_iter().chain(b.ops) {
                            write(&mut s.nodes[i].disk, k, v);
                        }
                    } else {
                        s.nodes[i].lazy.extend(b.ops);
                    }
                }
                Effect::Log { .. } => {}
                other => panic!("unexpected effect in the model: {other:?}"),
            }
        }
        // A request held with nothing in flight under it would be answered Internal by the
        // driver; the cores never do that for requests they hold (checked by the sim).
    }

    fn fingerprint(&self, s: &State) -> u64 {
        let mut h = DefaultHasher::new();
        s.faults.hash(&mut h);
        // Model time is left out: states that differ only in it are merged (time matters
        // only for comparisons such as the hello's 1 s rule).
        s.decided.hash(&mut h);
        for n in &s.nodes {
            n.core.fingerprint().hash(&mut h);
            n.disk.hash(&mut h);
            n.lazy.hash(&mut h);
            format!("{:?}", n.timers.keys().collect::<Vec<_>>()).hash(&mut h);
            let mut out: Vec<String> = n
                .outstanding
                .values()
                .map(|c| strip_ids(&format!("{c:?}")))
                .collect();
            out.sort();
            out.hash(&mut h);
            let mut inb: Vec<String> = n
                .inbound
                .values()
                .map(|(c, id)| {
                    let ctx = s.nodes[*c].outstanding.get(id);
                    strip_ids(&format!("{c}{ctx:?}"))
                })
                .collect();
            inb.sort();
            inb.hash(&mut h);
            n.rm.hash(&mut h);
        }
        let mut msgs: Vec<String> = s.net.iter().map(|m| self.msg_key(s, m)).collect();
        msgs.sort();
        msgs.hash(&mut h);
        h.finish()
    }

    fn msg_key(&self, s: &State, m: &Msg) -> String {
        let ctx =
            |(n, id): (usize, u64)| strip_ids(&format!("{n}{:?}", s.nodes[n].outstanding.get(&id)));
        match m {
            Msg::ToCore {
                from,
                to,
                body,
                send,
                ..
            } => format!(
                "C{from}>{to}:{}:{}",
                String::from_utf8_lossy(body),
                send.map(ctx).unwrap_or_default()
            ),
            Msg::ToApp {
                node, body, send, ..
            } => {
                format!("A{node}:{}:{}", String::from_utf8_lossy(body), ctx(*send))
            }
            Msg::ToSign {
                node,
                body,
                blob,
                send,
            } => format!(
                "S{node}:{}:{blob:?}:{}",
                String::from_utf8_lossy(body),
                ctx(*send)
            ),
            Msg::Answer { to, send, body, .. } => format!(
                "R{to}:{:?}:{}",
                body.as_ref()
                    .map(|b| String::from_utf8_lossy(b).to_string()),
                ctx((*to, *send))
            ),
        }
    }

    /// Every step enabled in `s`: (description, is a fault).
    fn steps(&self, s: &State) -> Vec<Step> {
        // A sign or verify request is answered (or lost) before anything else happens: the
        // sign process is local and quick, and taking it at once keeps it from multiplying
        // the interleavings (a crash between the request and its answer is not explored).
        if let Some(k) = s.net.iter().position(|m| matches!(m, Msg::ToSign { .. })) {
            let mut v = vec![Step::Deliver(k)];
            if s.faults < self.budget {
                v.push(Step::SignLost(k));
            }
            return v;
        }
        let mut v = Vec::new();
        // Messages between txcoord and its local apps keep their order (one node's kernel
        // delivers local messages in order): only the oldest each way is deliverable.
        let mut to_app = [false; N];
        let mut from_app = [false; N];
        for (k, m) in s.net.iter().enumerate() {
            match m {
                Msg::ToApp { node, .. } => {
                    if std::mem::replace(&mut to_app[*node], true) {
                        continue;
                    }
                }
                Msg::Answer { to, app: true, .. } => {
                    if std::mem::replace(&mut from_app[*to], true) {
                        continue;
                    }
                }
                _ => {}
            }
            v.push(Step::Deliver(k));
            if s.faults < self.budget && matches!(m, Msg::ToApp { .. }) {
                // Answered late: txcoord times out, the app has acted on it all the same.
                v.push(Step::AppTimeout(k));
            }
            let remote = matches!(
                m,
                Msg::ToCore { remote: true, .. } | Msg::Answer { remote: true, .. }
            );
            if s.faults < self.budget && remote {
                v.push(Step::Lose(k));
                if matches!(m, Msg::ToCore { .. }) {
                    v.push(Step::Duplicate(k));
                }
            }
            if s.faults < self.budget && peer_query(m).is_some() {
                // The asked participant lies: either outcome, unsigned or with a signature
                // that is not the coordinator's (its own over the same decision message).
                for commit in [true, false] {
                    for signed in [false, true] {
                        v.push(Step::Lie(k, commit, signed));
                    }
                }
                if s.decided.is_some() {
                    // Or replays the coordinator's real signature of its decision with the
                    // other outcome.
                    v.push(Step::Replay(k));
                }
            }
        }
        for i in 0..N {
            for t in s.nodes[i].timers.keys() {
                if self.may_fire(s, t) {
                    v.push(Step::Fire(i, t.clone()));
                }
            }
            if !s.nodes[i].lazy.is_empty() {
                v.push(Step::Flush(i));
            }
            if s.faults < self.budget {
                v.push(Step::Crash(i));
                if i > 0 {
                    v.push(Step::CrashApp(i));
                }
            }
        }
        v
    }

    /// Timers fire in any order and at any time, except a participant's `Expire`: it is due
    /// after the vote deadline counted from the participant's receipt of the Prepare, so
    /// (with one clock rate) after the coordinator's own deadline, by which the coordinator
    /// has decided or, crashed, forgotten the transaction.
    fn may_fire(&self, s: &State, t: &Timer) -> bool {
        !matches!(t, Timer::P(PTimer::Expire(_)))
            || s.nodes[0].core.coord.decision(&s.tx_id) != Outcome::Pending
    }

    /// Record the coordinator's decision once it has one (it forgets it after the end).
    fn note_decision(&self, s: &mut State) {
        if s.decided.is_none() && s.nodes[0].core.coord.active() > 0 {
            match s.nodes[0].core.coord.decision(&s.tx_id) {
                Outcome::Pending => {}
                o => s.decided = Some(o),
            }
        }
    }

    /// The decision: recorded, or the coordinator's answer (presumed abort without record).
    fn decision(&self, s: &State) -> Outcome {
        s.decided
            .unwrap_or_else(|| s.nodes[0].core.coord.decision(&s.tx_id))
    }

    fn step(&self, s: &mut State, st: &Step) {
        self.step_inner(s, st);
        self.note_decision(s);
    }

    fn step_inner(&self, s: &mut State, st: &Step) {
        match st {
            Step::Deliver(k) => {
                let m = s.net.remove(*k);
                self.deliver(s, m);
            }
            Step::Lose(k) => {
                s.faults += 1;
                let m = s.net.remove(*k);
                // The sender of an awaited request learns nothing but a timeout.
                let send = match m {
                    Msg::ToCore { send, .. } => send,
                    Msg::Answer { to, send, .. } => Some((to, send)),
                    Msg::ToApp { .. } | Msg::ToSign { .. } => None,
                };
                if let Some((n, id)) = send {
                    s.net.push(Msg::Answer {
                        to: n,
                        send: id,
                        body: Err(SendErrorKind::Timeout),
                        remote: false,
                        app: false,
                    });
                }
            }
            Step::SignLost(k) => {
                s.faults += 1;
                self.signs_lost.set(self.signs_lost.get() + 1);
                let Msg::ToSign { node, send, .. } = s.net.remove(*k) else {
                    unreachable!("only sign requests are lost this way")
                };
                let Some(ctx) = s.nodes[node].outstanding.remove(&send.1) else {
                    return;
                };
                s.clock += 3_000;
                let eff = s.nodes[node].core.handle(
                    Now::at(s.clock),
                    Input::SendFailed {
                        kind: SendErrorKind::Timeout,
                        target: sign_address(&tx_addr(node).node),
                        ctx,
                    },
                );
                self.apply(s, node, eff, None);
            }
            Step::Replay(k) => {
                s.faults += 1;
                self.lies.set(self.lies.get() + 1);
                let m = s.net.remove(*k);
                let (_, tx_id) = peer_query(&m).expect("a peer's query");
                let Msg::ToCore {
                    send: Some((asker, id)),
                    ..
                } = m
                else {
                    unreachable!("peer_query checked it")
                };
                let decided = s.decided.expect("a decision to replay") == Outcome::Committed;
                let key = (0, tx_id.clone(), decided);
                let known = self.lie_signatures.borrow().get(&key).cloned();
                let signature = known.unwrap_or_else(|| {
                    let coord = tx_addr(0);
                    let msg = signed_bytes(&coord, &decision_message(&tx_id, decided));
                    let sig = NetKeys::new(1).sign(coord.node.as_str(), &msg).to_vec();
                    self.lie_signatures.borrow_mut().insert(key, sig.clone());
                    sig
                });
                let outcome = if decided {
                    Outcome::Aborted
                } else {
                    Outcome::Committed
                };
                s.net.push(Msg::Answer {
                    to: asker,
                    send: id,
                    body: Ok(encode_result(&Ok(Response::Outcome {
                        tx_id,
                        outcome,
                        signature,
                        more: vec![],
                    }))),
                    remote: true,
                    app: false,
                });
            }
            Step::Lie(k, commit, signed) => {
                s.faults += 1;
                self.lies.set(self.lies.get() + 1);
                let m = s.net.remove(*k);
                let (liar, tx_id) = peer_query(&m).expect("a peer's query");
                let Msg::ToCore {
                    send: Some((asker, id)),
                    ..
                } = m
                else {
                    unreachable!("peer_query checked it")
                };
                let signature = if *signed {
                    let key = (liar, tx_id.clone(), *commit);
                    let known = self.lie_signatures.borrow().get(&key).cloned();
                    known.unwrap_or_else(|| {
                        let me = tx_addr(liar);
                        let msg = signed_bytes(&me, &decision_message(&tx_id, *commit));
                        let sig = NetKeys::new(1).sign(me.node.as_str(), &msg).to_vec();
                        self.lie_signatures.borrow_mut().insert(key, sig.clone());
                        sig
                    })
                } else {
                    Vec::new()
                };
                let outcome = if *commit {
                    Outcome::Committed
                } else {
                    Outcome::Aborted
                };
                s.net.push(Msg::Answer {
                    to: asker,
                    send: id,
                    body: Ok(encode_result(&Ok(Response::Outcome {
                        tx_id,
                        outcome,
                        signature,
                        more: vec![],
                    }))),
                    remote: true,
                    app: false,
                });
            }
            Step::Duplicate(k) => {
                s.faults += 1;
                if let Msg::ToCore {
                    from,
                    to,
                    body,
                    remote,
                    ..
                } = s.net[*k].clone()
                {
                    // The copy's answer goes nowhere.
                    s.net.push(Msg::ToCore {
                        from,
                        to,
                        body,
                        send: None,
                        remote,
                    });
                }
            }
            Step::Fire(i, t) => {
                if let Some(due) = s.nodes[*i].timers.remove(t) {
                    s.clock = s.clock.max(due);
                }
                let eff = s.nodes[*i]
                    .core
                    .handle(Now::at(s.clock), Input::Timer(t.clone()));
                self.apply(s, *i, eff, None);
            }
            Step::AppTimeout(k) => {
                s.faults += 1;
                let Msg::ToApp {
                    node,
                    rm,
                    body,
                    send,
                } = s.net.remove(*k)
                else {
                    unreachable!("only app messages time out this way")
                };
                // The app acts on it; its answer comes too late and is dropped.
                self.app_answer(s, node, rm, &body);
                s.net.push(Msg::Answer {
                    to: send.0,
                    send: send.1,
                    body: Err(SendErrorKind::Timeout),
                    remote: false,
                    app: false,
                });
            }
            Step::CrashApp(i) => {
                // The manager crashes on its own (its vote and outcome are durable) and
                // registers again when back; what it had not read yet is lost, and
                // txcoord's sends to it time out.
                s.faults += 1;
                let i = *i;
                let mut lost = Vec::new();
                s.net.retain(|m| match m {
                    Msg::ToApp {
                        node,
                        rm: true,
                        send,
                        ..
                    } if *node == i => {
                        lost.push(*send);
                        false
                    }
                    _ => true,
                });
                for (n, id) in lost {
                    s.net.push(Msg::Answer {
                        to: n,
                        send: id,
                        body: Err(SendErrorKind::Timeout),
                        remote: false,
                        app: false,
                    });
                }
                s.net.push(Msg::ToCore {
                    from: rm_addr(i),
                    to: i,
                    body: register_body(),
                    send: None,
                    remote: false,
                });
            }
            Step::Flush(i) => {
                let lazy = std::mem::take(&mut s.nodes[*i].lazy);
                for (k, v) in lazy {
                    write(&mut s.nodes[*i].disk, k, v);
                }
            }
            Step::Crash(i) => {
                s.faults += 1;
                let i = *i;
                let n = &mut s.nodes[i];
                n.lazy.clear();
                n.timers.clear();
                n.outstanding.clear();
                let held = std::mem::take(&mut n.inbound);
                n.core = self.core(i);
                // Callers of requests it held time out; answers to its old sends are dropped
                // (their entries are gone); messages to its apps from the old life too.
                for (_, (c, id)) in held {
                    s.net.push(Msg::Answer {
                        to: c,
                        send: id,
                        body: Err(SendErrorKind::Timeout),
                        remote: false,
                        app: false,
                    });
                }
                s.net.retain(|m| {
                    !matches!(m, Msg::ToApp { node, .. } | Msg::ToSign { node, .. } if *node == i)
                });
                self.boot(s, i);
            }
        }
    }

    fn deliver(&self, s: &mut State, m: Msg) {
        match m {
            Msg::ToCore {
                from,
                to,
                body,
                send,
                ..
            } => {
                let id = s.next_id;
                s.next_id += 1;
                if let Some(send) = send {
                    s.nodes[to].inbound.insert(id, send);
                }
                let eff = s.nodes[to].core.handle(
                    Now::at(s.clock),
                    Input::Request {
                        id: RequestId(id),
                        from,
                        body,
                        blob: None,
                        timeout_s: send.map(|_| 5),
                    },
                );
                self.apply(s, to, eff, Some(id));
            }
            Msg::ToApp {
                node,
                rm,
                body,
                send,
            } => {
                let answer = self.app_answer(s, node, rm, &body);
                s.net.push(Msg::Answer {
                    to: send.0,
                    send: send.1,
                    body: Ok(encode_result(&Ok(answer))),
                    remote: false,
                    app: true,
                });
            }
            Msg::ToSign {
                node,
                body,
                blob,
                send,
            } => {
                let Some(ctx) = s.nodes[node].outstanding.remove(&send.1) else {
                    return;
                };
                let me = tx_addr(node);
                let key = (node, body, blob);
                let known = self.sign_answers.borrow().get(&key).cloned();
                let outcome = known.unwrap_or_else(|| {
                    let o =
                        NetKeys::new(1).handle(&me.node, &me, &key.1, key.2.as_deref(), &|_| true);
                    self.sign_answers.borrow_mut().insert(key, o.clone());
                    o
                });
                let input = match outcome {
                    SignOutcome::Answer { body, blob } => {
                        let text = String::from_utf8_lossy(&body);
                        let c = match () {
                            _ if text.contains("NetKeySign") => &self.signs,
                            _ if text.contains("true") => &self.verified_ok,
                            _ => &self.verified_bad,
                        };
                        c.set(c.get() + 1);
                        Input::Response {
                            from: sign_address(&me.node),
                            body,
                            blob,
                            ctx,
                        }
                    }
                    SignOutcome::NoAnswer(e) => panic!("the sign process refused: {e}"),
                };
                let eff = s.nodes[node].core.handle(Now::at(s.clock), input);
                self.apply(s, node, eff, None);
            }
            Msg::Answer { to, send, body, .. } => {
                let Some(ctx) = s.nodes[to].outstanding.remove(&send) else {
                    return; // an earlier life's, or a duplicate's
                };
                if body.is_err() {
                    // A timeout takes its time.
                    s.clock += 3_000;
                }
                let input = match body {
                    Ok(body) => Input::Response {
                        from: tx_addr(to),
                        body,
                        blob: None,
                        ctx,
                    },
                    Err(kind) => Input::SendFailed {
                        kind,
                        target: tx_addr(to),
                        ctx,
                    },
                };
                let eff = s.nodes[to].core.handle(Now::at(s.clock), input);
                self.apply(s, to, eff, None);
            }
        }
    }

    /// An app on `node` acts on `body` (the manager if `rm`); its answer.
    fn app_answer(&self, s: &mut State, node: usize, rm: bool, body: &[u8]) -> ManagerAnswer {
        if rm {
            let i = node - 1;
            let msg: ManagerMessage = serde_json::from_slice(body).unwrap();
            let tx_id = s.tx_id.clone();
            let r = &mut s.nodes[node].rm;
            match msg {
                ManagerMessage::PrepareTransaction { .. } => {
                    let v = *r.vote.get_or_insert(self.votes[i]);
                    ManagerAnswer::Vote {
                        vote: v,
                        reason: String::new(),
                    }
                }
                ManagerMessage::CommitTransaction { .. } => {
                    // Never without its yes, and never after it was told to abort.
                    if r.vote != Some(Vote::Yes) || r.outcome == Some(Outcome::Aborted) {
                        r.bad_commit = true;
                    }
                    r.outcome = Some(Outcome::Committed);
                    ManagerAnswer::Done {}
                }
                ManagerMessage::AbortTransaction { .. } => {
                    r.outcome.get_or_insert(Outcome::Aborted);
                    if r.outcome == Some(Outcome::Committed) {
                        r.bad_commit = true;
                    }
                    ManagerAnswer::Done {}
                }
                ManagerMessage::Hello { .. } => ManagerAnswer::InDoubt {
                    tx_ids: if r.vote == Some(Vote::Yes) && r.outcome.is_none() {
                        vec![tx_id.clone()]
                    } else {
                        vec![]
                    },
                },
            }
        } else {
            ManagerAnswer::Done {}
        }
    }

    fn safety(&self, s: &State) -> Result<(), String> {
        let rms: Vec<&Rm> = s.nodes[1..].iter().map(|n| &n.rm).collect();
        let committed = rms.iter().any(|r| r.outcome == Some(Outcome::Committed));
        let aborted = rms.iter().any(|r| r.outcome == Some(Outcome::Aborted));
        if committed && aborted {
            return Err(format!("atomicity: {rms:?}"));
        }
        if committed && !rms.iter().all(|r| r.vote == Some(Vote::Yes)) {
            return Err(format!("committed without every yes: {rms:?}"));
        }
        if rms.iter().any(|r| r.bad_commit) {
            return Err(format!(
                "a manager was told to commit without its yes or after an abort: {rms:?}"
            ));
        }
        Ok(())
    }

    /// Fault-free suffix: deliver in order, flush, then fire timers, until every manager
    /// has the coordinator's decision and every table is empty.
    fn live(&self, s: &State) -> Result<(usize, Outcome), String> {
        let mut s = s.clone();
        for n in 0..self.suffix_steps {
            let decision = self.decision(&s);
            let done = decision != Outcome::Pending
                && s.nodes[1..].iter().all(|x| {
                    // A manager that never voted yes has nothing to undo on an abort.
                    x.rm.outcome == Some(decision)
                        || (decision == Outcome::Aborted
                            && x.rm.vote != Some(Vote::Yes)
                            && x.rm.outcome.is_none())
                })
                && s.nodes
                    .iter()
                    .all(|x| x.core.coord.active() == 0 && x.core.part.entries() == 0)
                && s.net.is_empty();
            if done {
                return Ok((n, decision));
            }
            let st = if !s.net.is_empty() {
                Step::Deliver(0)
            } else if let Some(i) = (0..N).find(|&i| !s.nodes[i].lazy.is_empty()) {
                Step::Flush(i)
            } else if let Some((i, t)) = (0..N).find_map(|i| {
                let t = s.nodes[i].timers.keys().find(|t| self.may_fire(&s, t))?;
                Some((i, t.clone()))
            }) {
                Step::Fire(i, t)
            } else {
                break;
            };
            self.step(&mut s, &st);
            self.safety(&s)?;
        }
        let rms: Vec<&Rm> = s.nodes[1..].iter().map(|n| &n.rm).collect();
        let cores: Vec<String> = s
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{} timers {:?} disk {:?}",
                    n.core.fingerprint(),
                    n.timers,
                    n.disk
                        .keys()
                        .map(|k| String::from_utf8_lossy(k).to_string())
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        Err(format!(
            "liveness: not every participant reached the decision ({:?}) within {} fault-free steps: {rms:?}\n cores: {cores:#?}",
            self.decision(&s),
            self.suffix_steps
        ))
    }
}

fn write(disk: &mut Records, k: Vec<u8>, v: Option<Vec<u8>>) {
    match v {
        Some(v) => {
            disk.insert(k, v);
        }
        None => {
            disk.remove(&k);
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Deliver(usize),
    Lose(usize),
    Duplicate(usize),
    Fire(usize, Timer),
    Flush(usize),
    Crash(usize),
    /// A message to a local app is answered late: txcoord gets Timeout, the app acted on it.
    AppTimeout(usize),
    /// A participant's resource manager crashes on its own and registers again.
    CrashApp(usize),
    /// A request to a node's `sign:sign:sys` gets no answer in time (lost or late): a
    /// decision then goes out unsigned, a relayed one counts as unchecked.
    SignLost(usize),
    /// A participant answers another's termination query with a lie: `Committed` if true
    /// (else `Aborted`), with a signature of its own if true (else none).
    Lie(usize, bool, bool),
    /// A participant answers another's termination query with the outcome the coordinator
    /// did not decide and the coordinator's real signature of the one it did.
    Replay(usize),
}

/// A termination query from one participant to another, awaited: (the asked node, tx id).
fn peer_query(m: &Msg) -> Option<(usize, String)> {
    let Msg::ToCore {
        from,
        to,
        body,
        send: Some(_),
        remote: true,
    } = m
    else {
        return None;
    };
    if *to == 0 || from.node == node(0) {
        return None;
    }
    match serde_json::from_slice::<Request>(body) {
        Ok(Request::QueryOutcome { tx_id, .. }) => Some((*to, tx_id)),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Report {
    states: u64,
    max_depth: usize,
    committed_ends: u64,
    aborted_ends: u64,
    longest_suffix: usize,
}

/// Depth-first search over every interleaving; the first violation, or what was explored.
fn check(m: &Model, max_states: u64, max_depth: usize) -> Result<Report, String> {
    check_from(m, m.init(), max_states, max_depth)
}

/// The state the fault-free schedule reaches when the coordinator has just decided commit.
fn just_decided(m: &Model) -> State {
    let mut s = m.init();
    for _ in 0..200 {
        if s.nodes[0].core.coord.decision(&s.tx_id) == Outcome::Committed {
            return s;
        }
        assert!(!s.net.is_empty(), "the fault-free run reached no decision");
        m.step(&mut s, &Step::Deliver(0));
    }
    panic!("no commit decision within 200 deliveries");
}

/// From `s`, deliver fault-free (oldest first) every message `hold` does not hold back, and
/// when nothing else is left fire the timer `fire` picks, until `done` holds.
fn reach(
    m: &Model,
    mut s: State,
    hold: impl Fn(&Msg) -> bool,
    mut fire: impl FnMut(&State) -> Option<(usize, Timer)>,
    done: impl Fn(&State) -> bool,
) -> State {
    for _ in 0..500 {
        let next = s.net.iter().position(|x| !hold(x));
        if next.is_none() && done(&s) {
            return s;
        }
        match next {
            Some(k) => m.step(&mut s, &Step::Deliver(k)),
            None => {
                let (i, t) = fire(&s).expect("the schedule reached its state");
                m.step(&mut s, &Step::Fire(i, t));
            }
        }
        m.safety(&s).unwrap();
    }
    panic!("the schedule did not reach its state in 500 steps");
}

fn manager_msg(x: &Msg, node: Option<usize>, kind: &str) -> bool {
    matches!(x, Msg::ToApp { node: n, rm: true, body, .. }
        if node.is_none_or(|i| i == *n) && String::from_utf8_lossy(body).contains(kind))
}

/// Every participant has voted yes (forced) and its vote is on the way: the coordinator has
/// not decided. Faults from here hit the window between the votes and the decision.
fn all_prepared(m: &Model) -> State {
    let s = m.init();
    reach(
        m,
        s,
        |x| {
            matches!(
                x,
                Msg::Answer {
                    to: 0,
                    remote: true,
                    ..
                }
            )
        },
        |_| None,
        |s| (1..N).all(|i| s.nodes[i].core.part.blocked() == 1),
    )
}

/// bob and carol have voted yes; the coordinator gave them no answer to two termination
/// queries each (lost before the search, not counted in its fault budget), and the peer each
/// asked in between (bob carol, carol bob) said Pending; so their next query, now on its
/// way, goes to dave. dave's manager has voted yes too late (txcoord's ask timed out, the
/// timeout is on its way; also before the search): dave has not voted and may still refuse
/// (cooperative termination with an unvoted participant), and its refusal must tell the
/// manager to abort. The coordinator has not decided.
fn asking_an_unvoted_participant(m: &Model) -> State {
    let mut s = m.init();
    let query_from = |x: &Msg, i: usize, to: usize| {
        matches!(x, Msg::ToCore { from, to: t, body, .. }
            if *from == tx_addr(i) && *t == to
                && String::from_utf8_lossy(body).contains("QueryOutcome"))
    };
    let mut lost = [0u32; 3];
    for _ in 0..500 {
        if (1..3).all(|i| s.net.iter().any(|x| query_from(x, i, 3))) {
            assert_eq!(lost[1..], [2, 2]);
            assert!((1..3).all(|i| s.nodes[i].core.part.blocked() == 1));
            assert_eq!(s.nodes[0].core.coord.decision(&s.tx_id), Outcome::Pending);
            // dave's manager votes yes, too late: txcoord's ask times out (the answer is on
            // its way), so dave's entry may hide a yes when it refuses.
            let k = s
                .net
                .iter()
                .position(|x| manager_msg(x, Some(3), "PrepareTransaction"))
                .expect("held");
            m.step(&mut s, &Step::AppTimeout(k));
            s.faults = 0;
            return s;
        }
        let lose = (1..3).find_map(|i| {
            let k = s.net.iter().position(|x| query_from(x, i, 0))?;
            Some((i, k))
        });
        if let Some((i, k)) = lose {
            assert!(
                lost[i] < 2,
                "a third query to the coordinator: {}",
                NAMES[i]
            );
            lost[i] += 1;
            m.step(&mut s, &Step::Lose(k));
        } else if let Some(k) = s.net.iter().position(|x| {
            !manager_msg(x, Some(3), "PrepareTransaction") && !(1..3).any(|i| query_from(x, i, 3))
        }) {
            m.step(&mut s, &Step::Deliver(k));
        } else {
            // bob's and carol's query timers only (not the coordinator's deadline).
            let (i, t) = (1..3)
                .find_map(|i| {
                    let t = s.nodes[i]
                        .timers
                        .keys()
                        .find(|t| matches!(t, Timer::P(PTimer::Query(_) | PTimer::Ask(_))))?;
                    Some((i, t.clone()))
                })
                .expect("the schedule reached its state");
            m.step(&mut s, &Step::Fire(i, t));
        }
        m.safety(&s).unwrap();
    }
    panic!("the schedule did not reach its state in 500 steps");
}

/// The coordinator decided commit and signed it; bob has its signed Commit (the Commits to
/// carol and dave are held); carol's termination query to the coordinator got no answer
/// (lost before the search, not counted in its budget), so her next query, on its way, goes
/// to bob: the signature path (bob relays the signed decision, or lies; carol verifies).
fn asking_a_peer_with_the_signed_commit(m: &Model) -> State {
    let mut s = just_decided(m);
    let held = |x: &Msg| {
        matches!(x, Msg::ToCore { to, body, .. }
            if (*to == 2 || *to == 3) && body.starts_with(b"{\"Commit\""))
    };
    let query = |x: &Msg, to: usize| {
        matches!(x, Msg::ToCore { from, to: t, body, .. }
            if *from == tx_addr(2) && *t == to
                && String::from_utf8_lossy(body).contains("QueryOutcome"))
    };
    let mut lost = 0;
    for _ in 0..500 {
        if s.net.iter().any(|x| query(x, 1)) {
            assert_eq!(lost, 1);
            assert_eq!(s.nodes[1].core.part.blocked(), 0, "bob has the commit");
            assert_eq!(s.nodes[2].core.part.blocked(), 1, "carol is in doubt");
            s.faults = 0;
            return s;
        }
        if let Some(k) = s.net.iter().position(|x| query(x, 0)) {
            assert_eq!(lost, 0, "a second query to the coordinator");
            lost += 1;
            m.step(&mut s, &Step::Lose(k));
        } else if let Some(k) = s.net.iter().position(|x| !held(x)) {
            m.step(&mut s, &Step::Deliver(k));
        } else {
            // carol's query timers only.
            let t = s.nodes[2]
                .timers
                .keys()
                .find(|t| matches!(t, Timer::P(PTimer::Query(_) | PTimer::Ask(_))))
                .expect("the schedule reached its state")
                .clone();
            m.step(&mut s, &Step::Fire(2, t));
        }
        m.safety(&s).unwrap();
    }
    panic!("the schedule did not reach its state in 500 steps");
}

/// The coordinator decided commit, every participant acknowledged (its "committed" record
/// written), and the coordinator has forgotten the transaction; no manager has been told
/// yet. With `history` 0 the coordinator keeps no outcome after the end, as happens once
/// its bounded history has moved on: a participant that lost its "committed" record would
/// now be told Aborted (presumed abort).
fn all_acknowledged(m: &Model) -> State {
    let s = m.init();
    reach(
        m,
        s,
        |x| manager_msg(x, None, "CommitTransaction"),
        |_| None,
        |s| s.decided == Some(Outcome::Committed) && s.nodes[0].core.coord.active() == 0,
    )
}

fn check_from(m: &Model, init: State, max_states: u64, max_depth: usize) -> Result<Report, String> {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut stack: Vec<(State, usize, Vec<String>)> = vec![(init, 0, vec![])];
    let mut r = Report::default();
    while let Some((s, depth, path)) = stack.pop() {
        if !seen.insert(m.fingerprint(&s)) {
            continue;
        }
        r.states += 1;
        if r.states % 50_000 == 0 {
            eprintln!(
                "  {} states, depth {depth}, stack {}",
                r.states,
                stack.len()
            );
        }
        r.max_depth = r.max_depth.max(depth);
        if r.states > max_states {
            return Err(format!(
                "more than {max_states} states: the model is larger than expected"
            ));
        }
        let fail = |e: String| {
            format!(
                "{e}\n after {depth} steps (sign answers not counted): {}",
                path.join(" → ")
            )
        };
        m.safety(&s).map_err(fail)?;
        for n in &s.nodes {
            // The participant's kept per-coordinator counts equal a recount.
            n.core.part.check_counts().map_err(fail)?;
        }
        let (n, decision) = m.live(&s).map_err(fail)?;
        r.longest_suffix = r.longest_suffix.max(n);
        match decision {
            Outcome::Committed => r.committed_ends += 1,
            _ => r.aborted_ends += 1,
        }
        for st in m.steps(&s) {
            // Answering a sign request belongs to the step that made it: it takes no depth
            // (losing one, a fault, does), so the sign process costs the search no reach.
            let free = matches!(&st, Step::Deliver(k) if matches!(s.net[*k], Msg::ToSign { .. }));
            if depth >= max_depth && !free {
                continue;
            }
            let mut t = s.clone();
            m.step(&mut t, &st);
            let mut p = path.clone();
            if p.len() < 64 {
                p.push(format!("{st:?}"));
            }
            stack.push((t, if free { depth } else { depth + 1 }, p));
        }
    }
    Ok(r)
}

fn model(votes: [Vote; 3], budget: u32) -> Model {
    Model {
        votes,
        cfg_coord: Config::default(),
        cfg_part: Config::default(),
        budget,
        suffix_steps: 400,
        signs: Cell::new(0),
        verified_ok: Cell::new(0),
        verified_bad: Cell::new(0),
        signs_lost: Cell::new(0),
        lies: Cell::new(0),
        sign_answers: Default::default(),
        lie_signatures: Default::default(),
    }
}

/// Fault budget (TXCOORD_MODEL_FAULTS, default 1) and depth bound (TXCOORD_MODEL_DEPTH,
/// default 5 in CI; the full run sets it high enough to exhaust the space).
fn bounds() -> (u32, usize) {
    let env = |k: &str, d| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    (
        env("TXCOORD_MODEL_FAULTS", 1) as u32,
        env("TXCOORD_MODEL_DEPTH", 5),
    )
}

/// `n` with thousands separators, as docs/txcoord.md writes it.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table in docs/txcoord.md states what the default search explores: check its row, so
/// the documented numbers cannot drift from the code (deeper runs set the bounds by env and
/// are not documented).
fn check_documented(search: &str, states: u64, max_depth: usize) {
    if std::env::var_os("TXCOORD_MODEL_FAULTS").is_some()
        || std::env::var_os("TXCOORD_MODEL_DEPTH").is_some()
        || std::env::var_os("TXCOORD_MODEL_FULL").is_some()
    {
        return;
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/txcoord.md"))
        .expect("docs/txcoord.md");
    let row = format!("| {search} | {} | {max_depth} |", thousands(states));
    assert!(
        doc.lines().any(|l| l.trim() == row),
        "docs/txcoord.md should have the row\n{row}\n(the model check's table is out of date)"
    );
}

#[test]
fn every_interleaving_is_atomic_and_live() {
    let (b, d) = bounds();
    for votes in [[Vote::Yes; 3], [Vote::Yes, Vote::Yes, Vote::No]] {
        // The no vote's search is bounded at 4 in `cargo xtask test` (its time on a loaded
        // machine), 5 in the full run, or as TXCOORD_MODEL_DEPTH says.
        let d = if votes == [Vote::Yes; 3] || std::env::var_os("TXCOORD_MODEL_DEPTH").is_some() {
            d
        } else {
            later_depth(4)
        };
        let m = model(votes, b);
        let t = std::time::Instant::now();
        let r = check(&m, 20_000_000, d).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "model check, votes {votes:?}, fault budget {b}, depth bound {d}: {} states explored, \
             max depth {}, fault-free suffixes ending committed {}, aborted {}, longest suffix {} steps \
             ({:.1} s, not asserted); {}",
            r.states, r.max_depth, r.committed_ends, r.aborted_ends, r.longest_suffix,
            t.elapsed().as_secs_f64(), m.counts()
        );
        // Not vacuous: the checker reached finished runs of the expected kinds.
        assert!(r.states > 1_000, "{r:?}");
        let search = if votes == [Vote::Yes; 3] {
            format!("from the start, votes yes/yes/yes, budget 1 fault, depth bound {d}")
        } else {
            format!("from the start, votes yes/yes/no, budget 1, depth bound {d}")
        };
        check_documented(&search, r.states, r.max_depth);
        if votes == [Vote::Yes; 3] {
            assert!(r.committed_ends > 0 && r.aborted_ends > 0, "{r:?}");
        } else {
            assert_eq!(r.committed_ends, 0, "{r:?}");
        }
    }
}

/// Depth bound of a search from a later state: `ci` in `cargo xtask test`, 5 with
/// `TXCOORD_MODEL_FULL=1` (the full run, a documented command: docs/txcoord.md).
fn later_depth(ci: usize) -> usize {
    if std::env::var_os("TXCOORD_MODEL_FULL").is_some() {
        5
    } else {
        ci
    }
}

/// One search from `start`: printed, its documented row checked (`row` names the search
/// without its depth bound).
fn search(m: &Model, start: State, depth: usize, row: &str) -> Report {
    let row = format!("{row}, depth bound {depth}");
    let t = std::time::Instant::now();
    m.reset_counts();
    let r = check_from(m, start, 20_000_000, depth).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "model check {row}: {} states explored, max depth {}, fault-free suffixes ending committed {}, aborted {}, longest suffix {} steps ({:.1} s, not asserted); {}",
        r.states, r.max_depth, r.committed_ends, r.aborted_ends, r.longest_suffix,
        t.elapsed().as_secs_f64(), m.counts()
    );
    check_documented(&row, r.states, r.max_depth);
    r
}

/// A mutation must be caught by the same search as its control: the violation's first line
/// and path are printed.
fn caught(m: &Model, start: State, depth: usize, what: &str) {
    let e = check_from(m, start, 20_000_000, depth).expect_err("the mutation must be caught");
    let first = e.lines().next().unwrap();
    let path = e.lines().find(|l| l.starts_with(" after ")).unwrap_or("");
    println!("mutation ({what}) caught: {first}\n {path}");
    assert!(e.contains("atomicity") || e.contains("liveness"), "{e}");
}

const COMMIT_DECISION: &str = "from the commit decision (reached fault-free), budget 2";
const PREPARED: &str = "from every participant prepared, no decision, budget 2";
const UNVOTED: &str = "from two prepared asking the unvoted third, budget 2";
const ACKED: &str = "from every participant acknowledged, no history kept, budget 2";
const SIGNED: &str = "from carol asking bob, who holds the signed commit, budget 2";

/// The signature path, against lying participants: bob (committed, with the coordinator's
/// signed decision) is asked by carol, whose query to the coordinator got no answer. Two
/// faults of any kind, lies included (either outcome, unsigned or signed by the liar) and
/// sign requests lost. The control of the two trust mutations below.
#[test]
fn a_relayed_signature_and_lying_participants_survive_two_faults() {
    let m = model([Vote::Yes; 3], 2);
    let r = search(
        &m,
        asking_a_peer_with_the_signed_commit(&m),
        later_depth(4),
        SIGNED,
    );
    assert!(r.committed_ends > 0, "{r:?}");
    // Not vacuous: relays verified true (bob's honest one) and false (lies), lies told, and
    // sign requests lost were all explored.
    assert!(
        m.verified_ok.get() > 0
            && m.verified_bad.get() > 0
            && m.lies.get() > 0
            && m.signs_lost.get() > 0,
        "{}",
        m.counts()
    );
}

/// `Verify` always succeeds (a relayed decision taken with any 64-byte signature): a peer's
/// forged "Aborted" aborts carol's manager next to bob's commit.
#[test]
fn a_verify_that_always_succeeds_is_caught() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_part.mutation_verify_always_ok = true;
    let start = asking_a_peer_with_the_signed_commit(&m);
    caught(&m, start, later_depth(4), "verify always succeeds");
}

/// A relayed decision checked as a commit whatever outcome it claims: bob replays alice's
/// signed commit as "Aborted", and carol aborts her manager next to bob's commit.
#[test]
fn a_verify_that_ignores_the_outcome_is_caught() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_part.mutation_verify_ignores_outcome = true;
    let start = asking_a_peer_with_the_signed_commit(&m);
    caught(&m, start, later_depth(4), "verify ignores the outcome");
}

/// A peer's unsigned `Committed` / `Aborted` taken (as before the trust rule): a lie aborts
/// carol's manager next to bob's commit.
#[test]
fn a_peer_s_unsigned_word_taken_is_caught() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_part.mutation_trust_unsigned_peer = true;
    let start = asking_a_peer_with_the_signed_commit(&m);
    caught(&m, start, later_depth(4), "a peer's unsigned word taken");
}

/// The control for the first two mutation tests: from the commit decision, two faults.
#[test]
fn from_the_commit_decision_the_real_cores_survive_two_faults() {
    let m = model([Vote::Yes; 3], 2);
    let r = search(&m, just_decided(&m), later_depth(4), COMMIT_DECISION);
    assert!(r.committed_ends > 0, "{r:?}");
}

/// The coordinator's commit decision written lazily: a lost Commit plus a coordinator crash
/// leaves a participant that presumes abort next to ones that committed.
#[test]
fn without_the_forced_commit_record_the_checker_finds_a_violation() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_coord.mutation_lazy_commit_record = true;
    caught(&m, just_decided(&m), later_depth(4), "lazy commit record");
}

/// The participant's prepared record written lazily: a participant crash loses the yes.
#[test]
fn without_the_forced_prepared_record_the_checker_finds_a_violation() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_part.mutation_lazy_prepared_record = true;
    caught(&m, just_decided(&m), later_depth(4), "lazy prepared record");
}

/// Faults between the votes and the decision: every participant has voted yes and the votes
/// are on the way; two faults of any kind (lost or duplicated messages, a node crash, a
/// manager crash, a late manager answer) at any point.
#[test]
fn from_every_participant_prepared_the_real_cores_survive_two_faults() {
    let m = model([Vote::Yes; 3], 2);
    let r = search(&m, all_prepared(&m), later_depth(4), PREPARED);
    assert!(r.committed_ends > 0 && r.aborted_ends > 0, "{r:?}");
}

/// Cooperative termination with a participant that has not voted: bob and carol ask dave
/// next, whose manager's late yes is hidden behind a timeout. The control of the
/// refused-record mutation.
#[test]
fn termination_queries_to_an_unvoted_participant_survive_two_faults() {
    let m = model([Vote::Yes; 3], 2);
    let r = search(
        &m,
        asking_an_unvoted_participant(&m),
        later_depth(4),
        UNVOTED,
    );
    assert!(r.committed_ends > 0 && r.aborted_ends > 0, "{r:?}");
}

/// The participant's `Refused` record written lazily: dave refuses (bob's query, or its
/// timed-out manager vote) and tells its manager to abort, crashes, forgets the refusal and
/// votes yes to the coordinator's next Prepare: a commit the aborted manager cannot apply.
/// (A peer's refusal no longer makes anyone abort: an asker takes only the coordinator's
/// word or its signature; the manager's abort is what the forced record protects.)
#[test]
fn without_the_forced_refused_record_the_checker_finds_a_violation() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_part.mutation_lazy_refused_record = true;
    let start = asking_an_unvoted_participant(&m);
    caught(&m, start, later_depth(4), "lazy refused record");
}

/// After every acknowledgement, with a coordinator that keeps no history (as once its
/// bounded history has moved on): the participants' "committed" records carry the outcome.
/// The control of the committed-record mutation.
#[test]
fn after_every_acknowledgement_the_real_cores_survive_two_faults() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_coord.history = 0;
    let r = search(&m, all_acknowledged(&m), later_depth(4), ACKED);
    assert!(r.committed_ends > 0 && r.aborted_ends == 0, "{r:?}");
}

/// The participant's "committed" record written lazily: a participant crash after its
/// acknowledgement, once the coordinator has forgotten, turns its commit into an abort.
#[test]
fn without_the_forced_committed_record_the_checker_finds_a_violation() {
    let mut m = model([Vote::Yes; 3], 2);
    m.cfg_coord.history = 0;
    m.cfg_part.mutation_lazy_committed_record = true;
    let start = all_acknowledged(&m);
    caught(&m, start, later_depth(4), "lazy committed record");
}

/// A manager vote that timed out no longer counted as a possible yes (the mutation removes
/// `manager_prepared = true` in the vote-timeout branch): a late yes is then never aborted
/// at the manager. The search from the start (budget 1, depth 5, as
/// `every_interleaving_is_atomic_and_live`): the late answer is the fault.
#[test]
fn a_timed_out_vote_not_counted_as_a_yes_is_caught() {
    let mut m = model([Vote::Yes; 3], 1);
    m.cfg_part.mutation_vote_timeout_not_a_yes = true;
    caught(&m, m.init(), 5, "timed-out vote not a possible yes");
}
