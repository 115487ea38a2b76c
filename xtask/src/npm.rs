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
//! Node's test runner against the installed package, in Node and in Debian's
//! Chromium, the high-level client against a real origin and edge (the
//! conformance crate's `stack` example); and it builds two more apps that import the package, one with
//! Vite and one with webpack 5, and runs them in Chromium. `npm-bench` runs `browser-pkg/bench/` the same way: sizes, and
//! ranking times in wasm and on WebGPU.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{GUEST_TARGET, cargo, ensure_apt, ensure_toolchain, output, run, target_dir};

/// The wasm-bindgen version `browser-pkg/Cargo.toml` pins (`=0.2.130`); the
/// CLI must match it exactly.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// The gzipped size budget of the CPU build (wasm + JavaScript).
const BUDGET_GZ: u64 = 150 * 1024;
/// The Playwright driver for the browser tests (no browser download: it drives Debian's Chromium).
const PLAYWRIGHT: &str = "playwright-core@1.65.1";
/// The TypeScript compiler that checks the shipped types (`test/types.test.mjs`).
const TYPESCRIPT: &str = "typescript@5.9.3";
/// The bundlers the package is tested with, pinned.
const VITE: &str = "vite@8.3.8";
const WEBPACK: [&str; 2] = ["webpack@5.113.0", "webpack-cli@7.3.1"];
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

/// Installs node from apt when it is missing (this machine image's apt
/// sources carry node 20); fails with a clear message unless node ≥ 20 and
/// npm are then on PATH.
fn ensure_node() -> Result<()> {
    ensure_apt(&[("nodejs", "/usr/bin/node")])?;
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
    for f in [
        "index.js",
        "index.d.ts",
        "client.js",
        "store.js",
        "error.js",
        "events.js",
        "gpu.js",
        "worker.js",
        "edge.js",
        "edge-guest.js",
        "edge-workers.js",
        "edge-deno.js",
        "edge-vercel.js",
        "package.json",
        "README.md",
    ] {
        std::fs::copy(js.join(f), pkg.join(f)).with_context(|| format!("copying {f} into the package"))?;
    }
    // The CDN adapter (`edgewise/edge`) runs the zero-import guest, as the Rust edge does.
    let guest = crate::guest(root)?;
    std::fs::copy(&guest, pkg.join("edgewise_core.wasm")).context("copying the guest into the package")?;
    // The WGSL the native GpuRanker runs, as JavaScript strings: one text for both.
    let mut wgsl =
        String::from("// Generated by `cargo xtask npm` from shaders/wgsl/: the WGSL the native GpuRanker runs.\n");
    for (name, file) in
        [("DOTS", "dots.wgsl"), ("DOT4_PACKED", "dot4_packed.wgsl"), ("DOT4_UNPACKED", "dot4_unpacked.wgsl")]
    {
        let src = std::fs::read_to_string(root.join("shaders").join("wgsl").join(file))
            .with_context(|| format!("reading shaders/wgsl/{file}"))?;
        wgsl.push_str(&format!("export const {name} = {};\n", serde_json::Value::String(src)));
    }
    std::fs::write(pkg.join("wgsl.js"), wgsl)?;
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
    let (mut cpu_gz, mut gpu_gz) = (0, 0);
    for (f, gpu) in [
        ("edgewise_core_bg.wasm", false),
        ("edgewise_core.js", false),
        ("index.js", false),
        ("client.js", false),
        ("store.js", false),
        ("error.js", false),
        ("events.js", false),
        ("worker.js", false),
        ("gpu.js", true),
        ("wgsl.js", true),
    ] {
        let bytes = std::fs::read(pkg.join(f)).with_context(|| format!("reading {f}"))?;
        let gz = gzipped(&bytes)?;
        if gpu {
            gpu_gz += gz;
        } else {
            cpu_gz += gz;
        }
        println!("  {f:<24} {:>8.1} KiB {:>8.1} KiB", bytes.len() as f64 / 1024.0, gz as f64 / 1024.0);
    }
    println!(
        "  GPU add-on (gpu.js + wgsl.js, loaded only when an adapter exists) {:.1} KiB gzipped",
        gpu_gz as f64 / 1024.0
    );
    println!(
        "  CPU build (wasm + JS)    {:>8} {:>8.1} KiB gzipped (budget {} KiB)",
        "",
        cpu_gz as f64 / 1024.0,
        BUDGET_GZ / 1024
    );
    let mut edge_gz = 0;
    for f in ["edge.js", "edge-guest.js", "edge-workers.js", "edgewise_core.wasm"] {
        edge_gz += gzipped(&std::fs::read(pkg.join(f)).with_context(|| format!("reading {f}"))?)?;
    }
    println!(
        "  CDN adapter (edge.js, edge-guest.js, the Workers entry, the guest edgewise_core.wasm) {:.1} KiB gzipped: {:.1} % of Workers' 3 MB, {:.1} % of Vercel's 1 MB",
        edge_gz as f64 / 1024.0,
        edge_gz as f64 / 3e6 * 100.0,
        edge_gz as f64 / 1e6 * 100.0
    );
    if cpu_gz > BUDGET_GZ {
        bail!("the CPU build is {cpu_gz} bytes gzipped, over the {BUDGET_GZ}-byte budget");
    }
    println!("packed: {}", tgz.display());
    Ok(tgz)
}

