//! Typed calls to the `notify` process on our node.

use super::{expect_reply, ClientError, Transport};
use crate::api::notify::{
    AppMessage, Notification, NotifyStats, PayloadKind, Policy, Request, Response,
    SubscriptionInfo, TopicInfo,
};
use crate::ids::NodeId;

super::typed_client!(
    /// Typed calls to notify on our node (every operation but Ping and Info is local-only).
    NotifyClient,
    crate::api::notify
);

impl<T: Transport> NotifyClient<T> {
    /// Create `topic` on our node, owned by the calling app, or change its policy.
    pub fn set_topic(&mut self, topic: &str, policy: Policy) -> Result<TopicInfo, ClientError> {
        let req = Request::SetTopic {
            topic: topic.into(),
            policy,
        };
        expect_reply!(self.call(&req)?, Response::TopicSet(t) => t)
    }

    /// Set how long (`max_age_s`, 60..=604800) and how many (`max_count`, 1..=10000) of our
    /// `topic`'s notifications are kept for subscribers that are behind; `None` for the
    /// default (a day, 1,000). Only the topic's owner may. Returns the topic with the
    /// settings now in force.
    pub fn set_retention(
        &mut self,
        topic: &str,
        max_age_s: Option<u64>,
        max_count: Option<u32>,
    ) -> Result<TopicInfo, ClientError> {
        let req = Request::SetRetention {
            topic: topic.into(),
            max_age_s,
            max_count,
        };
        expect_reply!(self.call(&req)?, Response::TopicSet(t) => t)
    }

    /// Publish `payload` to our `topic`; answered once it is on disk. The transport must
    /// carry blobs ([`Transport::call_with_blob`]; `ProcessTransport` does).
    pub fn publish(
        &mut self,
        topic: &str,
        kind: PayloadKind,
        payload: Vec<u8>,
    ) -> Result<Notification, ClientError> {
        let req = Request::Publish {
            topic: topic.into(),
            kind,
        };
        let reply: Response = self.base.call_blob(&req, payload)?;
        expect_reply!(reply, Response::Published(n) => n)
    }

    /// Publish a JSON value.
    pub fn publish_json(
        &mut self,
        topic: &str,
        value: &serde_json::Value,
    ) -> Result<Notification, ClientError> {
        let bytes = serde_json::to_vec(value).expect("a JSON value serializes");
        self.publish(topic, PayloadKind::Json, bytes)
    }

    /// Subscribe the calling app to `topic` of `publisher`. Notify first sends the app an
    /// `AppMessage::Welcome` and answers once it got through (at once if the app answers it,
    /// after 2 s if the app is blocked in this call). Returns the first sequence number the
    /// app will receive.
    pub fn subscribe(&mut self, publisher: &NodeId, topic: &str) -> Result<u64, ClientError> {
        let req = Request::Subscribe {
            publisher: publisher.clone(),
            topic: topic.into(),
        };
        expect_reply!(self.call(&req)?, Response::Subscribed { next_seq } => next_seq)
    }

    pub fn unsubscribe(&mut self, publisher: &NodeId, topic: &str) -> Result<(), ClientError> {
        let req = Request::Unsubscribe {
            publisher: publisher.clone(),
            topic: topic.into(),
        };
        expect_reply!(self.call(&req)?, Response::Unsubscribed {} => ())
    }

    pub fn subscriptions(&mut self) -> Result<Vec<SubscriptionInfo>, ClientError> {
        let req = Request::ListSubscriptions {};
        expect_reply!(self.call(&req)?, Response::Subscriptions { subscriptions } => subscriptions)
    }

