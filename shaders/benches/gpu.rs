//! The GPU path against the CPU core: µs per ranking as the bundle grows.
//!
//! `WGPU_BACKEND=vulkan cargo bench -p edgewise-shaders --bench gpu`
//! (`EDGEWISE_BENCH_QUICK=1`: only n = 1k and 10k). Without a GPU, Mesa's
//! lavapipe (`mesa-vulkan-drivers`) serves as the adapter; it emulates Vulkan
//! on the CPU, so its column is not a GPU measurement, and the table says so.
//!
//! Synthetic bundles (`edgewise_core::synth`: 8 features, 5 sources) of
//! n = 1k, 10k, 100k and 1M rows at d = 64 and 256, a model with hidden
//! layers 64 and 32 that pre-ranks to 300, k = 50. Per shape:
//!
//! * **CPU core**: [`Ranker::rank`], native, one thread;
//! * **GPU path**: [`GpuRanker::rank`] on a bundle already resident
//!   ([`GpuRanker::upload`] once, timed on its own): the query written, the
//!   int8 dot products of every row computed on the device and read back,
//!   then the core finishing from them ([`Ranker::rank_with_dots`]);
//! * **GPU scan only**: [`GpuRanker::dot_products`] on the same resident
//!   bundle: query write, one dispatch per chunk, readback of the dot
//!   products (copied out), and no ranking. It is the GPU path's share that
//!   the device does (plus the transfers);
//! * **CPU finish**: [`Ranker::rank_with_dots`] given the dot products: the
//!   GPU path's share that runs on the CPU, a floor under its time; CPU core
//!   over CPU finish is the *ceiling*, the speed-up an infinitely fast scan
//!   (and free transfers) would give.
//!
//! Before anything is timed, the GPU path's output is checked to equal the
//! core's bit for bit (items and every row's explanation) and the scan's dot
//! products to equal the core's, so no wrong result is ever timed. Then the
//! four measurements take turns, round after round (so machine noise hits
//! all alike), each ranking with a context one millisecond later than the
//! last (the session decay changes the query); each cell is the median over
//! rounds. Small shapes get more rounds than large ones, within a time budget.
//!
//! It prints a markdown table, the crossover n per d (the smallest n at which
//! the GPU path beats the core), the effective bandwidth at 1M × 256, and
//! writes a log-log chart to `<target>/edgewise-bench/gpu.png` (`<target>`
//! is `$CARGO_TARGET_DIR`, or `target/` in the workspace).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use edgewise_core::bundle::Bundle;
use edgewise_core::math::dot_i8;
use edgewise_core::rank::{RankOutput, Ranker};
use edgewise_core::synth;
use edgewise_shaders::{GpuOptions, GpuRanker};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::series::DashedLineSeries;

