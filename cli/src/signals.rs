//! SIGTERM and SIGINT: while apt or dpkg runs, sysgen stops it and every
//! process it started, waits for them, and the switch stops with its
//! journal in place, so `sysgen recover` can finish or undo it. With no
//! tool running, the signal ends sysgen as it would without a handler: a
//! crash, which the journal covers the same way. The handler lives in the
//! library (`children::on_signal`), next to the tool it stops.

use sysgen_generations::packages::apt::children;

extern "C" fn handle(sig: nix::libc::c_int) {
    children::on_signal(sig);
}

/// Installs the handler for SIGTERM and SIGINT.
pub fn install() {
    for sig in [nix::libc::SIGTERM, nix::libc::SIGINT] {
        // SAFETY: `handle` only touches atomics and calls kill(2),
        // signal(2) and raise(3), all async-signal-safe; the sigaction
        // struct is fully initialized (zeroed, then set).
        unsafe {
            let mut sa: nix::libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handle as extern "C" fn(nix::libc::c_int) as usize;
            sa.sa_flags = nix::libc::SA_RESTART;
            nix::libc::sigemptyset(&mut sa.sa_mask);
            nix::libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The exit status: 128 + the signal when one stopped the command, as a
/// shell reports it.
pub fn exit_code(code: i32) -> i32 {
    match children::stop_requested() {
        Some(sig) if code != 0 => 128 + sig,
        _ => code,
    }
}
