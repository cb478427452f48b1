//! The tester protocol's failure report: a failed check names the test, the file, the line
//! and the column, which kit prints (`FAIL: <test> <file>:<line>:<column>`).

/// A failed check.
#[derive(Debug)]
pub struct Fail {
    pub test: String,
    pub file: &'static str,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

pub type TestResult = Result<(), Fail>;

/// Fail test `$test` here, with a message.
#[macro_export]
macro_rules! fail {
    ($test:expr, $($msg:tt)*) => {
        return Err($crate::tester_lib::Fail {
            test: $test.to_string(),
            file: file!(),
            line: line!(),
            column: column!(),
            message: format!($($msg)*),
        })
    };
}

/// Fail test `$test` here unless `$cond` holds.
#[macro_export]
macro_rules! check {
    ($test:expr, $cond:expr, $($msg:tt)*) => {
        if !$cond {
            $crate::fail!($test, $($msg)*);
        }
    };
}
