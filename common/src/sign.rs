//! `sign:sign:sys`: signatures with the node's networking key (ed25519), as Hyperdrive's
//! bundled `sign` package offers them.
//!
//! A process asks its own node's `sign:sign:sys` (the manifest must request
//! `"sign:sign:sys"`: it is not public):
//!
//! - `"NetKeySign"` with the message in the blob; the answer `"NetKeySign"` carries the
//!   64-byte signature in its blob. What the node signs is **not** the blob alone but
//!   [`signed_bytes`]: `<node>@sign:sign:sys`, then the requester's full address, then the
//!   blob, concatenated (the sign process prepends the requester, the net module prepends
//!   the sign process). So a signature also says which process of which node signed.
//! - `{"NetKeyVerify": {"node": "<signer's full address>", "signature": [..64 bytes..]}}`
//!   with the same message in the blob; the answer is `{"NetKeyVerify": true}` or `false`.
//!   `node` is parsed as a full address (`bob.os@notify:p2p-patterns:p2p-patterns.os`), not
//!   a node name; a value that does not parse gets no answer at all (the sign process logs
//!   an error), so the caller sees a Timeout.
//!
//! These types are the JSON of the WIT `sign:sys-v0` API (wit-bindgen with serde).
//! [`model::NetKeys`] (native builds only) is the one model of the process that the
//! simulator and the emulator run, with real ed25519 keys derived per node from a seed.

use crate::ids::{Address, NodeId, ProcessId};
use serde::{Deserialize, Serialize};

/// `sign:sign:sys`.
pub fn sign_process() -> ProcessId {
    ProcessId {
        process: "sign".into(),
        package: "sign".into(),
        publisher: "sys".into(),
    }
}

/// `<node>@sign:sign:sys`.
pub fn sign_address(node: &NodeId) -> Address {
    Address::new(node.clone(), sign_process())
}

/// A request to `sign:sign:sys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignRequest {
    /// Sign the blob (see [`signed_bytes`] for what is signed).
    NetKeySign,
    /// Check a signature over the blob.
    NetKeyVerify(NetKeyVerifyRequest),
    /// Answer with the exact bytes a `NetKeySign` of this blob would sign.
    NetKeyMakeMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetKeyVerifyRequest {
    /// The signer's full address (`node@process:package:publisher`).
    pub node: String,
    pub signature: Vec<u8>,
}

/// An answer of `sign:sign:sys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignResponse {
    /// The signature is in the blob.
    NetKeySign,
    NetKeyVerify(bool),
    /// The message is in the blob.
    NetKeyMakeMessage,
}

/// The bytes a node signs for `NetKeySign` from `signer` (a full address): the sign
/// process's address on the signer's node, the signer's address, the blob.
pub fn signed_bytes(signer: &Address, blob: &[u8]) -> Vec<u8> {
    let sign = sign_address(&signer.node).to_string();
    let signer = signer.to_string();
    let mut out = Vec::with_capacity(sign.len() + signer.len() + blob.len());
    out.extend_from_slice(sign.as_bytes());
    out.extend_from_slice(signer.as_bytes());
    out.extend_from_slice(blob);
    out
}

/// Body of a verify request.
pub fn verify_body(signer: &Address, signature: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&SignRequest::NetKeyVerify(NetKeyVerifyRequest {
        node: signer.to_string(),
        signature: signature.to_vec(),
    }))
    .expect("sign requests serialize")
}

/// Body of a sign request (the message goes in the blob).
pub fn sign_body() -> Vec<u8> {
    serde_json::to_vec(&SignRequest::NetKeySign).expect("sign requests serialize")
}

#[cfg(not(target_arch = "wasm32"))]
pub mod model {
    //! The node side of `sign:sign:sys` for the simulator and the emulator: one ed25519
    //! key per node, derived from a seed, and the answers Hyperdrive's sign process gives.

    use super::*;
    use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
    use sha2::{Digest, Sha256};

