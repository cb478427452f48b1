//! A retry budget (after Finagle's `RetryBudget`): retries are paid from a token bucket so
//! that, when a peer is failing, retries add at most a fixed fraction of extra load instead
//! of multiplying it.
//!
//! - every first attempt deposits `ratio` tokens (e.g. `0.2`: one retry per five requests);
//! - every retry withdraws one token, and is refused when less than one is available;
//! - a floor of `min_per_sec` tokens per second refills with time, so a caller with little
//!   traffic can still retry now and then;
//! - the balance never exceeds `cap` tokens: a long quiet period cannot bank a burst of
//!   retries (this cap is how old tokens "expire").
//!
//! Tokens are kept in integer thousandths, so accounting is exact. The bound this type
//! guarantees: over any stretch of calls from time `t0` to `t1`,
//!
//! ```text
//! 1000 * retries_granted <= 1000 * balance(t0) + ratio_milli * attempts
//!                           + min_per_sec * (t1 - t0) in ms
//! ```
//!
//! where `balance(t0) <= cap` (and equals `min(min_per_sec, cap)` for a new budget),
//! `ratio_milli = round(ratio * 1000)` and time only counts when it moves forward.

use crate::service::Millis;
use serde::{Deserialize, Serialize};

const MILLI: u64 = 1000;

/// Token-bucket retry budget; see the module docs for the exact bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryBudget {
    /// Thousandths of a token deposited per first attempt.
    deposit_milli: u64,
    /// Tokens per second of floor refill (= thousandths of a token per ms).
    min_per_sec: u32,
    /// Largest balance, in thousandths of a token.
    cap_milli: u64,
    /// Current balance, in thousandths of a token.
    balance_milli: u64,
    /// Latest time seen; refill is computed from it. `None` before the first call.
    last: Option<Millis>,
}

impl Default for RetryBudget {
    /// 20 % retries, at least one per second, at most 10 banked.
    fn default() -> Self {
        RetryBudget::new(0.2, 1, 10)
    }
}

impl RetryBudget {
    /// `ratio` tokens per first attempt (negative or NaN act as 0; kept to 1/1000),
    /// `min_per_sec` tokens per second of refill, at most `cap` tokens banked. A new budget
    /// starts with `min(min_per_sec, cap)` tokens.
    pub fn new(ratio: f64, min_per_sec: u32, cap: u32) -> Self {
        // `as` saturates: NaN and negatives become 0, huge values u64::MAX.
        let deposit_milli = (ratio * MILLI as f64).round() as u64;
        let cap_milli = u64::from(cap) * MILLI;
        RetryBudget {
            deposit_milli,
            min_per_sec,
            cap_milli,
            balance_milli: (u64::from(min_per_sec) * MILLI).min(cap_milli),
            last: None,
        }
    }

    /// Thousandths of a token deposited per first attempt (`round(ratio * 1000)`).
    pub fn ratio_milli(&self) -> u64 {
        self.deposit_milli
    }

    /// The balance after refilling up to `now`, in thousandths of a token.
    fn refilled(&self, now: Millis) -> u64 {
        let elapsed = match self.last {
            Some(last) => now.saturating_sub(last),
            None => 0,
        };
        let refill = elapsed.saturating_mul(u64::from(self.min_per_sec));
        self.balance_milli
            .saturating_add(refill)
            .min(self.cap_milli)
    }

    fn advance(&mut self, now: Millis) {
        self.balance_milli = self.refilled(now);
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
    }

    /// A first attempt (not a retry) was made: deposit `ratio` tokens.
    pub fn record_attempt(&mut self, now: Millis) {
        self.advance(now);
        self.balance_milli = self
            .balance_milli
            .saturating_add(self.deposit_milli)
            .min(self.cap_milli);
    }

    /// May we retry now? If yes, one token is withdrawn.
    pub fn try_retry(&mut self, now: Millis) -> bool {
        self.advance(now);
        if self.balance_milli >= MILLI {
            self.balance_milli -= MILLI;
            true
        } else {
            false
        }
    }

    /// Tokens available at `now` (whole tokens are retries that would be granted).
    pub fn available(&self, now: Millis) -> f64 {
        self.refilled(now) as f64 / MILLI as f64
    }