const NOW: u64 = 1_700_000_000_000;
const K: u32 = 50;
const PRERANK_KEEP: u32 = 300;
const HIDDEN: [usize; 2] = [64, 32];
const DIMS: [u16; 2] = [64, 256];
const ROWS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
/// Seconds of timed rounds per shape (after the warm-up), at least [`MIN_ROUNDS`].
const BUDGET_S: f64 = 6.0;
const MIN_ROUNDS: usize = 5;
const MAX_ROUNDS: usize = 41;
const TIMEOUT: Duration = Duration::from_secs(120);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// `1k`, `10k`, `1M`.
fn rows_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The first `model name` in `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown ({})", std::env::consts::ARCH))
}

/// Checks that two rankings are the same bit for bit; says where they differ.
fn same_output(cpu: &RankOutput, gpu: &RankOutput) -> Result<()> {
    let item = |i: &edgewise_core::rank::RankedItem| {
        (
            i.row,
            i.id,
            i.score.to_bits(),
            i.pre_score.to_bits(),
            i.main_score.to_bits(),
            i.mmr_penalty.to_bits(),
            i.mmr_score.to_bits(),
        )
    };
    let a: Vec<_> = cpu.items.iter().map(item).collect();
    let b: Vec<_> = gpu.items.iter().map(item).collect();
    assert_eq!(a, b, "the GPU path's items (ids, rows, scores) differ from the core's");
    let (nc, ng) = (cpu.rows.len(), gpu.rows.len());
    ensure!(nc == ng, "{nc} rows explained on the CPU, {ng} on the GPU");
    let row = |r: &edgewise_core::rank::RowExplain| {
        (r.outcome as u8, r.pre_score.to_bits(), r.main_score.to_bits(), r.calibrated.to_bits())
    };
    if let Some(i) = (0..cpu.rows.len()).find(|&i| row(&cpu.rows[i]) != row(&gpu.rows[i])) {
        bail!("row {i} differs: CPU {:?}, GPU {:?}", cpu.rows[i], gpu.rows[i]);
    }
    Ok(())
}

/// One shape's measurements (µs unless named otherwise).
struct Row {
    n: usize,
    d: u16,
    cpu: f64,
    gpu: f64,
    scan: f64,
    finish: f64,
    upload_ms: f64,
    first_ms: f64,
    rounds: usize,
}

fn measure(n: usize, d: u16, gpu: &mut GpuRanker) -> Result<Row> {
    let seed = 0xED6E_0000 + n as u64 + u64::from(d);
    let spec = synth::Spec::new(n, d, seed);
    let t = Instant::now();
    eprint!("n = {:>4}, d = {d:>3}: generating ...", rows_label(n));
    let bytes = synth::bundle(&spec, NOW - 60_000);
    let model = synth::model(&spec, &HIDDEN, PRERANK_KEEP, seed ^ 1);
    let base_ctx = synth::context(&spec, K, NOW, seed ^ 2);
    let bundle = Bundle::decode(&bytes).context("the synthetic bundle decodes")?;
    eprint!(" {:.1} s; uploading ...", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let resident = gpu.upload(bundle).context("uploading to the GpuRanker")?;
    let upload_ms = t.elapsed().as_secs_f64() * 1e3;

    // Correctness first: the GPU path equals the core, the scan's dot products equal the core's.
    let mut ranker = Ranker::new();
    let (mut cpu_out, mut gpu_out) = (RankOutput::default(), RankOutput::default());
    ranker.rank(&model, &bundle, &base_ctx, &mut cpu_out)?;
    let t = Instant::now();
    gpu.rank(&model, &resident, &base_ctx, &mut gpu_out)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    same_output(&cpu_out, &gpu_out)?;
    let query: Vec<i8> = ranker.quantized_query(&model, &bundle, &base_ctx)?.0.to_vec();
    let cpu_dots: Vec<i32> = (0..n).map(|i| dot_i8(&query, bundle.embedding(i))).collect();
    let mut scan_dots = Vec::new();
    gpu.dot_products(&resident, &query, &mut scan_dots)?;
    ensure!(scan_dots == cpu_dots, "the scan's dot products differ from the core's");
    let mut finish_out = RankOutput::default();
    ranker.rank_with_dots(&model, &bundle, &base_ctx, &cpu_dots, &mut finish_out)?;
    same_output(&cpu_out, &finish_out)?;
    eprint!(" checked; timing ...");

    let mut ctx = base_ctx.clone();
    let mut finisher = Ranker::new();
    let mut round = |order: [usize; 4]| -> Result<[f64; 4]> {
        ctx.now_ms += 1;
        let mut r = [0.0; 4];
        for step in order {
            let t = Instant::now();
            match step {
                0 => ranker.rank(&model, &bundle, &ctx, &mut cpu_out)?,
                1 => gpu.rank(&model, &resident, &ctx, &mut gpu_out)?,
                2 => gpu.dot_products(&resident, &query, &mut scan_dots)?,
                _ => finisher.rank_with_dots(&model, &bundle, &base_ctx, &cpu_dots, &mut finish_out)?,
            }
            r[step] = micros(t);
        }
        Ok(r)
    };
    // Warm-up, which also sizes the number of rounds.
    let t = Instant::now();
    round([0, 1, 2, 3])?;
    let per_round = t.elapsed().as_secs_f64();
    let rounds = ((BUDGET_S / per_round) as usize).clamp(MIN_ROUNDS, MAX_ROUNDS);
    let mut cols: [Vec<f64>; 4] = Default::default();
    for i in 0..rounds {
        let r = round(if i % 2 == 0 { [0, 1, 2, 3] } else { [3, 2, 1, 0] })?;
        for (c, v) in cols.iter_mut().zip(r) {
            c.push(v);
        }
    }
    let [cpu, gpu_us, scan_us, finish] = cols.map(|mut c| median(&mut c));
    eprintln!(" {rounds} rounds, CPU {cpu:.0} µs, GPU {gpu_us:.0} µs");
    Ok(Row { n, d, cpu, gpu: gpu_us, scan: scan_us, finish, upload_ms, first_ms, rounds })
}

/// `$CARGO_TARGET_DIR/edgewise-bench`, or `target/edgewise-bench` in the workspace.
fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("edgewise-bench")
}

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a TrueType font for the chart's text (`$EDGEWISE_PLOT_FONT` or DejaVu Sans).
fn register_font() -> Result<()> {
    let candidates: Vec<PathBuf> = match std::env::var_os("EDGEWISE_PLOT_FONT") {
        Some(p) => vec![PathBuf::from(p)],
        None => FONTS.iter().map(PathBuf::from).collect(),
    };
    let bytes = candidates
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .with_context(|| format!("no font for the chart (install fonts-dejavu-core): looked at {candidates:?}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow!("the chart's font is not a TrueType font"))
}

/// The log-log chart: µs per ranking against n, one line per (path, d).
fn plot(rows: &[Row], path: &Path, adapter: &str) -> Result<()> {
    register_font()?;
    let ys = rows.iter().flat_map(|r| [r.cpu, r.gpu]);
    let (y0, y1) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (x0, x1) = rows.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(r.n as f64), hi.max(r.n as f64)));
    ensure!(y0.is_finite() && y0 > 0.0 && x0.is_finite(), "nothing to plot");
    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("µs per ranking: CPU core (solid) against the GPU path (dashed)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((x0 / 1.3..x1 * 1.3).log_scale(), (y0 / 1.5..y1 * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(format!("rows n; GPU: {adapter}"))
        .y_desc("µs per ranking (median)")
        .x_label_formatter(&|x| rows_label(x.round() as usize))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    for (k, d) in DIMS.into_iter().enumerate() {
        let color = if k == 0 { RGBColor(31, 119, 180) } else { RGBColor(214, 39, 40) };
        let pick = |f: fn(&Row) -> f64| -> Vec<(f64, f64)> {
            rows.iter().filter(|r| r.d == d).map(|r| (r.n as f64, f(r))).collect()
        };
        let (cpu, gpu) = (pick(|r| r.cpu), pick(|r| r.gpu));
        if cpu.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(cpu.clone(), color.stroke_width(2)))?
            .label(format!("CPU core, d = {d}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
        chart.draw_series(cpu.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        chart
            .draw_series(DashedLineSeries::new(gpu.clone(), 10, 6, color.stroke_width(2)))?
            .label(format!("GPU path, d = {d}"))
            .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, color.stroke_width(2)));
        chart.draw_series(gpu.into_iter().map(|p| TriangleMarker::new(p, 6, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let started = Instant::now();
    let quick = std::env::var("EDGEWISE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let sizes: Vec<usize> = if quick { ROWS[..2].to_vec() } else { ROWS.to_vec() };
    let mut gpu = GpuRanker::new(&GpuOptions { timeout: TIMEOUT, ..GpuOptions::default() }).context(
        "no GPU adapter: on a machine without a GPU install Mesa's lavapipe (`mesa-vulkan-drivers`) and set \
         WGPU_BACKEND=vulkan",
    )?;
    let adapter = gpu.adapter().clone();
    eprintln!("adapter: {adapter}");

    let mut rows = Vec::new();
    for d in DIMS {
        for &n in &sizes {
            rows.push(measure(n, d, &mut gpu)?);
        }
    }

    let emulated = adapter.device_type == "Cpu";
    println!("\n## GPU path against the CPU core\n");
    println!("- adapter: {adapter}");
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("- CPU: {} ({threads} threads available; the CPU core ranks on one)", cpu_model());
    println!(
        "- synthetic bundles (8 features, 5 sources), model with hidden layers {HIDDEN:?}, pre-rank keep \
         {PRERANK_KEEP}, k = {K}; medians over rounds"
    );
    if emulated {
        println!(
            "\n> **Note:** the adapter's device type is `Cpu`: the GPU column is a CPU emulation of Vulkan \
             (lavapipe), not a GPU measurement."
        );
    }
    println!();
    println!(
        "| n | d | CPU core µs | GPU path µs (resident) | speed-up CPU/GPU | ceiling CPU/finish | GPU scan only µs | CPU finish µs | \
         upload ms | first GPU ranking ms | rounds |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            rows_label(r.n),
            r.d,
            r.cpu,
            r.gpu,
            r.cpu / r.gpu,
            r.cpu / r.finish,
            r.scan,
            r.finish,
            r.upload_ms,
            r.first_ms,
            r.rounds
        );
    }
    println!(
        "\n*GPU path*: `GpuRanker::rank` on a resident bundle (query upload, scan, readback, the core's finish). \
         *GPU scan only*: `GpuRanker::dot_products` on the same resident bundle: query write, \
         dispatches, readback, no ranking. *CPU finish*: `Ranker::rank_with_dots` given the dot products, the \
         GPU path's CPU share; *ceiling*: the speed-up an infinitely fast scan would give. *upload*: \
         `GpuRanker::upload` (host side; a driver may defer the copy to the first ranking, which *first GPU \
         ranking* includes)."
    );
    println!();
    for d in DIMS {
        let cross = rows.iter().filter(|r| r.d == d).find(|r| r.gpu < r.cpu).map(|r| rows_label(r.n));
        let within = rows_label(sizes.last().copied().unwrap_or(0));
        println!(
            "- crossover, d = {d} (smallest n at which the GPU path beats the CPU core): {}",
            cross.unwrap_or_else(|| format!("none within {within}"))
        );
    }
    if let Some(r) = rows.iter().find(|r| r.n == 1_000_000 && r.d == 256) {
        let bytes = r.n as f64 * f64::from(r.d);
        println!(
            "- effective scan bandwidth (whole GPU ranking incl. readback and CPU finish), 1M × 256 int8 rows \
             ({:.0} MB): {:.2} GB/s{}",
            bytes / 1e6,
            bytes / (r.gpu * 1e3),
            if emulated { " (lavapipe: a CPU, not a GPU)" } else { "" }
        );
        println!(
            "- the same bytes over the scan alone (query write, dispatches, readback of 4 MB of dot products): \
             {:.2} GB/s; the CPU core's whole ranking: {:.2} GB/s",
            bytes / (r.scan * 1e3),
            bytes / (r.cpu * 1e3)
        );
    }

    let dir = out_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let png = dir.canonicalize().unwrap_or(dir).join("gpu.png");
    let device = if emulated {
        format!("{}, a CPU emulation of Vulkan, not a GPU", adapter.name)
    } else {
        format!("{} ({})", adapter.name, adapter.device_type)
    };
    match plot(&rows, &png, &device) {
        Ok(()) => println!("\nchart: {}", png.display()),
        Err(e) => eprintln!("\nno chart ({e:#}); the table above has every number"),
    }
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
