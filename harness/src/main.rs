//! The `ternbench` binary.

/// Weights and other large buffers on transparent huge pages.
#[global_allocator]
static ALLOCATOR: ternbench::huge_pages::HugePageAlloc = ternbench::huge_pages::HugePageAlloc;

fn main() -> std::process::ExitCode {
    ternbench::huge_pages::configure();
    ternbench::cli::main()
}
