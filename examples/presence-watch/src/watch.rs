//! The app's logic, with no I/O: [`Watch`] calls our processes through a [`Transport`].

use p2p_common::api::presence::{EventKind, ListFilter, MemberStatus, SubscriberMessage};
use p2p_common::api::ServiceInfo;
use p2p_common::client::{BaseClient, ClientError, PresenceClient, Transport};
use p2p_common::{Address, NodeId};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Our process name (in whatever package you install it).
pub const NAME: &str = "presence-watch";

/// The p2p-patterns processes it calls, presence first.
pub const SERVICES: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

/// The capability it publishes in its NodeInfo, so other nodes can find watchers.
pub const CAPABILITY: &str = "presence-watch";

/// What a service answered to `Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub process: &'static str,
    pub answer: Result<ServiceInfo, ClientError>,
}

/// What to do with a request the app received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// A line to print, if any.
    pub line: Option<String>,
    /// The answer body (sent if the request expects one).
    pub reply: Vec<u8>,
}

/// The app's state and logic.
pub struct Watch<T> {
    our: NodeId,
    presence_addr: Address,
    presence: PresenceClient<T>,
    others: Vec<BaseClient<T>>,
    members: BTreeMap<NodeId, MemberStatus>,
    /// The `seq` of the next event we expect, once subscribed.
    next_seq: Option<u64>,
}

impl<T: Transport + Clone> Watch<T> {
    /// The app on `our` node; every client gets a copy of `transport`.
    pub fn new(our: &NodeId, transport: T) -> Self {
        let others = SERVICES[1..]
            .iter()
            .map(|p| BaseClient::local(our, p, transport.clone()))
            .collect();
        Watch {
            our: our.clone(),
            presence_addr: Address::ours(our, SERVICES[0]),
            presence: PresenceClient::local(our, transport),
            others,
            members: BTreeMap::new(),
            next_seq: None,
        }
    }
}

impl<T: Transport> Watch<T> {
    /// `Info` of every service, in [`SERVICES`] order; a failure (e.g. the Timeout of an app
    /// that did not grant the service messaging, with what to add) is reported, not fatal.
    pub fn survey(&mut self) -> Vec<Survey> {
        let mut out = vec![Survey {
            process: SERVICES[0],
            answer: self.presence.info(),
        }];
        for (process, client) in SERVICES[1..].iter().zip(&mut self.others) {
            out.push(Survey {
                process,
                answer: client.info(),
            });
        }
        out
    }

    /// Publish our NodeInfo, join through `bootstrap` (if not empty; presence remembers the
    /// last list across restarts), subscribe to events and read the members. Returns how
    /// many members we know.
    pub fn start(&mut self, bootstrap: Vec<NodeId>) -> Result<usize, ClientError> {
        self.presence.set_info(
            env!("CARGO_PKG_VERSION"),
            vec![CAPABILITY.to_string()],
            BTreeMap::new(),
        )?;
        if !bootstrap.is_empty() {
            self.presence.join(bootstrap)?;
        }
        self.presence.subscribe()?;
        self.resync()?;
        Ok(self.members.len())
    }

    /// Every member and its status, as we know it.
    pub fn members(&self) -> &BTreeMap<NodeId, MemberStatus> {
        &self.members
    }

    fn resync(&mut self) -> Result<(), ClientError> {
        self.members = self
            .presence
            .all_nodes(ListFilter::default())?
            .into_iter()
            .map(|v| (v.info.node_id, v.status))
            .collect();
        Ok(())
    }

