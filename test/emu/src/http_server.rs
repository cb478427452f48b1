//! `http-server:distro:sys`: path bindings, static content, HTTP requests handed to the
//! bound process and its answers, and WebSocket channels, with the JSON of process_lib
//! 3.0.0's `http::server` types (the same ones `p2p_common::http` mirrors).
//!
//! Hyperdrive prefixes every bound path with `/<process id>`; a request to a path bound
//! with static content is answered by the server itself, any other goes to the process as
//! `{"Http": IncomingHttpRequest}` with the body in the blob and `expects_response`, and
//! the process answers `HttpResponse` JSON with the body in the blob. Paths match exactly,
//! then by pattern (a `:name` segment matches any one segment, handed to the process in
//! `url_params`), then by prefix for a binding ending in `/*`. The test is the browser: it
//! is logged in unless it says otherwise (`authenticated` bindings refuse it with 401 then),
//! and on the node's own machine unless it says otherwise (`local_only` bindings refuse a
//! remote browser with 403, as Hyperdrive does for a source address that is not loopback).

use crate::bindings::wit::ProcessId;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How long http-server waits for a process's answer (then 504).
pub(crate) const HTTP_TIMEOUT_S: u64 = 15;

#[derive(Debug, Clone)]
pub(crate) struct HttpBinding {
    pub process: ProcessId,
    /// As the process bound it (without the prefix).
    pub path: String,
    pub authenticated: bool,
    pub local_only: bool,
    pub static_content: Option<(Option<String>, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct WsBinding {
    pub process: ProcessId,
    pub path: String,
}

/// A WebSocket frame (`Text`, `Binary`, ...) and its bytes.
pub type WsFrame = (String, Vec<u8>);

#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub process: ProcessId,
    /// Frames the process pushed to the client.
    pub frames: Vec<WsFrame>,
    pub open: bool,
}

/// An answer to an HTTP request the test made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub(crate) fn plain(status: u16, text: &str) -> HttpReply {
        HttpReply {
            status,
            headers: BTreeMap::from([("content-type".to_string(), "text/plain".to_string())]),
            body: text.as_bytes().to_vec(),
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One node's http-server.
#[derive(Default)]
pub(crate) struct HttpServer {
    pub http: BTreeMap<String, HttpBinding>,
    pub ws: BTreeMap<String, WsBinding>,
    pub channels: BTreeMap<u32, Channel>,
    pub next_channel: u32,
    /// Requests handed to processes: kernel message id → the test's handle.
    pub pending: BTreeMap<u64, u64>,
}

/// `/<process id><path>` as Hyperdrive's `format_path_with_process` builds it (`/` is the
/// process's root).
pub(crate) fn full_path(process: &ProcessId, path: &str) -> String {
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        format!("/{process}")
    } else if path.starts_with('/') {
        format!("/{process}{path}")
    } else {
        format!("/{process}/{path}")
    }
}

/// What a process's request to http-server does.
pub(crate) enum Action {
    /// Answer this (`Result<(), HttpServerError>` JSON).
    Answer(Value),
    /// A WebSocket push or close for the client: nothing to answer unless asked.
    Done(Value),
}

impl HttpServer {
    /// The binding serving `path` (the URL path without the query), if any.
    #[cfg(test)]
    pub fn route(&self, path: &str) -> Option<&HttpBinding> {
        self.route_with_params(path).map(|(b, _)| b)
    }

    /// The binding serving `path` and the values of its `:name` segments: an exact binding
    /// first, then the pattern with the most literal segments, then the longest `/*` prefix.
    pub fn route_with_params(
        &self,
        path: &str,
    ) -> Option<(&HttpBinding, BTreeMap<String, String>)> {
        let path = path.trim_end_matches('/');
        if let Some(b) = self.http.get(path) {
            return Some((b, BTreeMap::new()));
        }
        let segments: Vec<&str> = path.split('/').collect();
        let pattern = self
            .http
            .iter()
            .filter(|(k, _)| k.contains("/:"))
            .filter_map(|(k, b)| {
                let parts: Vec<&str> = k.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut params = BTreeMap::new();
                let mut literal = 0;
                for (p, s) in parts.iter().zip(&segments) {
                    match p.strip_prefix(':') {
                        Some(name) if !s.is_empty() => {
                            params.insert(name.to_string(), s.to_string());
                        }
                        Some(_) => return None,
                        None if p == s => literal += 1,
                        None => return None,
                    }
                }
                Some((literal, b, params))
            })
            .max_by_key(|(literal, _, _)| *literal);
        if let Some((_, b, params)) = pattern {
            return Some((b, params));
        }
        self.http
            .iter()
            .filter_map(|(k, b)| {
                let prefix = k.strip_suffix("/*")?;
                (path == prefix || path.starts_with(&format!("{prefix}/"))).then_some((k.len(), b))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, b)| (b, BTreeMap::new()))
    }

