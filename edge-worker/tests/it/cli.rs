//! The `edgewise-edge rank` command, run as a process: file round trips, and
//! clear errors (exit code 1 plus a message naming the problem) on bad input;
//! `serve` with a layered configuration and the on-disk compiled-module cache.
//! The input files are generated here (`edgewise_core::synth`), so the tests
//! pass with or without the binary's `synth` feature.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgewise_core::{abi, synth};

fn edge(args: &[&str]) -> Output {
    let module = edgewise_edge::guest::default_module_path();
    assert!(module.exists(), "guest module missing at {}: run `cargo xtask guest`", module.display());
    Command::new(env!("CARGO_BIN_EXE_edgewise-edge"))
        .arg("rank")
        .arg("--module")
        .arg(&module)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgewise-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Writes a synthetic bundle (`n` candidates of dimension `dim`), its model and
/// a user context (k = 10) into `d`, named as `rank --write-to` names them.
fn synthetic_files(d: &Path, n: usize, dim: u16) -> (PathBuf, PathBuf, PathBuf) {
    let now_ms = 1_700_000_000_000;
    let spec = synth::Spec::new(n, dim, 7);
    let mut ctx = Vec::new();
    abi::encode_context(&synth::context(&spec, 10, now_ms, 8), &mut ctx);
    let model = synth::model(&spec, &[64, 32], 200, 7).encode().expect("the model encodes");
    let (b, m, c) = (d.join("bundle.ewb"), d.join("model.ewm"), d.join("context.ewcx"));
    for (path, bytes) in [(&b, synth::bundle(&spec, now_ms)), (&m, model), (&c, ctx)] {
        std::fs::write(path, bytes).expect("write");
    }
    (b, m, c)
}

#[test]
fn synthetic_files_round_trip_through_the_cli() {
    let (b, m, c) = synthetic_files(&tmp("generated"), 300, 32);
    let d = tmp("roundtrip");
    let o = edge(&["--bundle", s(&b), "--model", s(&m), "--context", s(&c), "--write-to", s(&d), "-k", "7"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("bit-identical"), "{}", text(&o));
    let (b, m, c) = (d.join("bundle.ewb"), d.join("model.ewm"), d.join("context.ewcx"));
    let o = edge(&["--bundle", s(&b), "--model", s(&m), "--context", s(&c)]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("selected: 7"), "k comes from the context file: {out}");
    assert!(out.contains("bit-identical"), "{out}");
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_problem() {
    let d = tmp("bad");
    let (b, m, _) = synthetic_files(&d, 50, 8);
    let bundle = std::fs::read(&b).expect("bundle");
    let truncated = d.join("truncated.ewb");
    std::fs::write(&truncated, &bundle[..bundle.len() / 2]).expect("write");

    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--bundle", s(&truncated), "--model", s(&m)], "bundle length is"),
        (vec!["--bundle", s(&b), "--model", s(&b)], "not an Edgewise model"),
        (vec!["--bundle", s(&b), "--model", s(&m), "--context", s(&b)], "not an Edgewise context"),
        (vec!["--bundle", "/nonexistent/x.ewb", "--model", s(&m)], "reading bundle /nonexistent/x.ewb"),
        (vec!["--bundle", s(&b)], "--model"),
    ];
    for (args, want) in cases {
        let o = edge(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(text(&o).contains(want), "{args:?}: expected {want:?} in:\n{}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?} panicked:\n{}", text(&o));
    }
}

/// `rank` without files generates them with the `synth` feature, and
/// without it says which feature is missing.
#[test]
fn rank_without_files_needs_the_synth_feature() {
    let o = edge(&["--candidates", "50", "--dim", "8", "-k", "5"]);
    if cfg!(feature = "synth") {
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("selected: 5") && text(&o).contains("bit-identical"), "{}", text(&o));
    } else {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("`synth` feature") && text(&o).contains("--bundle"), "{}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
}

/// Starts `edgewise-edge serve` with `args`; returns the child, its address
/// (from the "edge listening" log line) and the log up to that line.
fn start_serve(args: &[&str]) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewise-edge"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.expect("log line");
        log.push_str(&line);
        log.push('\n');
        if line.contains("edge listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("no addr in {line}"))
                .to_string();
            // Keep draining the log so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, addr, log);
        }
    }
    let status = child.wait().expect("wait");
    panic!("serve exited ({status}) before listening:\n{log}");
}

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "SIGTERM is a clean shutdown, got {status}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `serve` reads a config file (layered under the environment and flags),
/// compiles the guest once, and loads it from the on-disk cache on the next start.
#[test]
fn serve_takes_a_config_file_and_reuses_compiled_modules() {
    let module = edgewise_edge::guest::default_module_path();
    assert!(module.exists(), "guest module missing at {}: run `cargo xtask guest`", module.display());
    let d = tmp("serve");
    let compiled = d.join("compiled");
    let _ = std::fs::remove_dir_all(&compiled);
    let cfg = d.join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[origin]\nurl = \"http://127.0.0.1:9\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [guest]\nmodule = {:?}\ncompiled_cache_dir = {:?}\ninstances = \"fresh\"\n",
            module.display().to_string(),
            compiled.display().to_string()
        ),
    )
    .expect("config");
    let (child, addr, log) = start_serve(&["--config", s(&cfg)]);
    assert!(log.contains("compiled=Compiled"), "first start compiles:\n{log}");
    assert!(log.contains("instances=Fresh"), "the file sets the instance mode:\n{log}");
    assert!(http_get(&addr, "/readyz").starts_with("HTTP/1.1 200"), "ready once the module is loaded");
    stop(child);
    assert_eq!(std::fs::read_dir(&compiled).expect("cache dir").count(), 1, "one compiled module on disk");

    // A flag beats the file; the compiled module comes from disk.
    let (child, addr, log) = start_serve(&["--config", s(&cfg), "--instances", "pooled"]);
    assert!(log.contains("compiled=Disk"), "second start loads from the cache:\n{log}");
    assert!(log.contains("instances=Pooled"), "{log}");
    assert!(http_get(&addr, "/livez").starts_with("HTTP/1.1 200"));
    stop(child);
}

#[test]
fn serve_refuses_bad_configuration_with_a_message() {
    let d = tmp("serve-bad");
    let unknown = d.join("unknown.toml");
    std::fs::write(&unknown, "[origin]\nurl = \"http://127.0.0.1:9\"\n[guest]\ndeadline = 5\n").expect("write");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec![], "origin.url is required"),
        (vec!["--origin", "ftp://x"], "must be an http:// URL"),
        (vec!["--config", s(&unknown)], "deadline"),
        (vec!["--origin", "http://127.0.0.1:9", "--guest-deadline-ms", "0"], "guest.deadline_ms = 0"),
    ];
    for (args, want) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_edgewise-edge"))
            .arg("serve")
            .args(&args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("the binary runs");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: expected {want:?} in:\n{}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?} panicked:\n{}", text(&o));
    }
}
