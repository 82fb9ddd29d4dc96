//! The `ternbench` binary.

fn main() -> std::process::ExitCode {
    ternbench::cli::main()
}
