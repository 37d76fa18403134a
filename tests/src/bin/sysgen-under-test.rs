//! The `sysgen` CLI, built inside the test package so that its tests run
//! exactly the current code (see `sysgen_tests::TestEnv::sysgen`).
fn main() {
    std::process::exit(sysgen_cli::main());
}
