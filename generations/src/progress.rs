//! How long operations report how far they are.

/// Where long operations report how far they are. The binary draws a
/// progress bar on a terminal; tests and pipes pass [`NoProgress`].
pub trait Progress: Sync {
    fn start(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    /// `n` more to do than `start` said: a build learns its number of
    /// files as it lists directories, one at a time.
    fn grow(&self, _n: u64) {}
    fn finish(&self);
    /// A step of a switch has run (its plan line): `-v` prints each as
    /// the switch goes, not all at its end.
    fn step(&self, _line: &str) {}
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
