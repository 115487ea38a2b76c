//! `cargo xtask`: build orchestration for Edgewise.
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask guest` | builds `edgewise_core.wasm` (wasm32-unknown-unknown, simd128, the `guest` profile) into `<target>/wasm/` |
//! | `cargo xtask demo [--port N]` | the main job: imports MovieLens-100K, trains, starts the origin, an edge and the demo page (`www/`), prints users' feeds and the page's URL |
//! | `cargo xtask rank-demo` | builds the guest, then ranks a generated bundle natively and through the guest and explains the ranking |
//! | `cargo xtask test` | every test and check CI runs (README's test command) |
//! | `cargo xtask bench` | the native-vs-guest ranking benchmark |
//! | `cargo xtask fuzz [--seconds N] [--targets a,b]` | a fuzz campaign over `core/fuzz/`'s targets, N seconds each; prints executions and coverage per target (`fuzz.rs`) |
//! | `cargo xtask npm` | builds and packs the npm package `edgewise` into `<target>/npm/edgewise-<version>.tgz`, with its sizes (`npm.rs`) |
//! | `cargo xtask npm-test` | installs that tarball into a scratch app and runs the Node and browser tests against it |
//! | `cargo xtask edge-test` | the CDN adapter (`edgewise/edge`) in workerd, Deno and edge-runtime (installed once into `<cache>/edge-rt`) against the golden files and a real origin and edge |
//! | `cargo xtask wasi-test` | the edge's `wasi:http` component (`edge-worker/wasi-http/`, `wasm32-wasip2`) under `wasmtime serve` and `jco serve` (`wasi.rs`) |
//! | `cargo xtask fastly-check` | the Fastly Compute app (`edge-worker/fastly/`, `wasm32-wasip1`): rustfmt and clippy |
//! | `cargo xtask fastly-test` | the same, then the app built and served by Viceroy (built once into `<cache>/viceroy`) against a real origin and edge (`edge-worker/fastly/test/`) |
//! | `cargo xtask caches-test` | the cache operators' recipes (`ops/`): nginx and Varnish from Debian in front of a real origin (`caches.rs`) |
//! | `cargo xtask www-test` | the demo web app end to end: origin, edge and page server on MovieLens-100K, in Chromium (`www.rs`) |
//! | `cargo xtask npm-bench` | the package's sizes and ranking times in Chromium, wasm against WebGPU |
//! | `cargo xtask layering [--edges] [CRATE_SRC ...]` | reads each crate's `use` graph between top-level modules; prints cycles (file:line per edge) and a topological order, fails on a cycle (`layering/`) |
//!
//! Each command installs what it needs (rustup targets and components) first.
//! `<target>` is `$CARGO_TARGET_DIR`, or `target/` in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod caches;
mod fuzz;
mod layering;
mod npm;
mod wasi;
mod www;

const GUEST_TARGET: &str = "wasm32-unknown-unknown";
/// A target with no `std` at all: building the core for it proves it is `no_std`.
const BARE_TARGET: &str = "wasm32v1-none";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask lives in the repository")?.to_path_buf();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("guest") => guest(&root).map(|_| ()),
        Some("demo") => movielens_demo(&root, &args[1..]),
        Some("rank-demo") => demo(&root, &args[1..]),
        Some("test") => test(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        Some("layering") => layering::run(&root, &args[1..]),
        Some("npm") => npm::build(&root).map(|_| ()),
        Some("npm-test") => npm::test(&root).map(|_| ()),
        Some("edge-test") => npm::edge_test(&root),
        Some("caches-test") => caches::test(&root),
        Some("wasi-test") => wasi::test(&root),
        Some("fastly-check") => wasi::fastly_check(&root),
        Some("fastly-test") => wasi::fastly_test(&root),
        Some("www-test") => npm::installed(&root).and_then(|app| www::test(&root, &app)),
        Some("npm-bench") => npm::bench(&root),
        other => {
            eprintln!(
                "usage: cargo xtask <guest | demo [--port N] | rank-demo [rank options] | test | bench | fuzz [--seconds N] [--targets a,b] | layering [--edges] [CRATE_SRC ...] | npm | npm-test | edge-test | wasi-test | fastly-check | fastly-test | caches-test | www-test | npm-bench>"
            );
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

/// The `*.test.mjs` files of `dir`, sorted (Node's test runner takes them);
/// an error when there are none, so a step never passes by running nothing.
fn node_tests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".test.mjs")) {
            tests.push(p);
        }
    }
    tests.sort();
    if tests.is_empty() {
        bail!("no tests in {}", dir.display());
    }
    Ok(tests)
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
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "edgewise-edge",
        "--features",
        "synth",
        "--",
        "rank",
        "--module",
    ])
    .arg(&wasm);
    if extra.is_empty() {
        cmd.args(["--candidates", "1000", "--dim", "64", "-k", "10"]);
    }
    run(cmd.args(extra))?;
    println!("\nNext: `cargo xtask test` runs every test; `cargo xtask bench` measures native against the guest.");
    println!("`edgewise-edge rank --help` ranks your own bundle and model files (formats: ARCHITECTURE.md).");
    Ok(())
}

/// The main job: MovieLens-100K imported, trained on and served through an
/// edge to the demo page, with a few users' feeds printed on the way.
fn movielens_demo(root: &Path, extra: &[String]) -> Result<()> {
    let port: u16 = match extra {
        [] => 8080,
        [flag, p] if flag == "--port" => p.parse().with_context(|| format!("--port {p:?} is not a port number"))?,
        other => bail!("unknown demo arguments {other:?} (usage: cargo xtask demo [--port N])"),
    };
    // The page's port must be free before minutes of building and training.
    std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("port {port} is taken on 127.0.0.1: choose another with --port"))?;
    let wasm = guest(root)?;
    let package = npm::build(root)?.parent().context("the package's folder")?.join("pkg");
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "edgewise-origin",
        "--package",
        "edgewise-lab",
        "--package",
        "edgewise-edge",
        "--package",
        "edgewise-www",
    ]))?;
    let release = target_dir(root).join("release");
    let bin = release.join("edgewise-origin");
    let data = target_dir(root).join("demo").join("ml-100k");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("cannot clear {}", data.display()))?;
    }
    let origin = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--data-dir").arg(&data).args(args);
        c
    };
    let lab = |args: &[&str]| {
        let mut c = Command::new(release.join("edgewise-lab"));
        c.arg("--data-dir").arg(&data).args(args);
        c
    };
    run(&mut lab(&["import", "movielens"]))?;
    run(&mut lab(&["train"]))?;
    run(&mut lab(&["eval"]))?;
    // Personal routes need a user token signed with a key the origin and the
    // edge know (README: User tokens). The demo plays the application's
    // backend: a fresh HS256 secret per run, which the page server's sign-in
    // route mints tokens with.
    let secret = demo_secret()?;
    let secrets = format!("[\"{secret}\"]");
    let page = format!("http://127.0.0.1:{port}");
    let (origin_port, edge_port) = (free_port()?, free_port()?);
    let base = format!("http://127.0.0.1:{origin_port}");
    let edge = format!("http://127.0.0.1:{edge_port}");
    let mut stack = Stack::default();
    ctrlc::set_handler(|| STOP.store(true, std::sync::atomic::Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;

    println!("\n==> starting the origin on {base} (embedded default configuration, the data directory's schema)");
    stack.start(
        "origin",
        origin(&["serve", "--listen", &format!("127.0.0.1:{origin_port}")])
            .env("EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS", &secrets),
        &format!("{base}/readyz"),
    )?;
    let token = |user: u64| -> Result<String> {
        let out = origin(&["token", "--user", &user.to_string(), "--ttl", "900"])
            .env("EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS", &secrets)
            .output()
            .context("cannot run edgewise-origin token")?;
        if !out.status.success() {
            bail!("edgewise-origin token failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    for user in [1u64, 42, 405] {
        print_feed(&base, user, &token(user)?)?;
    }

    println!("\n==> starting the edge on {edge} (the core guest in wasmtime, a regional cache in front of the origin)");
    stack.start(
        "edge",
        Command::new(release.join("edgewise-edge"))
            .args(["serve", "--origin", &base, "--listen", &format!("127.0.0.1:{edge_port}"), "--module"])
            .arg(&wasm)
            .env("EDGEWISE_EDGE__AUTH__USER_TOKENS__HMAC_SECRETS", &secrets)
            .env("EDGEWISE_EDGE__SERVER__CORS_ORIGINS", format!("[\"{page}\", \"http://localhost:{port}\"]")),
        &format!("{edge}/readyz"),
    )?;
    println!("\n==> starting the page on {page} (www/static, the npm package, the demo's sign-in route)");
    stack.start(
        "page",
        Command::new(release.join("edgewise-www"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--edge", &edge, "--package"])
            .arg(&package)
            .arg("--static")
            .arg(root.join("www").join("static"))
            .env("EDGEWISE_WWW_TOKEN_SECRET", &secret),
        &format!("{page}/demo/config.json"),
    )?;

    println!("\nThe demo page: the feed ranked in your browser (WebGPU where it has it, else wasm),");
    println!("refined when the personal bundle arrives through the edge; like, skip or hide to re-rank on the device:");
    println!("\nopen {page}/\n");
    println!("Origin {base}, edge {edge}; everything stops with Ctrl-C. To call the API yourself (this run's secret):");
    println!("  export EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS='{secrets}'");
    println!("  TOKEN=$({} --data-dir {} token --user 7)", bin.display(), data.display());
    println!(
        "  curl -s -X POST {base}/v1/rank -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"user\": 7, \"k\": 10}}'"
    );
    println!(
        "  curl -s -H \"authorization: Bearer $TOKEN\" '{edge}/v1/users/7/candidates?k=100' -o bundle.ewb   # a personal bundle, through the edge"
    );
    println!(
        "  curl -s -D - {edge}/v1/regions/3/bundle -o regional.ewb   # a cacheable regional bundle (X-Edgewise-Cache: miss, then hit)"
    );
    println!("  curl -s {base}/v1/items/50 ; curl -s {base}/openapi.json ; curl -s {base}/metrics");
    println!("  offline figures: {} and the PNGs beside it", data.join("eval").join("eval.json").display());
    stack.wait()
}

/// Set by Ctrl-C or SIGTERM while the demo serves.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The demo's servers: started in order, each waited for; stopped together.
#[derive(Default)]
struct Stack {
    children: Vec<(&'static str, std::process::Child)>,
}

impl Stack {
    /// Starts `cmd` and waits until `ready` answers 200 (60 s at most).
    fn start(&mut self, name: &'static str, cmd: &mut Command, ready: &str) -> Result<()> {
        let child = cmd.spawn().with_context(|| format!("cannot start the {name}"))?;
        self.children.push((name, child));
        for _ in 0..600 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                bail!("stopped before the {name} was ready");
            }
            if let Some((_, c)) = self.children.last_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("the {name} exited with {status} before it was ready (its log is above)");
            }
            let answered = ureq::get(ready)
                .config()
                .timeout_global(Some(std::time::Duration::from_secs(1)))
                .build()
                .call()
                .is_ok();
            if answered {
                return Ok(());
            }
        }
        bail!("the {name} did not answer {ready} within 60 s")
    }

    /// Serves until Ctrl-C or SIGTERM (or until a server exits on its own).
    fn wait(mut self) -> Result<()> {
        loop {
            if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                println!("\nstopping the page, the edge and the origin");
                return self.stop();
            }
            for (name, c) in &mut self.children {
                if let Some(status) = c.try_wait()? {
                    let name = *name;
                    self.stop()?;
                    bail!("the {name} exited with {status}; the demo stopped");
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// SIGTERM to each server, newest first, and a wait for each (each drains and exits).
    fn stop(&mut self) -> Result<()> {
        while let Some((name, mut c)) = self.children.pop() {
            if c.try_wait()?.is_none() {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).context("a process id")?);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let status = c.wait().with_context(|| format!("waiting for the {name}"))?;
                println!("  the {name} stopped ({status})");
            }
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // An error path: never leave servers behind.
        let _ = self.stop();
    }
}

/// A port the system says is free now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a loopback port")?.local_addr()?.port())
}

/// Prints `user`'s feed as the origin ranks it (`POST /v1/rank`).
fn print_feed(base: &str, user: u64, token: &str) -> Result<()> {
    let body = serde_json::json!({ "user": user, "k": 8 }).to_string();
    let text = ureq::post(&format!("{base}/v1/rank"))
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {token}"))
        .send(body.as_str())
        .and_then(|mut r| r.body_mut().read_to_string())
        .with_context(|| format!("POST /v1/rank for user {user}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("the rank response is not JSON")?;
    println!(
        "\nFeed of user {user} ({} candidates, model {}):",
        v["candidates"],
        &v["model"].as_str().unwrap_or("?")[..12.min(v["model"].as_str().map_or(0, str::len))]
    );
    println!("  {:<52} {:>7}  sources", "title", "score");
    for it in v["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let sources: Vec<&str> =
            it["sources"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(|s| s.as_str()).collect();
        let title = it["title"].as_str().map_or_else(|| format!("item {}", it["id"]), str::to_string);
        println!(
            "  {:<52} {:>7.4}  {}",
            title.chars().take(52).collect::<String>(),
            it["score"].as_f64().unwrap_or(f64::NAN),
            sources.join(", ")
        );
    }
    Ok(())
}

/// A fresh 256-bit secret, hex-encoded, from the operating system's generator.
fn demo_secret() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the demo's token secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

/// The environment the GPU tests (`edgewise-shaders`) need: wgpu on Vulkan
/// (lavapipe, unless the machine has a GPU), without also probing OpenGL, and a
/// private runtime directory for Mesa. What the caller already set is kept.
fn gpu_test_env() -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        env.push(("WGPU_BACKEND".to_string(), "vulkan".to_string()));
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("edgewise-xdg");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
        env.push(("XDG_RUNTIME_DIR".to_string(), dir.display().to_string()));
    }
    Ok(env)
}

fn test(root: &Path) -> Result<()> {
    let start = Instant::now();
    ensure_toolchain(&[GUEST_TARGET, BARE_TARGET], &["rustfmt", "clippy"])?;
    // g++ builds the hnswlib shim (`hnswlib-ffi`); the chart tests render text with DejaVu Sans;
    // the GPU tests run on Mesa's lavapipe, Vulkan on the CPU (CI has no GPU).
    let lavapipe = format!("/usr/share/vulkan/icd.d/lvp_icd.{}.json", std::env::consts::ARCH);
    ensure_apt(&[
        ("g++", "/usr/bin/g++"),
        ("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        ("mesa-vulkan-drivers", lavapipe.as_str()),
    ])?;
    let gpu_env = gpu_test_env()?;
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        f().with_context(|| format!("step failed: {name}"))?;
        steps.push((name.to_string(), t.elapsed().as_secs_f64()));
        Ok(())
    };
    step("formatting", &mut || run(cargo().args(["fmt", "--all", "--check"])))?;
    step("guest module", &mut || guest(root).map(|_| ()))?;
    step("core and wire are no_std (bare wasm32v1-none)", &mut || {
        run(cargo().args([
            "build",
            "--package",
            "edgewise-core",
            "--package",
            "edgewise-wire",
            "--target",
            BARE_TARGET,
            "--release",
        ]))
    })?;
    step("no import cycle between modules", &mut || layering::run(root, &[]))?;
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
    step("tests", &mut || run(cargo().args(["test", "--workspace", "--profile", "ci"]).envs(gpu_env.clone())))?;
    let mut app = None;
    step("npm package: build, pack, Node and Chromium tests", &mut || npm::test(root).map(|a| app = Some(a)))?;
    step("CDN runtimes: the edge adapter in workerd, miniflare, Deno and edge-runtime", &mut || npm::edge_test(root))?;
    step("wasi:http component under wasmtime serve and jco serve", &mut || wasi::test(root))?;
    step("Fastly Compute app: rustfmt, clippy, and its tests under Viceroy", &mut || wasi::fastly_test(root))?;
    step("regional caches: the nginx and Varnish recipes in front of the origin", &mut || caches::test(root))?;
    step("web app: end to end in Chromium (origin, edge, page)", &mut || {
        www::test(root, app.as_deref().context("the npm step installs the package first")?)
    })?;
    step("benches compile", &mut || run(cargo().args(["bench", "--workspace", "--no-run", "--profile", "ci"])))?;
    step("fuzz targets compile", &mut || run(cargo().args(["build", "--manifest-path", "core/fuzz/Cargo.toml"])))?;
    println!("\nall checks passed in {:.0} s:", start.elapsed().as_secs_f64());
    for (name, secs) in &steps {
        println!("  {secs:>7.1} s  {name}");
    }
    Ok(())
}
