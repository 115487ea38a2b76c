//! The clock the regional cache ages its entries by.
//!
//! Freshness is a matter of time: an entry is a hit for `s-maxage` seconds,
//! then stale, then revalidated. The cache reads the time through a [`Clock`]
//! it is built with, so that tests can age entries without waiting:
//! [`SystemClock`] in production, a [`ManualClock`] that a test advances by
//! hand.
//!
//! A manual clock rather than tokio's paused time: the cache tests drive the
//! edge over real sockets (a scripted origin, reqwest, hyper), and with paused
//! time tokio auto-advances whenever the runtime is idle, which includes every
//! moment a task waits for the kernel to deliver bytes; connection and request
//! timeouts then fire at once and the tests fail at random. A manual clock
//! moves only when the test says so and touches nothing but the cache's idea
//! of age.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the cache gets the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant. Successive calls never go backwards.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at the moment it was created.
    pub fn new() -> Self {
        Self { start: Instant::now(), elapsed: Mutex::new(Duration::ZERO) }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.elapsed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += d;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new();
        let t0 = c.now();
        assert_eq!(c.now(), t0, "it stands still");
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now().duration_since(t0), Duration::from_secs(90));
    }
}
