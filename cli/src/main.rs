fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`sysgen diff |
    // head -1`) fails and `println!` panics. Unix tools die quietly of the
    // signal instead; output is written only after a command's work is
    // done, so nothing is cut short but the printing.
    // SAFETY: nothing else runs yet (no threads, no other handlers), and
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
    }
    std::process::exit(sysgen_cli::main());
}
