//! The `edgewise-edge rank` command, run as a process: file round trips, and
//! clear errors (exit code 1 plus a message naming the problem) on bad input.

use std::path::Path;
use std::process::{Command, Output};

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

#[test]
fn synthetic_files_round_trip_through_the_cli() {
    let d = tmp("roundtrip");
    let o = edge(&["--write-to", s(&d), "-k", "7", "--candidates", "300", "--dim", "32"]);
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
    assert!(edge(&["--write-to", s(&d), "--candidates", "50", "--dim", "8"]).status.success());
    let (b, m) = (d.join("bundle.ewb"), d.join("model.ewm"));
    let bundle = std::fs::read(&b).expect("bundle");
    let truncated = d.join("truncated.ewb");
    std::fs::write(&truncated, &bundle[..bundle.len() / 2]).expect("write");

    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--bundle", s(&truncated), "--model", s(&m)], "bundle length is"),
        (vec!["--bundle", s(&b), "--model", s(&b)], "not an Edgewise model"),
        (vec!["--bundle", s(&b), "--model", s(&m), "--context", s(&b)], "malformed context"),
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
