//! The resilience kit: pure building blocks, time (`now: Millis`) and randomness (`&mut impl
//! RngCore`) passed in by the caller.
