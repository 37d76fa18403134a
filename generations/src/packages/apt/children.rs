//! The one tool sysgen runs at a time in the root, known to the signal
//! handler of the binary: SIGTERM or SIGINT to sysgen stops that tool and
//! every process it started (its process group), sysgen waits for them,
//! and the switch stops with its journal in place for `recover`. With no
//! tool running, the signal ends sysgen at once, as a crash would: every
//! step is journalled, and `recover` finishes or undoes it.
//!
//! Everything here is async-signal-safe: atomics and `kill(2)`.

use std::sync::atomic::{AtomicI32, Ordering};

/// The process group of the tool running now (0: none).
static RUNNING: AtomicI32 = AtomicI32::new(0);
/// The signal that asked sysgen to stop (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);

/// What the binary's handler for SIGTERM and SIGINT calls.
pub fn on_signal(sig: i32) {
    STOP.store(sig, Ordering::SeqCst);
    let group = RUNNING.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill(2) is async-signal-safe; a negative pid names the group.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
    } else {
        // SAFETY: signal(2) and raise(3) are async-signal-safe; SIG_DFL
        // ends the process as the signal would have without a handler.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// The signal that asked sysgen to stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The name of a stop signal, for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// SIGTERM and SIGINT blocked in this thread while a tool is started and
/// registered, so a signal never falls between the two (the child's mask
/// is reset by `Command::spawn`).
pub(super) struct Blocked(libc::sigset_t);

impl Blocked {
    pub(super) fn new() -> Blocked {
        // SAFETY: plain sigset manipulation on owned, initialized sets.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            Blocked(old)
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

/// A tool registered as running until dropped.
pub(super) struct Running;

impl Running {
    pub(super) fn register(group: i32) -> Running {
        RUNNING.store(group, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(0, Ordering::SeqCst);
    }
}

/// Sends `sig` to the process group `group`.
pub(super) fn signal_group(group: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals the group; no memory is
    // involved. A group that is already gone gives ESRCH, which is fine.
    unsafe {
        libc::kill(-group, sig);
    }
}