    pub fn ws_route(&self, path: &str) -> Option<&WsBinding> {
        self.ws.get(path.trim_end_matches('/'))
    }

    /// A request from local process `from` (body, blob and its mime type).
    pub fn action(
        &mut self,
        from: &ProcessId,
        body: &[u8],
        blob: Option<&[u8]>,
        mime: Option<&str>,
    ) -> Action {
        let ok = json!({"Ok": null});
        let err = |e: &str| Action::Answer(json!({ "Err": e }));
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return err("MalformedRequest");
        };
        let Some((name, arg)) = v
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        else {
            return err("MalformedRequest");
        };
        let s = |k: &str| arg.get(k).and_then(Value::as_str).map(str::to_string);
        let b = |k: &str| arg.get(k).and_then(Value::as_bool).unwrap_or(false);
        match name.as_str() {
            "Bind" | "SecureBind" => {
                let Some(path) = s("path") else {
                    return err("MalformedRequest");
                };
                let static_content = if b("cache") {
                    let Some(blob) = blob else {
                        return err("NoBlob");
                    };
                    Some((mime.map(str::to_string), blob.to_vec()))
                } else {
                    None
                };
                let authenticated = name == "SecureBind" || b("authenticated");
                self.http.insert(
                    full_path(from, &path),
                    HttpBinding {
                        process: from.clone(),
                        path,
                        authenticated,
                        local_only: b("local_only"),
                        static_content,
                    },
                );
                Action::Answer(ok)
            }
            "Unbind" => {
                let Some(path) = s("path") else {
                    return err("MalformedRequest");
                };
                self.http.remove(&full_path(from, &path));
                Action::Answer(ok)
            }
            "WebSocketBind" | "WebSocketSecureBind" => {
                let Some(path) = s("path") else {
                    return err("MalformedRequest");
                };
                // The test's WebSocket client is always the logged-in owner.
                self.ws.insert(
                    full_path(from, &path),
                    WsBinding {
                        process: from.clone(),
                        path,
                    },
                );
                Action::Answer(ok)
            }
            "WebSocketUnbind" => {
                let Some(path) = s("path") else {
                    return err("MalformedRequest");
                };
                self.ws.remove(&full_path(from, &path));
                Action::Answer(ok)
            }
            "WebSocketPush" => {
                // A channel id past u32 names no channel (never a truncated other one).
                let channel = arg.get("channel_id").and_then(Value::as_u64);
                let kind = s("message_type");
                let (Some(channel), Some(kind)) = (channel, kind) else {
                    return err("MalformedRequest");
                };
                let Some(blob) = blob else {
                    return err("NoBlob");
                };
                match u32::try_from(channel)
                    .ok()
                    .and_then(|c| self.channels.get_mut(&c))
                {
                    Some(c) if c.open && &c.process == from => {
                        c.frames.push((kind, blob.to_vec()));
                        Action::Done(ok)
                    }
                    _ => Action::Done(json!({"Err": "WsChannelNotFound"})),
                }
            }
            "WebSocketClose" => match arg
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .and_then(|c| self.channels.get_mut(&c))
            {
                Some(c) if &c.process == from => {
                    c.open = false;
                    Action::Done(ok)
                }
                _ => Action::Done(json!({"Err": "WsChannelNotFound"})),
            },
            _ => err("MalformedRequest"),
        }
    }
}

