fn main() {
    std::process::exit(sysgen_cli::main());
}
