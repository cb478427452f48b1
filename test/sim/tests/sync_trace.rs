//! The concurrent editing trace friendsforever (two authors typing at once) replayed
//! through two simulated sync nodes, one per author, each edit through the local API naming
//! the version its author saw, sync running live: both end with the trace's `endContent`.

use p2p_sim::editing::{replay, trace_path, EditingTrace};
use p2p_sim::Mode;

fn friendsforever() -> EditingTrace {
    let path = trace_path("friendsforever.json.gz").unwrap();
    EditingTrace::load(&path).unwrap()
}

#[test]
fn friendsforever_converges_to_its_end_content_in_both_modes() {
    let trace = friendsforever();
    assert!(trace.concurrent && trace.agents == 2 && trace.txns.len() > 20_000);
    for mode in Mode::ALL {
        let r = replay(&trace, mode, 7, 0).unwrap();
        for (i, t) in r.texts.iter().enumerate() {
            assert!(
                *t == trace.end,
                "{} mode: node {i} ends with {} characters, endContent has {}; first difference at {:?}",
                mode.name(),
                t.chars().count(),
                trace.end.chars().count(),
                t.chars().zip(trace.end.chars()).position(|(a, b)| a != b)
            );
        }
        assert!(r.matches);
        // The authors really were concurrent: some edits waited for the other's changes.
        assert!(r.waits > 0, "{r:?}");
    }
}

#[test]
fn a_trace_prefix_and_a_corrupted_trace_do_not_match() {
    let trace = friendsforever();
    // Half the trace is not the end text: the comparison can fail.
    let mut t = trace.prefix(2_000);
    t.end = trace.end.clone();
    let r = replay(&t, Mode::Realistic, 1, 0).unwrap();
    assert!(!r.matches);
    assert_eq!(r.texts[0], r.texts[1], "the two nodes still agree");
    // A patch past its author's text is refused by the service, and the replay says so.
    let mut bad = trace.prefix(10);
    bad.txns[9].patches = vec![(1_000, 0, "x".into())];
    let err = replay(&bad, Mode::Realistic, 1, 0).unwrap_err();
    assert!(err.to_string().contains("past the"), "{err}");
}

#[test]
fn malformed_trace_files_are_refused_with_a_reason() {
    assert!(EditingTrace::parse(b"{").is_err());
    let e = EditingTrace::parse(br#"{"kind":"concurrent","endContent":"","txns":[]}"#).unwrap_err();
    assert!(e.contains("numAgents"), "{e}");
    let e = EditingTrace::parse(
        br#"{"kind":"concurrent","numAgents":2,"endContent":"","txns":[{"agent":0,"parents":[0],"patches":[]}]}"#,
    )
    .unwrap_err();
    assert!(e.contains("not earlier"), "{e}");
    let e = EditingTrace::parse(
        br#"{"kind":"concurrent","numAgents":2,"endContent":"","txns":[{"agent":5,"parents":[],"patches":[]}]}"#,
    )
    .unwrap_err();
    assert!(e.contains("numAgents"), "{e}");
    let seq = EditingTrace::parse(
        br#"{"startContent":"","endContent":"ab","txns":[{"patches":[[0,0,"b"]]},{"patches":[[0,0,"a"]]}]}"#,
    )
    .unwrap();
    assert_eq!(seq.sequential_text().unwrap(), "ab");
    assert_eq!(seq.txns[1].parents, vec![0]);
}