/// A fresh, empty ES-module app `<target>/npm/NAME`.
fn fresh_app(root: &Path, name: &str) -> Result<PathBuf> {
    let app = target_dir(root).join("npm").join(name);
    if app.exists() {
        std::fs::remove_dir_all(&app).with_context(|| format!("removing {}", app.display()))?;
    }
    std::fs::create_dir_all(&app)?;
    std::fs::write(
        app.join("package.json"),
        format!("{{\n  \"name\": \"edgewise-{name}\",\n  \"private\": true,\n  \"type\": \"module\"\n}}\n"),
    )?;
    Ok(app)
}

/// `npm install --no-audit --no-fund --silent ARGS` in `app`.
fn npm_install(app: &Path, args: &[&OsStr]) -> Result<()> {
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .args(args)
        .current_dir(app)
        .env("npm_config_update_notifier", "false"))
}

/// Installs the packed tarball into a fresh scratch app `<target>/npm/NAME`
/// (as a user would), with playwright-core and Debian's Chromium for the
/// browser runs; returns the app's directory.
fn scratch_app(root: &Path, tgz: &Path, name: &str) -> Result<PathBuf> {
    let app = fresh_app(root, name)?;
    npm_install(&app, &["--offline".as_ref(), tgz.as_os_str()])?;
    // The browser runs: Debian's Chromium (Playwright's own download cannot
    // work here) driven by a pinned playwright-core from npm.
    ensure_apt(&[("chromium", "/usr/bin/chromium")])?;
    npm_install(&app, &["--no-save".as_ref(), PLAYWRIGHT.as_ref(), TYPESCRIPT.as_ref()])?;
    Ok(app)
}

/// Copies every file of `dir` into `app`; returns the copies whose names end with `suffix`.
fn copy_dir(dir: &Path, app: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut picked = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if !p.is_file() {
            continue;
        }
        let name = p.file_name().context("a file name")?.to_string_lossy().into_owned();
        let dest = app.join(&name);
        std::fs::copy(&p, &dest).with_context(|| format!("copying {}", p.display()))?;
        if name.ends_with(suffix) {
            picked.push(dest);
        }
    }
    picked.sort();
    Ok(picked)
}

/// Writes the example `fixtures`' output for `args` into `dir`.
fn fixtures(dir: &Path, arg: &str) -> Result<()> {
    run(cargo()
        .args(["run", "--quiet", "--profile", "ci", "--package", "edgewise-browser", "--example", "fixtures", "--"])
        .arg(dir)
        .arg(arg))
}

