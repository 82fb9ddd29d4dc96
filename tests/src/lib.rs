//! Helpers for the end-to-end tests: find (and if needed build) the
//! `ternbench` binary of this workspace and run it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `ternbench` binary next to the test executable's profile directory,
/// built once per test process with the same cargo and target directory.
pub fn ternbench_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("profile directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "ternbench", "--bin", "ternbench"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the ternbench binary");
        assert!(status.success(), "cargo build -p ternbench failed");
        let bin = profile_dir.join(format!("ternbench{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// Runs `ternbench` with `args` and returns its output. The read-bandwidth
/// probe is 16 MiB (`TERNBENCH_PROBE_MIB`): the binary built here is not
/// optimised, and a full-size probe would take most of a test's time.
pub fn run(args: &[&str]) -> Output {
    Command::new(ternbench_bin())
        .args(args)
        .env("TERNBENCH_PROBE_MIB", "16")
        .output()
        .expect("run the ternbench binary")
}

/// stdout and stderr of `out` as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
