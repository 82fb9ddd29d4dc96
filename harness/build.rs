//! Records the git commit and the rustc version in the binary, so every
//! output row says which build produced it.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit =
        run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = run("git", &["status", "--porcelain", "--untracked-files=no"]).is_some();
    let commit = if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TERNBENCH_COMMIT={commit}");
    println!("cargo:rustc-env=TERNBENCH_RUSTC={rustc_version}");
    // Re-run when HEAD moves or the index changes (commits, checkouts). Asking
    // git for the paths also finds them in a worktree, whose .git is a file.
    for name in ["HEAD", "index", "refs/heads", "packed-refs"] {
        if let Some(path) = run(
            "git",
            &["rev-parse", "--path-format=absolute", "--git-path", name],
        ) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