    /// Same as [`available`](Self::available), in exact thousandths of a token.
    pub fn available_milli(&self, now: Millis) -> u64 {
        self.refilled(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Attempt(Millis),
        Retry(Millis),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Time steps, mostly forward, sometimes backward (a clock may be reset).
        let step = prop_oneof![8 => 0..3_000u64, 1 => Just(0u64)];
        let op = (any::<bool>(), step, any::<bool>());
        proptest::collection::vec(op, 0..200).prop_map(|v| {
            let mut now: Millis = 1_000_000;
            v.into_iter()
                .map(|(retry, step, back)| {
                    now = if back && step % 7 == 0 {
                        now.saturating_sub(step)
                    } else {
                        now + step
                    };
                    if retry {
                        Op::Retry(now)
                    } else {
                        Op::Attempt(now)
                    }
                })
                .collect()
        })
    }

    #[test]
    fn ratio_limits_retries_without_floor() {
        let mut b = RetryBudget::new(0.2, 0, 100);
        assert!(!b.try_retry(0), "a new budget without floor has nothing");
        for _ in 0..10 {
            b.record_attempt(0);
        }
        assert!(b.try_retry(0));
        assert!(b.try_retry(0));
        assert!(!b.try_retry(0));
    }

    #[test]
    fn floor_refills_with_time_up_to_cap() {
        let mut b = RetryBudget::new(0.0, 2, 5);
        assert_eq!(b.available(0), 2.0);
        assert!(b.try_retry(0));
        assert!(b.try_retry(0));
        assert!(!b.try_retry(0));
        assert!(!b.try_retry(499));
        // 2 per second: one token after 500 ms.
        assert!(b.try_retry(500));
        // A long quiet period banks at most `cap`.
        assert_eq!(b.available(10_000_000), 5.0);
        let granted = (0..20).filter(|_| b.try_retry(10_000_000)).count();
        assert_eq!(granted, 5);
    }

    #[test]
    fn odd_ratios_do_not_panic() {
        for r in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            let mut b = RetryBudget::new(r, u32::MAX, u32::MAX);
            b.record_attempt(u64::MAX);
            b.try_retry(0);
            b.record_attempt(0);
            assert!(b.available(u64::MAX) >= 0.0);
        }
        assert_eq!(RetryBudget::new(f64::NAN, 0, 9).ratio_milli(), 0);
    }

    proptest! {
        #[test]
        fn retries_granted_stay_within_the_bound(
            ratio_milli in 0..1500u64, min_per_sec in 0..5u32, cap in 0..20u32, ops in ops(),
        ) {
            let mut b = RetryBudget::new(ratio_milli as f64 / 1000.0, min_per_sec, cap);
            prop_assert_eq!(b.ratio_milli(), ratio_milli);
            // For every suffix of the run (window starting at op i), check the bound with
            // the balance at the window start, and that the balance never exceeds the cap.
            let mut start_balance = Vec::new();
            let mut granted = Vec::new();
            for op in &ops {
                let now = match *op { Op::Attempt(t) | Op::Retry(t) => t };
                start_balance.push(b.available_milli(now));
                prop_assert!(b.available_milli(now) <= u64::from(cap) * 1000);
                match *op {
                    Op::Attempt(t) => { b.record_attempt(t); granted.push(false); }
                    Op::Retry(t) => {
                        let before = b.available_milli(t);
                        let ok = b.try_retry(t);
                        prop_assert_eq!(ok, before >= 1000, "granted iff balance >= 1");
                        granted.push(ok);
                    }
                }
            }
            for i in 0..ops.len() {
                prop_assert!(start_balance[i] <= u64::from(cap) * 1000);
                let (mut attempts, mut retries, mut forward) = (0u64, 0u64, 0u64);
                let mut high = match ops[i] { Op::Attempt(t) | Op::Retry(t) => t };
                for (op, g) in ops[i..].iter().zip(&granted[i..]) {
                    let t = match *op { Op::Attempt(t) => { attempts += 1; t }
                                        Op::Retry(t) => { retries += u64::from(*g); t } };
                    forward += t.saturating_sub(high);
                    high = high.max(t);
                }
                let bound = start_balance[i] + ratio_milli * attempts
                    + u64::from(min_per_sec) * forward;
                prop_assert!(1000 * retries <= bound,
                    "window {}: {} retries > bound {}/1000", i, retries, bound);
            }
            // The whole run from a new budget: start balance is min(min_per_sec, cap).
            if let Some(first) = start_balance.first() {
                prop_assert_eq!(*first, u64::from(min_per_sec.min(cap)) * 1000);
            }
        }
    }
}
