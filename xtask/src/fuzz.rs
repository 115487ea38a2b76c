//! `cargo xtask fuzz [--seconds N] [--targets a,b] [--fresh-corpus]`:
//! a fuzz campaign over the cargo-fuzz targets in `core/fuzz/`.
//!
//! It installs what it needs (the nightly toolchain, a pinned `cargo-fuzz`),
//! writes the seed corpora (`core/fuzz/src/bin/seeds.rs`), builds every target
//! once (with debug assertions, so overflow is a crash), then runs each for `N`
//! seconds on one job, one after another. It prints a table of executions,
//! exec/s, coverage (edges), features, corpus entries and crashes per target,
//! writes it as JSON to `<target>/edgewise-bench/fuzz.json` with each target's
//! full libFuzzer log beside it, and fails naming the target and its crash
//! artifact if any target crashed.
//!
//! `--fresh-corpus` runs every target from an empty corpus (no seeds), as the
//! targets were run before they were structure-aware.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, run as run_cmd};

/// The campaign's targets, in run order.
const TARGETS: [&str; 5] = ["decode_bundle", "decode_prechecked", "decode_model", "decode_context", "rank"];
/// Targets that exist but are not in the default campaign (baselines).
const EXTRA_TARGETS: [&str; 1] = ["decode_bundle_raw"];
/// The cargo-fuzz release that builds here (rustc 1.95 stable, nightly 1.97).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// libFuzzer needs nightly's `-Z sanitizer` and coverage flags.
const NIGHTLY: &str = "nightly";

/// What one target's run measured.
#[derive(Debug, Default)]
struct Outcome {
    target: String,
    seconds: f64,
    executions: u64,
    execs_per_sec: u64,
    coverage: u64,
    features: u64,
    corpus: u64,
    crashes: u64,
    artifact: Option<String>,
    log: PathBuf,
}

struct Options {
    seconds: u64,
    targets: Vec<String>,
    fresh_corpus: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options { seconds: 60, targets: TARGETS.iter().map(|t| t.to_string()).collect(), fresh_corpus: false };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                o.seconds = v.parse().with_context(|| format!("--seconds {v:?} is not a whole number"))?;
                if o.seconds == 0 {
                    bail!("--seconds must be at least 1");
                }
            }
            "--targets" => {
                let v = it.next().context("--targets needs a comma-separated list")?;
                o.targets = v.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
                for t in &o.targets {
                    if !TARGETS.contains(&t.as_str()) && !EXTRA_TARGETS.contains(&t.as_str()) {
                        bail!(
                            "unknown fuzz target {t:?} (known: {}, {})",
                            TARGETS.join(", "),
                            EXTRA_TARGETS.join(", ")
                        );
                    }
                }
                if o.targets.is_empty() {
                    bail!("--targets names no target");
                }
            }
            "--fresh-corpus" => o.fresh_corpus = true,
            other => bail!(
                "unknown fuzz argument {other:?} (usage: cargo xtask fuzz [--seconds N] [--targets a,b] [--fresh-corpus])"
            ),
        }
    }
    Ok(o)
}

/// `cargo +nightly …` through rustup's proxy, without the outer cargo's toolchain choice.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{NIGHTLY}"));
    for var in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO_TARGET_DIR"] {
        c.env_remove(var);
    }
    c
}

