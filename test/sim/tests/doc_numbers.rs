//! The numbers docs/api.md (its HTTP part), docs/simulator.md (the playground) and the
//! README state about the HTTP API and the playground are the constants the code uses:
//! each phrase is built from its constant and must appear in the doc (whitespace, such as
//! line breaks, compared as one space).

use p2p_common::web::{MAX_FRAME_BLOB, MAX_HTTP_BODY, MAX_WS_CLIENTS};
use p2p_sim::playground::{
    CLIENT_QUEUE, MAX_BODY, MAX_NET_FRAMES_PER_TICK, MAX_WS_MESSAGE, SHUTDOWN_GRACE, TICK,
};
use std::path::PathBuf;

fn read(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A size as the docs write it: whole MiB or KiB.
fn size(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The phrases not in `text`.
fn missing(text: &str, phrases: &[String]) -> Vec<String> {
    let text = squash(text);
    phrases
        .iter()
        .filter(|p| !text.contains(&squash(p)))
        .cloned()
        .collect()
}

/// Per document, the phrases that carry a constant.
fn phrases() -> Vec<(&'static str, Vec<String>)> {
    let grace = SHUTDOWN_GRACE.as_secs();
    assert_eq!(
        SHUTDOWN_GRACE.as_millis() % 1000,
        0,
        "the docs give the grace in whole seconds"
    );
    vec![
        (
            "docs/api.md",
            vec![
                format!("the HTTP body is limited to {}", size(MAX_HTTP_BODY)),
                format!("UTF-8 text of at most {}", size(MAX_FRAME_BLOB)),
                format!("At most {MAX_WS_CLIENTS} clients per process are open at once"),
            ],
        ),
        (
            "docs/simulator.md",
            vec![
                format!(
                    "at most {MAX_NET_FRAMES_PER_TICK} per {} ms tick",
                    TICK.as_millis()
                ),
                format!("more than {CLIENT_QUEUE} frames behind is dropped"),
                format!("sends a message over {} is closed", size(MAX_WS_MESSAGE)),
                format!("at most {}", size(MAX_BODY)),
                format!("after at most {grace} s for the calls still open"),
            ],
        ),
        (
            "README.md",
            vec![
                format!("calls still open get {grace} s"),
                format!("the {MAX_WS_CLIENTS}-client cap of a process"),
            ],
        ),
    ]
}

#[test]
fn the_docs_state_the_constants() {
    let mut wrong = Vec::new();
    for (file, want) in phrases() {
        for m in missing(&read(file), &want) {
            wrong.push(format!("{file}: no {m:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_number_the_constant_does_not_have_is_caught() {
    // The doc text as it is, with one number changed: that phrase is reported, and only it.
    let doc = read("docs/api.md").replace(
        &format!("At most {MAX_WS_CLIENTS} clients"),
        &format!("At most {} clients", MAX_WS_CLIENTS + 1),
    );
    let want = &phrases()[0].1;
    assert_eq!(
        missing(&doc, want),
        vec![format!(
            "At most {MAX_WS_CLIENTS} clients per process are open at once"
        )]
    );
    // Line breaks inside a phrase do not matter.
    assert!(missing(
        "at most 200 per\n  20 ms tick",
        &["at most 200 per 20 ms tick".into()]
    )
    .is_empty());
    assert_eq!(size(1 << 20), "1 MiB");
    assert_eq!(size(64 * 1024), "64 KiB");
    assert_eq!(size(1000), "1000 bytes");
}
