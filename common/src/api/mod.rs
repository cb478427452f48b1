//! Wire types shared by every process: the error shape, the version constants, size limits,
//! and decoding that turns any bad body into a clear [`ApiError`].
//!
//! A request body is a JSON externally tagged enum (`{"Join": {...}}`; a variant without
//! payload is the bare string `"Ping"`, and `{"Ping": {}}` is read too); a response body is
//! `{"Ok": <variant>}` or `{"Err": {"code": "...", "message": "..."}}`. Nothing is a JSON
//! string inside JSON. The JSON is exactly what types generated from `api/*.wit` read and
//! write ([`wire`]; checked by the `wit-compat` test crate).

pub mod notify;
pub mod presence;
pub mod sync;
pub mod txcoord;
pub mod wire;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the wire protocol spoken between our processes. Bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest wire protocol version we still speak. A peer below it is refused
/// (`VersionMismatch`); a peer above `PROTOCOL_VERSION` is read as far as we understand it.
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;
/// Package version, shared by all processes.
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest request body a process accepts by default (bytes). Hyperware's networking layer
/// drops messages over ~10 MiB; ours stay far below that.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Not valid JSON, or not a request this process knows.
    BadRequest,
    /// Larger than the process accepts.
    TooLarge,
    /// Unknown node, document, transaction, subscription...
    NotFound,
    /// The caller may not do this (e.g. a remote node calling a local-only operation).
    Forbidden,
    /// The peer speaks a protocol version we do not.
    VersionMismatch,
    /// A rate or size cap was hit; retry later.
    Overloaded,
    /// A remote peer did not answer in time or is offline.
    Unavailable,
    /// A bug on our side.
    Internal,
}

/// The error half of every response: `{"code": "BadRequest", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, m)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// What every response body is: `{"Ok": ...}` or `{"Err": ...}`.
pub type ApiResult<T> = Result<T, ApiError>;

/// Answer to `Info`, on every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    pub protocol_version: u32,
    pub node: String,
}

/// Answer to `Ping`, on every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub node: String,
    pub protocol_version: u32,
}

const TOO_DEEP: &str =
    " (the JSON is nested too deeply: at most 128 levels of arrays and objects are read)";

/// Decode a request body of type `T` (an externally tagged enum), with a size cap.
///
/// Every failure is an [`ApiError`] with a message a developer can act on, including the
/// guide's habit of sending a JSON string that contains JSON.
pub fn decode_request<T: DeserializeOwned>(body: &[u8], service: &str, max: usize) -> ApiResult<T> {
    if body.len() > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "body is {} bytes; {service} accepts at most {max}",
                body.len()
            ),
        ));
    }
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(e) => {
            // serde_json stops at 128 levels of arrays and objects; say so, not "invalid".
            let deep = |e: &serde_json::Error| e.to_string().starts_with("recursion limit");
            let hint = match serde_json::from_slice::<serde_json::Value>(body) {
                _ if deep(&e) => TOO_DEEP.to_string(),
                Err(v) if deep(&v) => TOO_DEEP.to_string(),
                Err(_) => " (the body is not valid JSON)".to_string(),
                Ok(serde_json::Value::String(s)) if s.trim_start().starts_with(['{', '[']) => {
                    " (the body is a JSON string: send the request object itself, e.g. {\"Ping\": {}}, not a string holding JSON)".to_string()
                }
                Ok(_) => String::new(),
            };
            Err(ApiError::bad_request(format!(
                "not a {service} request: {e}{hint}"
            )))
        }
    }
}

/// Serialize a response body (`{"Ok": ...}` / `{"Err": ...}`).
pub fn encode_result<T: Serialize>(r: &ApiResult<T>) -> Vec<u8> {
    // Serializing our own plain data types cannot fail; if it somehow did, say so on the wire.
    serde_json::to_vec(r).unwrap_or_else(|e| {
        serde_json::to_vec(&ApiResult::<()>::Err(ApiError::internal(format!(
            "encode: {e}"
        ))))
        .unwrap_or_default()
    })
}

/// Serialize any wire value to bytes.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("wire types serialize")
}