    /// Every node's networking key (the PKI of a simulated network).
    #[derive(Debug, Clone)]
    pub struct NetKeys {
        seed: u64,
    }

    /// What the sign process does with one request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum SignOutcome {
        /// It answers with this body and blob.
        Answer {
            body: Vec<u8>,
            blob: Option<Vec<u8>>,
        },
        /// It answers nothing and logs this (the caller's request times out).
        NoAnswer(String),
    }

    impl NetKeys {
        pub fn new(seed: u64) -> NetKeys {
            NetKeys { seed }
        }

        fn signing_key(&self, node: &str) -> SigningKey {
            let mut h = Sha256::new();
            h.update(b"p2p-patterns net key\0");
            h.update(self.seed.to_le_bytes());
            h.update(node.as_bytes());
            SigningKey::from_bytes(&h.finalize().into())
        }

        /// The public networking key of `node` (what the PKI lists).
        pub fn public_key(&self, node: &str) -> [u8; 32] {
            self.signing_key(node).verifying_key().to_bytes()
        }

        /// `node`'s signature of `message` (what its net module computes).
        pub fn sign(&self, node: &str, message: &[u8]) -> [u8; 64] {
            self.signing_key(node).sign(message).to_bytes()
        }

        /// Whether `signature` is `node`'s over `message`.
        pub fn verify(&self, node: &str, message: &[u8], signature: &[u8]) -> bool {
            let Ok(sig) = Signature::from_slice(signature) else {
                return false;
            };
            let Ok(key) = VerifyingKey::from_bytes(&self.public_key(node)) else {
                return false;
            };
            key.verify(message, &sig).is_ok()
        }

        /// What `our`'s sign process answers a local request from `source` (the kernel
        /// already checked that `source` may message it). `in_pki` says which nodes exist: a
        /// signature of an unknown node does not verify.
        pub fn handle(
            &self,
            our: &NodeId,
            source: &Address,
            body: &[u8],
            blob: Option<&[u8]>,
            in_pki: &dyn Fn(&str) -> bool,
        ) -> SignOutcome {
            let blob = blob.unwrap_or_default();
            let req: SignRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => {
                    return SignOutcome::NoAnswer(format!(
                        "error handling sign request from {source}: {e}"
                    ))
                }
            };
            let answer = |r: SignResponse, blob: Option<Vec<u8>>| SignOutcome::Answer {
                body: serde_json::to_vec(&r).expect("sign responses serialize"),
                blob,
            };
            match req {
                SignRequest::NetKeySign => {
                    let sig = self.sign(our.as_str(), &signed_bytes(source, blob));
                    answer(SignResponse::NetKeySign, Some(sig.to_vec()))
                }
                SignRequest::NetKeyVerify(v) => {
                    let signer = match Address::parse(&v.node) {
                        Ok(a) => a,
                        Err(e) => {
                            return SignOutcome::NoAnswer(format!(
                                "error handling sign request from {source}: node {:?}: {e}",
                                v.node
                            ))
                        }
                    };
                    let ok = in_pki(signer.node.as_str())
                        && self.verify(
                            signer.node.as_str(),
                            &signed_bytes(&signer, blob),
                            &v.signature,
                        );
                    answer(SignResponse::NetKeyVerify(ok), None)
                }
                SignRequest::NetKeyMakeMessage => {
                    let mut message = sign_address(our).to_string().into_bytes();
                    message.extend_from_slice(source.to_string().as_bytes());
                    message.extend_from_slice(blob);
                    answer(SignResponse::NetKeyMakeMessage, Some(message))
                }
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::model::{NetKeys, SignOutcome};
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn answer(o: SignOutcome) -> (serde_json::Value, Option<Vec<u8>>) {
        match o {
            SignOutcome::Answer { body, blob } => (serde_json::from_slice(&body).unwrap(), blob),
            SignOutcome::NoAnswer(why) => panic!("no answer: {why}"),
        }
    }

    #[test]
    fn the_json_is_the_wit_apis() {
        assert_eq!(sign_body(), br#""NetKeySign""#);
        assert_eq!(
            String::from_utf8(verify_body(&a("b.os@n:p:q.os"), &[1, 2])).unwrap(),
            r#"{"NetKeyVerify":{"node":"b.os@n:p:q.os","signature":[1,2]}}"#
        );
        let r: SignResponse = serde_json::from_str(r#"{"NetKeyVerify":true}"#).unwrap();
        assert_eq!(r, SignResponse::NetKeyVerify(true));
        assert_eq!(
            signed_bytes(&a("b.os@n:p:q.os"), b"hi"),
            b"b.os@sign:sign:sysb.os@n:p:q.oshi"
        );
    }

    #[test]
    fn a_signature_verifies_for_its_signer_and_message_only() {
        let keys = NetKeys::new(7);
        let all = |_: &str| true;
        let bob: NodeId = "bob.os".parse().unwrap();
        let notify = a("bob.os@notify:p2p-patterns:p2p-patterns.os");
        let (body, sig) = answer(keys.handle(&bob, &notify, &sign_body(), Some(b"m"), &all));
        assert_eq!(body, serde_json::json!("NetKeySign"));
        let sig = sig.unwrap();
        assert_eq!(sig.len(), 64);
        // The net module signed [sign address, signer, blob] with bob's key.
        assert!(keys.verify("bob.os", &signed_bytes(&notify, b"m"), &sig));
        assert!(!keys.verify("bob.os", b"m", &sig));

        let alice: NodeId = "alice.os".parse().unwrap();
        let checker = a("alice.os@notify:p2p-patterns:p2p-patterns.os");
        let verify = |signer: &Address, msg: &[u8], sig: &[u8], pki: &dyn Fn(&str) -> bool| {
            answer(keys.handle(&alice, &checker, &verify_body(signer, sig), Some(msg), pki)).0
        };
        let yes = serde_json::json!({"NetKeyVerify": true});
        let no = serde_json::json!({"NetKeyVerify": false});
        assert_eq!(verify(&notify, b"m", &sig, &all), yes);
        assert_eq!(verify(&notify, b"other", &sig, &all), no, "other message");
        let other_process = a("bob.os@sync:p2p-patterns:p2p-patterns.os");
        assert_eq!(verify(&other_process, b"m", &sig, &all), no, "other signer");
        assert_eq!(
            verify(
                &a("carol.os@notify:p2p-patterns:p2p-patterns.os"),
                b"m",
                &sig,
                &all
            ),
            no
        );
        assert_eq!(
            verify(&notify, b"m", &sig[..63], &all),
            no,
            "short signature"
        );
        assert_eq!(
            verify(&notify, b"m", &sig, &|n| n != "bob.os"),
            no,
            "not in the PKI"
        );
        // Keys depend on the seed.
        assert!(!NetKeys::new(8).verify("bob.os", &signed_bytes(&notify, b"m"), &sig));
    }

    #[test]
    fn bad_requests_get_no_answer_and_make_message_shows_the_signed_bytes() {
        let keys = NetKeys::new(1);
        let bob: NodeId = "bob.os".parse().unwrap();
        let src = a("bob.os@app:x:y.os");
        for body in [&b"{}"[..], b"\"Dance\"", b"not json"] {
            assert!(matches!(
                keys.handle(&bob, &src, body, None, &|_| true),
                SignOutcome::NoAnswer(_)
            ));
        }
        // `node` must be a full address, not a node name.
        let by_name = br#"{"NetKeyVerify":{"node":"bob.os","signature":[]}}"#;
        assert!(matches!(
            keys.handle(&bob, &src, by_name, None, &|_| true),
            SignOutcome::NoAnswer(_)
        ));
        let (body, blob) =
            answer(keys.handle(&bob, &src, br#""NetKeyMakeMessage""#, Some(b"x"), &|_| true));
        assert_eq!(body, serde_json::json!("NetKeyMakeMessage"));
        assert_eq!(blob.unwrap(), signed_bytes(&src, b"x"));
    }
}