    /// A request from `from` with `body`: an event or the welcome from our presence, or a
    /// command from a process on our node. Anything else is refused.
    pub fn on_request(&mut self, from: &Address, body: &[u8]) -> Handled {
        if *from == self.presence_addr {
            if let Ok(message) = serde_json::from_slice::<SubscriberMessage>(body) {
                return self.on_presence(message);
            }
        }
        if from.node != self.our {
            return refuse(format!("{from}: only processes on {} may ask", self.our));
        }
        let command: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return refuse(format!("not JSON: {e}")),
        };
        if command == json!("Members") {
            let members: BTreeMap<String, String> = self
                .members
                .iter()
                .map(|(n, s)| (n.to_string(), format!("{s:?}")))
                .collect();
            return answer(None, json!({ "Ok": members }));
        }
        if let Some(nodes) = command.get("Join").and_then(Value::as_array) {
            let parsed: Result<Vec<NodeId>, String> = nodes
                .iter()
                .map(|n| {
                    n.as_str()
                        .and_then(|s| NodeId::parse(s).ok())
                        .ok_or_else(|| format!("not a node id: {n}"))
                })
                .collect();
            let result = match parsed {
                Err(e) => Err(e),
                Ok(bootstrap) => self
                    .presence
                    .join(bootstrap)
                    .map_err(|e| e.to_string())
                    .map(|list| {
                        let names: Vec<String> = list.iter().map(|n| n.to_string()).collect();
                        format!("joining through {}", names.join(", "))
                    }),
            };
            return match result {
                Ok(line) => answer(Some(line.clone()), json!({ "Ok": line })),
                Err(e) => answer(Some(format!("Join failed: {e}")), json!({ "Err": e })),
            };
        }
        refuse(format!(
            r#"unknown command {command}; try {{"Join": ["bob.os"]}} or "Members""#
        ))
    }

    fn on_presence(&mut self, message: SubscriberMessage) -> Handled {
        let ok = json!({ "Ok": null });
        match message {
            SubscriberMessage::Welcome { node, seq } => {
                self.next_seq = Some(seq + 1);
                answer(Some(format!("presence on {node} will send us events")), ok)
            }
            SubscriberMessage::Dropped { node, seq, reason } => {
                self.next_seq = None;
                answer(
                    Some(format!(
                        "presence on {node} ended our subscription after event {seq}: {reason}"
                    )),
                    ok,
                )
            }
            SubscriberMessage::PresenceEvent(e) => {
                let mut line = String::new();
                if let Some(expected) = self.next_seq.filter(|s| e.seq > *s) {
                    line.push_str(&format!("(missed {} events) ", e.seq - expected));
                }
                self.next_seq = Some(e.seq + 1);
                let (status, what) = match e.kind {
                    EventKind::NodeJoined => (MemberStatus::Alive, "joined"),
                    EventKind::NodeAlive => (MemberStatus::Alive, "is alive again"),
                    EventKind::NodeSuspect => (MemberStatus::Suspect, "is suspected"),
                    EventKind::NodeDead => (MemberStatus::Dead, "is dead"),
                    EventKind::NodeLeft => (MemberStatus::Left, "left"),
                };
                self.members.insert(e.node.clone(), status);
                line.push_str(&format!(
                    "{} {what} (incarnation {})",
                    e.node, e.incarnation
                ));
                answer(Some(line), ok)
            }
        }
    }
}

fn answer(line: Option<String>, reply: Value) -> Handled {
    Handled {
        line,
        reply: serde_json::to_vec(&reply).unwrap_or_default(),
    }
}

fn refuse(why: String) -> Handled {
    answer(Some(format!("refused: {why}")), json!({ "Err": why }))
}

/// The lines printed at start: one per service, then how the start went.
pub fn report(survey: &[Survey], started: &Result<usize, ClientError>) -> Vec<String> {
    let mut lines: Vec<String> = survey
        .iter()
        .map(|s| match &s.answer {
            Ok(i) => format!(
                "{}: {} {} (protocol {}) on {}",
                s.process, i.name, i.version, i.protocol_version, i.node
            ),
            Err(e) => format!("{}: {e}", s.process),
        })
        .collect();
    lines.push(match started {
        Ok(n) => format!("watching presence: {n} members known"),
        Err(e) => format!("could not start watching presence: {e}"),
    });
    lines
}