/// Content type by file name, as process_lib's `get_mime_type` guesses it for `serve_ui`.
pub(crate) fn mime_of(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html",
        "js" => "application/javascript",
        "css" => "text/css",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_prefixed_and_routed() {
        let p = ProcessId::new("web", "p", "q.os");
        let mut s = HttpServer::default();
        let bind = |path: &str| {
            format!(
                r#"{{"Bind":{{"path":"{path}","authenticated":false,"local_only":false,"cache":false}}}}"#
            )
        };
        for path in ["/", "/api/*", "/api/exact"] {
            assert!(
                matches!(s.action(&p, bind(path).as_bytes(), None, None), Action::Answer(v) if v == json!({"Ok": null}))
            );
        }
        assert_eq!(s.route("/web:p:q.os").unwrap().path, "/");
        assert_eq!(s.route("/web:p:q.os/").unwrap().path, "/");
        assert_eq!(s.route("/web:p:q.os/api/x/y").unwrap().path, "/api/*");
        assert_eq!(s.route("/web:p:q.os/api/exact").unwrap().path, "/api/exact");
        assert!(s.route("/web:p:q.os/other").is_none());
        assert!(s.route("/other:p:q.os").is_none());
        let cached =
            br#"{"Bind":{"path":"/a.js","authenticated":false,"local_only":false,"cache":true}}"#;
        assert!(
            matches!(s.action(&p, cached, None, None), Action::Answer(v) if v == json!({"Err": "NoBlob"}))
        );
        assert!(matches!(
            s.action(&p, cached, Some(b"js"), Some("text/javascript")),
            Action::Answer(_)
        ));
        assert_eq!(
            s.route("/web:p:q.os/a.js").unwrap().static_content,
            Some((Some("text/javascript".to_string()), b"js".to_vec()))
        );
        for bad in [&b"{}"[..], b"\"Bind\"", b"{\"Dance\":{}}", b"nope"] {
            assert!(
                matches!(s.action(&p, bad, None, None), Action::Answer(v) if v == json!({"Err": "MalformedRequest"}))
            );
        }
        // `:name` segments match one segment each; literal segments win.
        for path in ["/doc/:id", "/doc/:id/rev/:rev", "/doc/new"] {
            assert!(matches!(
                s.action(&p, bind(path).as_bytes(), None, None),
                Action::Answer(_)
            ));
        }
        let (b, params) = s.route_with_params("/web:p:q.os/doc/42").unwrap();
        assert_eq!(b.path, "/doc/:id");
        assert_eq!(
            params,
            BTreeMap::from([("id".to_string(), "42".to_string())])
        );
        let (b, params) = s.route_with_params("/web:p:q.os/doc/42/rev/7").unwrap();
        assert_eq!(b.path, "/doc/:id/rev/:rev");
        assert_eq!(params.len(), 2);
        assert_eq!(params["rev"], "7");
        let (b, params) = s.route_with_params("/web:p:q.os/doc/new").unwrap();
        assert_eq!((b.path.as_str(), params.len()), ("/doc/new", 0));
        assert!(s.route("/web:p:q.os/doc/42/rev").is_none());
        assert!(s.route("/web:p:q.os/doc").is_none());
        // Under a `/*` binding a pattern still wins.
        assert_eq!(s.route("/web:p:q.os/api/x").unwrap().path, "/api/*");
        assert!(!s.route("/web:p:q.os/doc/1").unwrap().local_only);
        let local =
            br#"{"Bind":{"path":"/admin","authenticated":false,"local_only":true,"cache":false}}"#;
        assert!(matches!(s.action(&p, local, None, None), Action::Answer(_)));
        assert!(s.route("/web:p:q.os/admin").unwrap().local_only);
        // Pushes only to an open channel of the same process.
        let push = br#"{"WebSocketPush":{"channel_id":1,"message_type":"Text"}}"#;
        assert!(
            matches!(s.action(&p, push, Some(b"x"), None), Action::Done(v) if v["Err"] == "WsChannelNotFound")
        );
        s.channels.insert(
            1,
            Channel {
                process: p.clone(),
                frames: vec![],
                open: true,
            },
        );
        assert!(
            matches!(s.action(&p, push, Some(b"x"), None), Action::Done(v) if v["Ok"].is_null())
        );
        let other = ProcessId::new("other", "p", "q.os");
        assert!(
            matches!(s.action(&other, push, Some(b"y"), None), Action::Done(v) if v["Err"] == "WsChannelNotFound")
        );
        assert_eq!(s.channels[&1].frames, [("Text".to_string(), b"x".to_vec())]);
        // An id past u32 that truncates to channel 1 names no channel (push nor close).
        let wide = (1u64 << 32) + 1;
        let push = format!(r#"{{"WebSocketPush":{{"channel_id":{wide},"message_type":"Text"}}}}"#);
        assert!(
            matches!(s.action(&p, push.as_bytes(), Some(b"z"), None), Action::Done(v) if v["Err"] == "WsChannelNotFound")
        );
        let close = format!(r#"{{"WebSocketClose":{wide}}}"#);
        assert!(
            matches!(s.action(&p, close.as_bytes(), None, None), Action::Done(v) if v["Err"] == "WsChannelNotFound")
        );
        assert!(s.channels[&1].open);
        assert_eq!(s.channels[&1].frames.len(), 1);
    }
}
