//! Requests: every one passes the gate ([`crate::api::Gate::admit`]); a local operation is checked by
//! the local API ([`api::command`]) and carried out across the machines it touches; a
//! protocol message goes to the machine that serves it, with its sender as an argument.

use super::{Eff, Presence};
use crate::api::{self, Command};
use crate::detector::Env;
use crate::regclient::RegClient;
use p2p_common::api::presence::{MemberStatus, Request, Response, Update};
use p2p_common::api::{encode_result, ApiError, ApiResult, ErrorCode, PROTOCOL_VERSION};
use p2p_common::resilience::members_only;
use p2p_common::service::log;
use p2p_common::{Address, Effect, Level, Millis, NodeId, RequestId};

impl Presence {
    pub(super) fn on_request(
        &mut self,
        id: RequestId,
        from: Address,
        body: Vec<u8>,
        expects_response: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let result = match self.gate.admit(&body, &from, &self.node.our, now, out) {
            Err(e) => Err(e),
            Ok(Request::Subscribe {}) if expects_response => {
                match self.events.subscribe(id, &from, &self.node.me, now) {
                    // Answered when the welcome's outcome comes back (replying later).
                    Ok(Some(send)) => return out.push(send),
                    Ok(None) => Ok(Response::Subscribed {}),
                    Err(e) => Err(e),
                }
            }
            Ok(req) if req.is_protocol() => self.serve_peer(req, &from.node, body.len(), now, out),
            Ok(req) => self.serve_local(req, &from, now, out),
        };
        if let Err(e) = &result {
            out.push(log(Level::Debug, format!("{from}: {e}")));
        }
        if expects_response {
            out.push(Effect::reply(id, encode_result(&result)));
        }
    }

    /// A local operation (or `Ping` / `Info`), checked by the local API, carried out.
    fn serve_local(
        &mut self,
        req: Request,
        from: &Address,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        Ok(
            match api::command(req, &self.node, &self.members, self.events.seq(), now)? {
                Command::Answer(r) => r,
                Command::Join(list) => {
                    self.node.join(list.clone());
                    self.diss.announce(&self.node);
                    out.push(self.persist());
                    self.reg.join(&self.node, out);
                    self.diss.joined(&self.node, &mut self.rng, out);
                    Response::Joining { bootstrap: list }
                }
                Command::Leave => {
                    if !self.node.left {
                        self.node.left = true;
                        self.detector.stop();
                        self.diss.announce(&self.node);
                        // Spread the leave right away rather than waiting for the next tick.
                        self.diss
                            .gossip_round(&self.node, &self.members, &mut self.rng, out);
                        RegClient::leave(&self.node, out);
                        out.push(self.persist());
                    }
                    Response::Left {}
                }
                Command::SetInfo(info) => {
                    self.node.info = info.clone();
                    // A newer incarnation makes every member take the new info.
                    self.node.bump();
                    self.diss.announce(&self.node);
                    out.push(self.persist());
                    Response::InfoSet(info)
                }
                Command::SetConfig(cfg) => {
                    self.node.cfg = cfg;
                    self.rebuild_reach();
                    out.push(self.persist());
                    Response::Config(self.node.cfg.clone())
                }
                Command::Subscribe => self
                    .events
                    .subscribe_now(from, out)
                    .map(|()| Response::Subscribed {})?,
                Command::Unsubscribe => self
                    .events
                    .unsubscribe(from, out)
                    .map(|()| Response::Unsubscribed {})?,
                Command::Stats => Response::Stats(self.stats()),
                Command::Health => Response::Health(self.health(now)),
            },
        )
    }

    /// A protocol message from presence on node `from`, `size` bytes long.
    fn serve_peer(
        &mut self,
        req: Request,
        from: &NodeId,
        size: usize,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        match req {
            Request::RegisterNode {
                info,
                incarnation,
                protocol_version,
                list,
            } => {
                let cfg = &self.node.cfg;
                let fact = self.registry.on_register(
                    from,
                    info,
                    incarnation,
                    protocol_version,
                    cfg,
                    now,
                )?;
                self.merge(&[fact], Some(from), now, out);
                self.probe_succeeded(from, now, None);
                Ok(self
                    .registry
                    .registered(&self.node, &self.members, from, list, now))
            }
            Request::ListRegistry { cursor, limit } => Ok(self.registry.on_list(
                &self.node,
                &self.members,
                from,
                cursor.as_ref(),
                limit,
                now,
            )),
            Request::Deregister {} => Ok(self.registry.on_deregister(from)),
            Request::Probe { seq, updates, .. } => {
                let updates = self.capped(updates, out);
                self.merge(&updates, Some(from), now, out);
                self.probe_succeeded(from, now, None);
                let updates = self.diss.piggyback(&self.node, &self.members, Some(from));
                Ok(Response::Ack {
                    seq,
                    updates,
                    protocol_version: PROTOCOL_VERSION,
                })
            }
            Request::ProbeRequest {
                seq,
                target,
                updates,
                timeout_s,
                ..
            } => {
                let updates = self.capped(updates, out);
                self.merge(&updates, Some(from), now, out);
                let env = &mut env!(self);
                let acts = self
                    .detector
                    .on_probe_request(env, from, seq, target, timeout_s)?;
                self.run(acts, now, out);
                Ok(Response::Accepted {})
            }
            Request::IndirectAck { seq, target } => {
                let acts = self
                    .detector
                    .on_indirect_ack(&mut env!(self), from, seq, target, now);
                self.run(acts, now, out);
                Ok(Response::Accepted {})
            }
            Request::IndirectNack { seq, target } => {
                let acts = self
                    .detector
                    .on_indirect_nack(&mut env!(self), from, seq, target, now);
                self.run(acts, now, out);
                Ok(Response::Accepted {})
            }
            Request::Gossip { updates } => {
                let updates = self.capped(updates, out);
                self.merge(&updates, Some(from), now, out);
                Ok(Response::Accepted {})
            }
            Request::PushPull {
                members, want_info, ..
            } => {
                self.diss.push_pulls += 1;
                // Members only: the sender's own fact goes first (a node speaking for itself
                // may join), then the check, then the rest (introductions are budgeted per
                // sender). A member we think dead qualifies: the exchange with a dead member
                // is what merges the halves of a healed partition; one that left does not.
                // The answer is bounded relative to the request, in entries and in bytes
                // (joiners page the registry instead).
                let (own, rest): (Vec<Update>, Vec<Update>) =
                    members.iter().cloned().partition(|u| &u.node == from);
                self.merge(&own, Some(from), now, out);
                let member = self.members.get(from);
                members_only(
                    member.is_some_and(|m| m.status != MemberStatus::Left),
                    "PushPull",
                )?;
                self.merge(&rest, Some(from), now, out);
                Ok(self
                    .diss
                    .answer(&self.node, &self.members, &members, &want_info, size))
            }
            // Local operations are served by serve_local.
            _ => Err(ApiError::new(ErrorCode::Internal, "not a protocol message")),
        }
    }
}