/// Decode a response body of this shape; a body that is not a response becomes an error too.
///
/// That error is made here (a `BadRequest` saying "not a response of the expected type"),
/// not sent by the process, so it cannot be told apart from a refusal by its code; use
/// [`try_decode_response`] to keep the two apart (the typed clients do).
pub fn decode_response<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    try_decode_response(body).unwrap_or_else(|e| {
        Err(ApiError::bad_request(format!(
            "not a response of the expected type: {e}"
        )))
    })
}

/// Read a response body: `Ok(answer)` with the process's `{"Ok": ...}` or `{"Err": ...}`,
/// or `Err` if the body is no response of this shape (not JSON, another type).
pub fn try_decode_response<T: DeserializeOwned>(
    body: &[u8],
) -> Result<ApiResult<T>, serde_json::Error> {
    serde_json::from_slice::<ApiResult<T>>(body)
}

/// Requests every process answers: `"Ping"` and `"Info"` (also read as `{"Ping": {}}`,
/// `{"Info": {}}`; any field in them is an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum BaseRequest {
    Ping {},
    Info {},
}
wire::wire_enum!(BaseRequest, "request", |_tag| true);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum BaseResponse {
    Pong(Pong),
    Info(ServiceInfo),
}
wire::wire_enum!(BaseResponse, "response", |_tag| false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_plain_tagged_enums() {
        // A variant without payload is a bare string, as WIT-generated types write it; the
        // object form is read too, and any field in it is an error.
        assert_eq!(encode(&BaseRequest::Ping {}), br#""Ping""#);
        for body in [&br#"{"Info": {}}"#[..], br#""Info""#] {
            let r: BaseRequest = decode_request(body, "test", 100).unwrap();
            assert_eq!(r, BaseRequest::Info {});
        }
        let e = decode_request::<BaseRequest>(br#"{"Ping": {"x": 1}}"#, "test", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("unknown field `x`"), "{e}");
        let e =
            decode_request::<BaseRequest>(br#"{"Ping": {}, "Info": {}}"#, "test", 100).unwrap_err();
        assert!(e.message.contains("exactly one key"), "{e}");
        let e = decode_request::<BaseRequest>(br#"{}"#, "test", 100).unwrap_err();
        assert!(e.message.contains("empty object"), "{e}");
    }

    #[test]
    fn deep_json_is_reported_as_too_deep() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = decode_request::<BaseRequest>(deep.as_bytes(), "presence", 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("nested too deeply"), "{e}");
        assert!(!e.message.contains("not valid JSON"), "{e}");
        let deep = format!("{{\"Ping\": {}{}}}", "[".repeat(200), "]".repeat(200));
        let e = decode_request::<BaseRequest>(deep.as_bytes(), "presence", 10_000).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn bad_bodies_get_clear_errors() {
        let e = decode_request::<BaseRequest>(b"{not json", "presence", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("not valid JSON"), "{e}");
        let e = decode_request::<BaseRequest>(br#""{\"Ping\":{}}""#, "presence", 100).unwrap_err();
        assert!(e.message.contains("JSON string"), "{e}");
        let e = decode_request::<BaseRequest>(br#"{"Dance":{}}"#, "presence", 100).unwrap_err();
        assert!(e.message.contains("unknown variant `Dance`"), "{e}");
        let e = decode_request::<BaseRequest>(&[b' '; 101], "presence", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    #[test]
    fn results_are_ok_or_err_objects() {
        let ok: ApiResult<Pong> = Ok(Pong {
            node: "a.os".into(),
            protocol_version: 1,
        });
        assert_eq!(
            String::from_utf8(encode_result(&ok)).unwrap(),
            r#"{"Ok":{"node":"a.os","protocol_version":1}}"#
        );
        let err: ApiResult<Pong> = Err(ApiError::forbidden("local only"));
        assert_eq!(
            String::from_utf8(encode_result(&err)).unwrap(),
            r#"{"Err":{"code":"Forbidden","message":"local only"}}"#
        );
        assert_eq!(decode_response::<Pong>(&encode_result(&err)), err);
        assert_eq!(
            decode_response::<Pong>(b"garbage").unwrap_err().code,
            ErrorCode::BadRequest
        );
        // try_decode_response keeps a refusal and a body that is no response apart.
        assert_eq!(
            try_decode_response::<Pong>(&encode_result(&err)).unwrap(),
            err
        );
        assert!(try_decode_response::<Pong>(b"garbage").is_err());
        assert!(try_decode_response::<Pong>(br#"{"Ok": 5}"#).is_err());
    }
}
