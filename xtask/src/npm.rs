//! `cargo xtask npm` and `cargo xtask npm-test`: the npm package `edgewise`.
//!
//! `npm` builds `edgewise-browser` for `wasm32-unknown-unknown` (simd128, the
//! `npm` profile), runs the pinned `wasm-bindgen` (`--target web`, installed
//! when missing or of another version), adds the package's JavaScript, types,
//! `package.json` and README from `browser-pkg/js/`, and packs it with
//! `npm pack` into `<target>/npm/edgewise-<version>.tgz`. It prints the files'
//! sizes, raw and gzipped, and fails if the gzipped CPU build (wasm + JS)
//! exceeds the 150 KB budget.
//!
//! `npm-test` installs that tarball into a scratch app (as a user would),
//! writes randomized cases ranked by the native core
//! (`browser-pkg/examples/fixtures.rs`) and runs `browser-pkg/test/` with
//! Node's test runner against the installed package.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{GUEST_TARGET, cargo, ensure_toolchain, output, run, target_dir};

/// The wasm-bindgen version `browser-pkg/Cargo.toml` pins (`=0.2.130`); the
/// CLI must match it exactly.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// The gzipped size budget of the CPU build (wasm + JavaScript).
const BUDGET_GZ: u64 = 150 * 1024;
/// The oldest node the package and its tests support.
const NODE_MAJOR: u32 = 20;

/// Installs the pinned wasm-bindgen CLI when it is missing or another version.
fn ensure_wasm_bindgen() -> Result<()> {
    let v = Command::new("wasm-bindgen").arg("--version").output().ok().filter(|o| o.status.success());
    let have = v.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    if !have.split_whitespace().any(|w| w == WASM_BINDGEN_VERSION) {
        // No `--locked`: the CLI's lockfile pins a crate version crates.io no longer has.
        run(cargo().args(["install", "wasm-bindgen-cli", "--version", WASM_BINDGEN_VERSION]))?;
    }
    Ok(())
}

/// Fails with a clear message unless node ≥ 20 and npm are on PATH.
fn ensure_node() -> Result<()> {
    let v = output(Command::new("node").arg("--version"))
        .context("node is not installed: the npm package is built and tested with node 20 or newer")?;
    let major: u32 = v.trim().trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < NODE_MAJOR {
        bail!("node {} is too old: the npm package needs node {NODE_MAJOR} or newer", v.trim());
    }
    output(Command::new("npm").arg("--version")).context("npm is not installed (it comes with node)")?;
    Ok(())
}

/// The gzipped size of `bytes` (level 9, as a CDN would serve it).
fn gzipped(bytes: &[u8]) -> Result<u64> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes)?;
    Ok(e.finish()?.len() as u64)
}

/// Builds and packs the package; returns the tarball's path.
pub(crate) fn build(root: &Path) -> Result<PathBuf> {
    ensure_toolchain(&[GUEST_TARGET], &[])?;
    ensure_node()?;
    ensure_wasm_bindgen()?;
    run(cargo().args([
        "build",
        "--package",
        "edgewise-browser",
        "--lib",
        "--target",
        GUEST_TARGET,
        "--profile",
        "npm",
    ]))?;
    let target = target_dir(root);
    let wasm = target.join(GUEST_TARGET).join("npm").join("edgewise_browser.wasm");
    let npm = target.join("npm");
    let pkg = npm.join("pkg");
    if pkg.exists() {
        std::fs::remove_dir_all(&pkg).with_context(|| format!("removing {}", pkg.display()))?;
    }
    std::fs::create_dir_all(&pkg)?;
    run(Command::new("wasm-bindgen")
        .args(["--target", "web", "--out-name", "edgewise_core", "--remove-name-section", "--remove-producers-section"])
        .arg("--out-dir")
        .arg(&pkg)
        .arg(&wasm))?;
    let js = root.join("browser-pkg").join("js");
    for f in ["index.js", "index.d.ts", "package.json", "README.md"] {
        std::fs::copy(js.join(f), pkg.join(f)).with_context(|| format!("copying {f} into the package"))?;
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(js.join("package.json"))?).context("browser-pkg/js/package.json")?;
    let version = manifest["version"].as_str().context("package.json has no version")?;
    let tgz = npm.join(format!("edgewise-{version}.tgz"));
    let _ = std::fs::remove_file(&tgz);
    run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&npm)
        .current_dir(&pkg)
        .env("npm_config_update_notifier", "false"))?;
    if !tgz.exists() {
        bail!("npm pack did not write {}", tgz.display());
    }

    println!("\npackage files (raw, gzipped -9):");
    let mut cpu_gz = 0;
    for f in ["edgewise_core_bg.wasm", "edgewise_core.js", "index.js"] {
        let bytes = std::fs::read(pkg.join(f)).with_context(|| format!("reading {f}"))?;
        let gz = gzipped(&bytes)?;
        cpu_gz += gz;
        println!("  {f:<24} {:>8.1} KiB {:>8.1} KiB", bytes.len() as f64 / 1024.0, gz as f64 / 1024.0);
    }
    println!(
        "  CPU build (wasm + JS)    {:>8} {:>8.1} KiB gzipped (budget {} KiB)",
        "",
        cpu_gz as f64 / 1024.0,
        BUDGET_GZ / 1024
    );
    if cpu_gz > BUDGET_GZ {
        bail!("the CPU build is {cpu_gz} bytes gzipped, over the {BUDGET_GZ}-byte budget");
    }
    println!("packed: {}", tgz.display());
    Ok(tgz)
}

/// Builds the package, installs it into a scratch app and runs the Node tests.
pub(crate) fn test(root: &Path) -> Result<()> {
    let tgz = build(root)?;
    let target = target_dir(root);
    let app = target.join("npm").join("node-test");
    if app.exists() {
        std::fs::remove_dir_all(&app).with_context(|| format!("removing {}", app.display()))?;
    }
    std::fs::create_dir_all(&app)?;
    std::fs::write(
        app.join("package.json"),
        "{\n  \"name\": \"edgewise-node-test\",\n  \"private\": true,\n  \"type\": \"module\"\n}\n",
    )?;
    run(Command::new("npm")
        .args(["install", "--offline", "--no-audit", "--no-fund", "--silent"])
        .arg(&tgz)
        .current_dir(&app)
        .env("npm_config_update_notifier", "false"))?;
    let fixtures = app.join("fixtures");
    run(cargo()
        .args(["run", "--quiet", "--profile", "ci", "--package", "edgewise-browser", "--example", "fixtures", "--"])
        .arg(&fixtures)
        .arg("200"))?;
    let tests = root.join("browser-pkg").join("test");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&tests).with_context(|| format!("reading {}", tests.display()))? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "mjs") {
            let dest = app.join(p.file_name().context("a test file name")?);
            std::fs::copy(&p, &dest)?;
            files.push(dest);
        }
    }
    if files.is_empty() {
        bail!("no tests in {}", tests.display());
    }
    files.sort();
    run(Command::new("node")
        .arg("--test")
        .args(&files)
        .current_dir(&app)
        .env("EDGEWISE_FIXTURES", &fixtures)
        .env("EDGEWISE_GOLDEN", root.join("core").join("tests").join("golden").join("v1")))
}
