//! The `sysgen` CLI, built inside the test package so that its tests run
//! exactly the current code (see `sysgen_tests::TestEnv::sysgen`).
fn main() {
    // As cli/src/main.rs does: die quietly of SIGPIPE on a closed output
    // pipe rather than panic in `println!`.
    // SAFETY: nothing else runs yet (no threads, no other handlers), and
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
    }
    std::process::exit(sysgen_cli::main());
}