    /// Every topic of our node (all pages of `ListTopics`).
    pub fn topics(&mut self) -> Result<Vec<TopicInfo>, ClientError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.topics_page(cursor, None)?;
            all.extend(page);
            match next {
                None => return Ok(all),
                // A cursor that does not move on would loop for ever, or skip topics.
                Some(n) if all.last().is_some_and(|t| t.topic == n) => cursor = Some(n),
                Some(n) => {
                    return Err(ClientError::Unexpected(format!(
                        "ListTopics answered next_cursor {n:?}, not its last topic"
                    )))
                }
            }
        }
    }

    /// One page of `ListTopics`: the topics after `cursor`, and the next page's cursor.
    pub fn topics_page(
        &mut self,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<(Vec<TopicInfo>, Option<String>), ClientError> {
        let req = Request::ListTopics { cursor, limit };
        expect_reply!(
            self.call(&req)?,
            Response::Topics { topics, next_cursor, } => (topics, next_cursor)
        )
    }

    /// The counters, with every topic's (all pages of `Stats`).
    pub fn stats(&mut self) -> Result<NotifyStats, ClientError> {
        let mut all = self.stats_page(None, None)?;
        while let Some(n) = all.next_cursor.take() {
            if all.topics.last().map(|t| &t.topic) != Some(&n) {
                return Err(ClientError::Unexpected(format!(
                    "Stats answered next_cursor {n:?}, not its last topic"
                )));
            }
            let page = self.stats_page(Some(n), None)?;
            all.topics.extend(page.topics);
            all.next_cursor = page.next_cursor;
        }
        Ok(all)
    }

    /// The counters, with our topics' after `cursor` (`next_cursor` says where the next
    /// page starts).
    pub fn stats_page(
        &mut self,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<NotifyStats, ClientError> {
        expect_reply!(self.call(&Request::Stats { cursor, limit })?, Response::Stats(s) => s)
    }

    /// Network health as notify sees it (reachability and breakers of its outbox).
    pub fn health(&mut self) -> Result<crate::resilience::HealthReport, ClientError> {
        expect_reply!(self.call(&Request::Health {})?, Response::Health(h) => h)
    }
}

/// What notify sent the app, from the body of a request it received (the payload of a
/// `HandleNotification` is that request's blob); None if the body is something else.
pub fn parse_app_message(body: &[u8]) -> Option<AppMessage> {
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{decode_request, encode, encode_result, ApiResult};
    use crate::ids::Address;
    use crate::service::SendErrorKind;

    struct Recording {
        seen: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        reply: Vec<u8>,
    }

    impl Transport for Recording {
        fn call(&mut self, to: &Address, body: Vec<u8>, t: u64) -> Result<Vec<u8>, SendErrorKind> {
            self.call_with_blob(to, body, None, t)
        }
        fn call_with_blob(
            &mut self,
            _to: &Address,
            body: Vec<u8>,
            blob: Option<Vec<u8>>,
            _t: u64,
        ) -> Result<Vec<u8>, SendErrorKind> {
            self.seen.push((body, blob));
            Ok(self.reply.clone())
        }
    }

    #[test]
    fn publish_sends_the_payload_as_the_blob() {
        let alice: NodeId = "alice.os".parse().unwrap();
        let note = Notification {
            id: "alice.os/news/1".into(),
            publisher: alice.clone(),
            topic: "news".into(),
            seq: 1,
            at: 5,
            kind: PayloadKind::Json,
            size: 7,
            signature: vec![],
        };
        let reply = encode_result::<Response>(&Ok(Response::Published(note.clone())));
        let mut c = NotifyClient::local(
            &alice,
            Recording {
                seen: vec![],
                reply,
            },
        );
        let got = c
            .publish_json("news", &serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(got, note);
        let (body, blob) = &c.transport.seen[0];
        let req: Request = decode_request(body, "notify", 1 << 20).unwrap();
        assert_eq!(
            req,
            Request::Publish {
                topic: "news".into(),
                kind: PayloadKind::Json
            }
        );
        assert_eq!(blob.as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn set_retention_sends_the_settings_and_returns_the_topic() {
        let alice: NodeId = "alice.os".parse().unwrap();
        let info = TopicInfo {
            topic: "news".into(),
            owner: "alice.os@app:app:someone.os".into(),
            policy: Policy::Open,
            last_seq: 0,
            first_retained: 1,
            subscriber_nodes: 0,
            retention: crate::api::notify::TopicRetention {
                max_age_s: 600,
                max_count: 1_000,
            },
        };
        let reply = encode_result::<Response>(&Ok(Response::TopicSet(info.clone())));
        let mut c = NotifyClient::local(
            &alice,
            Recording {
                seen: vec![],
                reply,
            },
        );
        assert_eq!(c.set_retention("news", Some(600), None).unwrap(), info);
        let (body, _) = &c.transport.seen[0];
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            r#"{"SetRetention":{"topic":"news","max_age_s":600,"max_count":null}}"#
        );
    }

    #[test]
    fn a_transport_without_blobs_refuses_publish_rather_than_dropping_the_payload() {
        let alice: NodeId = "alice.os".parse().unwrap();
        let calls = std::cell::Cell::new(0);
        let t = |_: &Address, _: Vec<u8>, _: u64| {
            calls.set(calls.get() + 1);
            Ok(encode_result::<Response>(&Ok(Response::Unsubscribed {})))
        };
        let mut c = NotifyClient::local(&alice, t);
        assert_eq!(
            c.publish("news", PayloadKind::Blob, vec![1]).unwrap_err(),
            ClientError::Send(SendErrorKind::Offline)
        );
        c.unsubscribe(&alice, "news").unwrap();
        assert!(matches!(c.stats(), Err(ClientError::Unexpected(_))));
        assert_eq!(calls.get(), 2);
        let m = parse_app_message(&encode(&AppMessage::Welcome {
            publisher: alice,
            topic: "news".into(),
        }));
        assert!(matches!(m, Some(AppMessage::Welcome { .. })));
        let _: ApiResult<Response> = Ok(Response::Accepted {});
    }
}