fn stdout_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the nightly toolchain and the pinned cargo-fuzz when they are missing.
fn ensure_tools() -> Result<()> {
    let toolchains = stdout_of(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with(&format!("{NIGHTLY}-"))) {
        run_cmd(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))?;
    }
    let version = stdout_of(nightly_cargo().args(["fuzz", "--version"])).unwrap_or_default();
    if !version.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION) {
        run_cmd(cargo().args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"]))?;
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// The number after `key` in `line` (`"cov: 123 ft: …"` → 123 for `"cov:"`).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Reads libFuzzer's output: the last status line's `cov:`, `ft:` and `corp:`,
/// the final stats, and the path of a crash artifact.
fn parse_log(text: &str, o: &mut Outcome) {
    for line in text.lines() {
        if line.starts_with('#') && line.contains(" cov: ") {
            o.coverage = number_after(line, "cov:").unwrap_or(o.coverage);
            o.features = number_after(line, "ft:").unwrap_or(o.features);
            o.corpus = number_after(line, "corp:").unwrap_or(o.corpus);
            o.executions = number_after(line, "#").unwrap_or(o.executions);
        } else if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            o.executions = n.trim().parse().unwrap_or(o.executions);
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            o.execs_per_sec = n.trim().parse().unwrap_or(o.execs_per_sec);
        } else if let Some(at) = line.find("Test unit written to ") {
            o.artifact = Some(line[at + "Test unit written to ".len()..].trim().to_string());
        }
    }
}

/// Runs one target for `seconds`, streaming its log to a file and a progress line a minute.
fn run_target(core: &Path, bench: &Path, target: &str, opts: &Options) -> Result<Outcome> {
    let log_path = bench.join(format!("fuzz-{target}.log"));
    let mut log = std::fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut cmd = nightly_cargo();
    cmd.current_dir(core).args(["fuzz", "run", "--debug-assertions", target]);
    if opts.fresh_corpus {
        let dir = bench.join("fuzz-fresh-corpus").join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        cmd.arg(&dir);
    }
    cmd.args(["--", &format!("-max_total_time={}", opts.seconds), "-print_final_stats=1", "-timeout=10"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start cargo fuzz run {target}"))?;
    // libFuzzer writes its status to stderr; stdout (cargo's, the target's) goes into the log too.
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut text = String::new();
    let mut last_progress = Instant::now();
    let stderr = child.stderr.take().context("no stderr pipe")?;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        writeln!(log, "{line}")?;
        if line.starts_with('#') && line.contains(" cov: ") && last_progress.elapsed().as_secs() >= 60 {
            last_progress = Instant::now();
            println!("    {target} {:>5.0} s: {}", start.elapsed().as_secs_f64(), line.trim());
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().with_context(|| format!("waiting for cargo fuzz run {target}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let out_text = out_thread.join().unwrap_or_default();
    writeln!(log, "{out_text}")?;
    let mut o = Outcome { target: target.to_string(), seconds, log: log_path, ..Outcome::default() };
    parse_log(&text, &mut o);
    if !status.success() {
        o.crashes = 1;
        if o.artifact.is_none() && o.executions == 0 {
            bail!("cargo fuzz run {target} failed with {status} before fuzzing (log: {})", o.log.display());
        }
    }
    Ok(o)
}

fn table(outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "| {:<18} | {:>7} | {:>13} | {:>7} | {:>8} | {:>8} | {:>6} | {:>7} |\n",
        "target", "seconds", "executions", "exec/s", "coverage", "features", "corpus", "crashes"
    );
    s.push_str("|--------------------|--------:|--------------:|--------:|---------:|---------:|-------:|--------:|\n");
    for o in outcomes {
        s.push_str(&format!(
            "| {:<18} | {:>7.0} | {:>13} | {:>7} | {:>8} | {:>8} | {:>6} | {:>7} |\n",
            o.target, o.seconds, o.executions, o.execs_per_sec, o.coverage, o.features, o.corpus, o.crashes
        ));
    }
    s
}

/// `cargo xtask fuzz`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    ensure_tools()?;
    let core = root.join("core");
    let bench = target_dir(root).join("edgewise-bench");
    std::fs::create_dir_all(&bench).with_context(|| format!("cannot create {}", bench.display()))?;
    if !opts.fresh_corpus {
        run_cmd(
            cargo()
                .args(["run", "--quiet", "--manifest-path", "core/fuzz/Cargo.toml", "--bin", "seeds"])
                .env_remove("CARGO_TARGET_DIR"),
        )?;
    }
    // One build of every target, so each run below starts fuzzing at once.
    run_cmd(nightly_cargo().current_dir(&core).args(["fuzz", "build", "--debug-assertions"]))?;
    let mut outcomes = Vec::new();
    let n = opts.targets.len();
    for (i, t) in opts.targets.iter().enumerate() {
        println!("\n[{}/{n}] fuzzing {t} for {} s …", i + 1, opts.seconds);
        let o = run_target(&core, &bench, t, &opts)?;
        println!(
            "[{}/{n}] {t}: {} executions ({} exec/s), coverage {}, features {}, corpus {}{}",
            i + 1,
            o.executions,
            o.execs_per_sec,
            o.coverage,
            o.features,
            o.corpus,
            if o.crashes > 0 {
                format!(", CRASHED: {}", o.artifact.as_deref().unwrap_or("no artifact"))
            } else {
                String::new()
            }
        );
        outcomes.push(o);
    }
    let shown = format!("cargo xtask fuzz {}", args.join(" "));
    println!("\n{}\n{}", shown.trim(), table(&outcomes));
    let json = serde_json::json!({
        "command": shown.trim(),
        "seconds_per_target": opts.seconds,
        "cargo_fuzz": CARGO_FUZZ_VERSION,
        "fresh_corpus": opts.fresh_corpus,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "targets": outcomes.iter().map(|o| serde_json::json!({
            "target": o.target,
            "seconds": (o.seconds * 10.0).round() / 10.0,
            "executions": o.executions,
            "execs_per_sec": o.execs_per_sec,
            "coverage": o.coverage,
            "features": o.features,
            "corpus": o.corpus,
            "crashes": o.crashes,
            "artifact": o.artifact,
            "log": o.log.display().to_string(),
        })).collect::<Vec<_>>(),
    });
    let json_path = bench.join("fuzz.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("written: {}", json_path.display());
    let crashed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.crashes > 0)
        .map(|o| {
            format!("{} (artifact: {}, log: {})", o.target, o.artifact.as_deref().unwrap_or("none"), o.log.display())
        })
        .collect();
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libfuzzer_output() {
        let text = "INFO: seed corpus: files: 31\n\
            #32\tINITED cov: 509 ft: 777 corp: 21/2928b exec/s: 0 rss: 37Mb\n\
            #2652866\tDONE   cov: 552 ft: 1973 corp: 99/16292b lim: 4096 exec/s: 43489 rss: 491Mb\n\
            stat::number_of_executed_units: 2652866\n\
            stat::average_exec_per_sec:     43489\n";
        let mut o = Outcome::default();
        parse_log(text, &mut o);
        assert_eq!((o.executions, o.execs_per_sec, o.coverage, o.features, o.corpus), (2652866, 43489, 552, 1973, 99));
        assert_eq!(o.artifact, None);
        let crash = "==1== ERROR: libFuzzer: deadly signal\n\
            artifact_prefix='/x/artifacts/rank/'; Test unit written to /x/artifacts/rank/crash-abc\n";
        parse_log(crash, &mut o);
        assert_eq!(o.artifact.as_deref(), Some("/x/artifacts/rank/crash-abc"));
    }

    #[test]
    fn parses_arguments() {
        let args: Vec<String> = ["--seconds", "5", "--targets", "rank,decode_bundle_raw"].map(String::from).to_vec();
        let o = parse(&args).expect("parses");
        assert_eq!((o.seconds, o.targets.len(), o.fresh_corpus), (5, 2, false));
        assert!(parse(&["--targets".to_string(), "nope".to_string()]).is_err());
        assert!(parse(&["--seconds".to_string(), "0".to_string()]).is_err());
    }
}
