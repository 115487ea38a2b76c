//! `cargo xtask`: build orchestration for Edgewise.
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask guest` | builds `edgewise_core.wasm` (wasm32-unknown-unknown, simd128, the `guest` profile) into `<target>/wasm/` |
//! | `cargo xtask demo` | the main job: builds the guest, then ranks a generated bundle natively and through the guest and explains the ranking |
//! | `cargo xtask test` | every test and check CI runs (README's test command) |
//! | `cargo xtask bench` | the native-vs-guest ranking benchmark |
//!
//! Each command installs what it needs (rustup targets and components) first.
//! `<target>` is `$CARGO_TARGET_DIR`, or `target/` in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const GUEST_TARGET: &str = "wasm32-unknown-unknown";
/// A target with no `std` at all: building the core for it proves it is `no_std`.
const BARE_TARGET: &str = "wasm32v1-none";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask lives in the repository")?.to_path_buf();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("guest") => guest(&root).map(|_| ()),
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root),
        Some("bench") => bench(&root, &args[1..]),
        other => {
            eprintln!("usage: cargo xtask <guest | demo [rank options] | test | bench>");
            if let Some(o) = other {
                bail!("unknown command {o:?}");
            }
            bail!("no command given")
        }
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// Runs a command, echoing it, and fails with its exit status.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    println!("\n==> {shown}");
    let status = cmd.status().with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes sure the rustup targets and components are installed.
fn ensure_toolchain(targets: &[&str], components: &[&str]) -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = targets.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if !missing.is_empty() {
        run(Command::new("rustup").args(["target", "add"]).args(&missing))?;
    }
    let comps = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    let missing: Vec<&str> = components.iter().copied().filter(|c| !comps.lines().any(|l| l.starts_with(c))).collect();
    if !missing.is_empty() {
        run(Command::new("rustup").args(["component", "add"]).args(&missing))?;
    }
    Ok(())
}

/// Builds the guest module and returns its path.
fn guest(root: &Path) -> Result<PathBuf> {
    ensure_toolchain(&[GUEST_TARGET], &[])?;
    run(cargo().args(["build", "--package", "edgewise-core-guest", "--target", GUEST_TARGET, "--profile", "guest"]))?;
    let target = target_dir(root);
    let built = target.join(GUEST_TARGET).join("guest").join("edgewise_core_guest.wasm");
    let dest_dir = target.join("wasm");
    std::fs::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join("edgewise_core.wasm");
    std::fs::copy(&built, &dest).with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    let size = std::fs::metadata(&dest)?.len();
    println!("guest module: {} ({:.1} KiB)", dest.display(), size as f64 / 1024.0);
    Ok(dest)
}

fn demo(root: &Path, extra: &[String]) -> Result<()> {
    let wasm = guest(root)?;
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "--package", "edgewise-edge", "--", "rank", "--module"]).arg(&wasm);
    if extra.is_empty() {
        cmd.args(["--candidates", "1000", "--dim", "64", "-k", "10"]);
    }
    run(cmd.args(extra))?;
    println!("\nNext: `cargo xtask test` runs every test; `cargo xtask bench` measures native against the guest.");
    println!("`edgewise-edge rank --help` ranks your own bundle and model files (formats: ARCHITECTURE.md).");
    Ok(())
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    guest(root)?;
    run(cargo().args(["bench", "--package", "edgewise-edge", "--bench", "rank"]).args(extra))
}

/// Installs Debian packages whose marker file is missing (`apt-get`, as root).
fn ensure_apt(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().filter(|(_, file)| !Path::new(file).exists()).map(|(p, _)| *p).collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq"]).args(&missing))
}

fn test(root: &Path) -> Result<()> {
    let start = Instant::now();
    ensure_toolchain(&[GUEST_TARGET, BARE_TARGET], &["rustfmt", "clippy"])?;
    // The chart tests render text with DejaVu Sans.
    ensure_apt(&[("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")])?;
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        f().with_context(|| format!("step failed: {name}"))?;
        steps.push((name.to_string(), t.elapsed().as_secs_f64()));
        Ok(())
    };
    step("formatting", &mut || run(cargo().args(["fmt", "--all", "--check"])))?;
    step("guest module", &mut || guest(root).map(|_| ()))?;
    step("core is no_std (bare wasm32v1-none)", &mut || {
        run(cargo().args(["build", "--package", "edgewise-core", "--target", BARE_TARGET, "--release"]))
    })?;
    step("clippy", &mut || {
        run(cargo().args(["clippy", "--workspace", "--all-targets", "--profile", "ci", "--", "-D", "warnings"]))
    })?;
    step("clippy (guest, wasm32)", &mut || {
        run(cargo().args([
            "clippy",
            "--package",
            "edgewise-core-guest",
            "--package",
            "edgewise-core",
            "--target",
            GUEST_TARGET,
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("docs (warnings are errors)", &mut || {
        run(cargo().args(["doc", "--workspace", "--no-deps", "--profile", "ci"]).env("RUSTDOCFLAGS", "-D warnings"))
    })?;
    step("tests", &mut || run(cargo().args(["test", "--workspace", "--profile", "ci"])))?;
    step("benches compile", &mut || run(cargo().args(["bench", "--workspace", "--no-run", "--profile", "ci"])))?;
    step("fuzz targets compile", &mut || run(cargo().args(["build", "--manifest-path", "core/fuzz/Cargo.toml"])))?;
    println!("\nall checks passed in {:.0} s:", start.elapsed().as_secs_f64());
    for (name, secs) in &steps {
        println!("  {secs:>7.1} s  {name}");
    }
    Ok(())
}
