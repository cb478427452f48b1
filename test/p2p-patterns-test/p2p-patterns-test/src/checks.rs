//! Checks every service gets: bad bodies answered with errors, a remote caller of a
//! local-only operation refused, and an app without the grant told what to add.

use crate::harness::Ctx;
use crate::tester_lib::{Fail, TestResult};

/// Fail `$test` at the line of the service module that called the check (the checks are
/// `#[track_caller]`), so kit's report points at the test, not at this file.
macro_rules! fail_here {
    ($test:expr, $($msg:tt)*) => {{
        let at = std::panic::Location::caller();
        return Err(Fail {
            test: $test.to_string(),
            file: at.file(),
            line: at.line(),
            column: at.column(),
            message: format!($($msg)*),
        });
    }};
}

macro_rules! check_here {
    ($test:expr, $cond:expr, $($msg:tt)*) => {
        if !$cond {
            fail_here!($test, $($msg)*);
        }
    };
}

/// Each `(body, code)` sent to our `process` is answered `{"Err": {"code", "message"}}`
/// with that code and a message; so is a body of `too_large` bytes (`TooLarge`), and
/// `local_only` sent to bob's `process` (`Forbidden`).
#[track_caller]
pub fn bad_bodies(
    ctx: &Ctx,
    test: &str,
    process: &str,
    cases: &[(&[u8], &str)],
    too_large: usize,
    local_only: &[u8],
) -> TestResult {
    let us = &ctx.our_node;
    for (body, code) in cases {
        match ctx.error_of(us, process, body.to_vec()) {
            Ok((c, m)) => check_here!(
                test,
                c == *code && !m.is_empty(),
                "{} answered {c}: {m:?}, not {code}",
                String::from_utf8_lossy(body)
            ),
            Err(e) => fail_here!(test, "{e}"),
        }
    }
    let mut big = br#"{"Ping": {}}"#.to_vec();
    big.resize(too_large, b' ');
    match ctx.error_of(us, process, big) {
        Ok((c, _)) => check_here!(test, c == "TooLarge", "{too_large} bytes answered {c}"),
        Err(e) => fail_here!(test, "{too_large} bytes: {e}"),
    }
    let bob = ctx.node(1);
    match ctx.error_of(bob, process, local_only.to_vec()) {
        Ok((c, m)) => check_here!(
            test,
            c == "Forbidden",
            "{bob}'s {process} answered a remote {} with {c}: {m:?}",
            String::from_utf8_lossy(local_only)
        ),
        Err(e) => fail_here!(test, "{bob}'s {process}: {e}"),
    }
    Ok(())
}

/// An app that did not grant our `process` messaging gets the typed client's
/// `LocalTimeout`, whose text names the manifest entry to add.
#[track_caller]
pub fn without_grant(ctx: &Ctx, test: &str, process: &str) -> TestResult {
    let entry = format!("\"grant_capabilities\": [\"{process}:p2p-patterns:p2p-patterns.os\"]");
    match ctx.call_without_grants(process) {
        Ok(said) => check_here!(
            test,
            said.starts_with("LocalTimeout") && said.contains(&entry),
            "the child's client said {said}"
        ),
        Err(e) => fail_here!(test, "{e}"),
    }
    // The same call from us, who granted it, is answered.
    if let Err(e) = ctx.base(&ctx.our_node, process).ping() {
        fail_here!(test, "with the grant: {e}");
    }
    Ok(())
}