/// Builds the real origin-and-edge stack the client tests run against (the
/// conformance crate's `stack` example, which needs the guest module);
/// returns the binary's path.
pub(crate) fn stack(root: &Path) -> Result<PathBuf> {
    crate::guest(root)?;
    run(cargo().args([
        "build",
        "--quiet",
        "--profile",
        "ci",
        "--package",
        "edgewise-conformance",
        "--example",
        "stack",
    ]))?;
    let bin = target_dir(root).join("ci").join("examples").join(format!("stack{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("the stack example was built but {} is missing", bin.display());
    }
    Ok(bin)
}

/// An app `<target>/npm/NAME-app` that imports the installed package, built
/// by a real bundler (`tools` from npm, then `build` run through npx); returns
/// its `dist/`.
fn bundler_app(root: &Path, tgz: &Path, name: &str, tools: &[&str], build: &[&str]) -> Result<PathBuf> {
    let app = fresh_app(root, &format!("{name}-app"))?;
    std::fs::create_dir_all(app.join("src"))?;
    let templates = root.join("browser-pkg").join("test").join("apps");
    std::fs::copy(templates.join("main.js"), app.join("src").join("main.js"))?;
    match name {
        "vite" => std::fs::copy(templates.join("vite-index.html"), app.join("index.html"))?,
        _ => std::fs::copy(templates.join("webpack.config.mjs"), app.join("webpack.config.mjs"))?,
    };
    let mut packages = vec![tgz.as_os_str()];
    packages.extend(tools.iter().map(OsStr::new));
    npm_install(&app, &packages)?;
    run(Command::new("npx").args(["--no-install"]).args(build).current_dir(&app))?;
    let dist = app.join("dist");
    if !dist.is_dir() {
        bail!("{name} wrote no dist/ in {}", app.display());
    }
    Ok(dist)
}

/// Builds the package, installs it into a scratch app and runs the Node and
/// browser tests against it; returns the app (the web app's tests run from it).
pub(crate) fn test(root: &Path) -> Result<PathBuf> {
    let tgz = build(root)?;
    let app = scratch_app(root, &tgz, "node-test")?;
    let data = app.join("fixtures");
    fixtures(&data, "200")?;
    let stack = stack(root)?;
    let files = copy_dir(&root.join("browser-pkg").join("test"), &app, ".test.mjs")?;
    if files.is_empty() {
        bail!("no tests in browser-pkg/test");
    }
    let vite = bundler_app(root, &tgz, "vite", &[VITE], &["vite", "build", "--logLevel", "warn"])?;
    let webpack =
        bundler_app(root, &tgz, "webpack", &WEBPACK, &["webpack", "--config", "webpack.config.mjs", "--no-stats"])?;
    // A stuck test fails after 5 minutes, and a handle left open cannot keep
    // the run from ending: CI never waits on a hung browser or socket.
    run(Command::new("node")
        .args(["--test", "--test-timeout=300000", "--test-force-exit"])
        .args(&files)
        .current_dir(&app)
        .env("EDGEWISE_APPS", format!("vite={},webpack={}", vite.display(), webpack.display()))
        .env("EDGEWISE_FIXTURES", &data)
        .env("EDGEWISE_STACK", &stack)
        .env("EDGEWISE_GOLDEN", root.join("core").join("tests").join("golden").join("v1")))?;
    Ok(app)
}

/// The CDN runtimes the edge adapter is tested in, pinned (npm).
/// miniflare is pinned to a release that runs on Node 20 (those of May 2026 on need Node 22);
/// it brings its own workerd, nested under it.
const EDGE_RUNTIMES: [&str; 4] =
    ["workerd@1.20261117.1", "edge-runtime@4.0.1", "@deno/linux-x64-glibc@2.9.6", "miniflare@4.20260426.0"];

/// Installs the CDN runtimes once, outside the clone (`<cache>/edge-rt`), and
/// runs `browser-pkg/edge-test/`: the edge adapter (`edgewise/edge`) with the
/// unchanged guest inside workerd, miniflare (Cloudflare's Cache API), Deno and edge-runtime, against the golden
/// files and a real origin and edge (the `stack` example).
pub(crate) fn edge_test(root: &Path) -> Result<()> {
    ensure_node()?;
    let guest = crate::guest(root)?;
    let stack = stack(root)?;
    let rt = cache_dir().join("edge-rt");
    let marker = rt.join("node_modules").join(".edgewise-runtimes");
    let want = EDGE_RUNTIMES.join(" ");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
        std::fs::create_dir_all(&rt).with_context(|| format!("creating {}", rt.display()))?;
        std::fs::write(
            rt.join("package.json"),
            "{\n  \"name\": \"edgewise-edge-runtimes\",\n  \"private\": true\n}\n",
        )?;
        npm_install(&rt, &EDGE_RUNTIMES.iter().map(OsStr::new).collect::<Vec<_>>())?;
        std::fs::write(&marker, &want)?;
    }
    let dir = root.join("browser-pkg").join("edge-test");
    let tests = crate::node_tests(&dir)?;
    run(Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-timeout=300000", "--test-force-exit"])
        .args(&tests)
        .current_dir(&dir)
        .env("EDGEWISE_EDGE_RT", &rt)
        .env("EDGEWISE_GUEST", &guest)
        .env("EDGEWISE_STACK", &stack)
        .env("EDGEWISE_GOLDEN", root.join("core").join("tests").join("golden").join("v1")))
}

/// The cache root outside the clone: `$EDGEWISE_CACHE`, `$XDG_CACHE_HOME/edgewise` or `~/.cache/edgewise`
/// (where the MovieLens data and schemathesis go too).
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EDGEWISE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edgewise");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("edgewise")
}

/// The package built and installed into a fresh scratch app, for the web
/// app's tests run on their own (`cargo xtask www-test`).
pub(crate) fn installed(root: &Path) -> Result<PathBuf> {
    let tgz = build(root)?;
    scratch_app(root, &tgz, "www-test")
}

/// `cargo xtask npm-bench`: sizes and ranking times in Chromium, wasm against
/// WebGPU (SwiftShader here), at 300, 10k and 100k rows.
pub(crate) fn bench(root: &Path) -> Result<()> {
    let tgz = build(root)?;
    let app = scratch_app(root, &tgz, "bench")?;
    let data = app.join("data");
    fixtures(&data, "--bench")?;
    copy_dir(&root.join("browser-pkg").join("bench"), &app, ".mjs")?;
    // The Chromium launcher and file server the browser tests use.
    std::fs::copy(root.join("browser-pkg").join("test").join("chromium.mjs"), app.join("chromium.mjs"))?;
    run(Command::new("node").arg("bench.mjs").current_dir(&app).env("EDGEWISE_BENCH_DATA", &data))
}
