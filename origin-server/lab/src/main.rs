//! `edgewise-lab`: offline work on an origin's data directory — importing
//! data, training the embeddings and the ranker, evaluating them. The server
//! must not be running on the directory (the store takes an exclusive lock).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use edgewise_lab::train::{Step, TrainOptions};
use edgewise_origin::cli::GlobalArgs;
use edgewise_origin::{Config, item::Item, progress_bar};

#[derive(Parser, Debug)]
#[command(
    name = "edgewise-lab",
    version,
    about = "Offline work on an Edgewise origin's data directory: import, train, evaluate"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Import data into the data directory.
    Import {
        #[command(subcommand)]
        what: ImportCmd,
    },
    /// Train item and user embeddings, content embeddings and the ranker from
    /// the stored interactions, and register the ranker as the current model.
    Train {
        /// Embedding dimension (changes the data directory's schema when it differs).
        #[arg(long)]
        dim: Option<usize>,
        /// ALS sweeps.
        #[arg(long, default_value_t = TrainOptions::default().epochs)]
        epochs: usize,
        /// Seed of every random choice (training is deterministic for a seed).
        #[arg(long, default_value_t = TrainOptions::default().seed)]
        seed: u64,
        /// Passes of the ranker's training (the best epoch on the validation split is kept).
        #[arg(long, default_value_t = TrainOptions::default().ranker_epochs)]
        ranker_epochs: usize,
        /// History entries the ranker's attention reads (1–64).
        #[arg(long, default_value_t = TrainOptions::default().history_length)]
        history_length: usize,
        /// Attention heads (1–8).
        #[arg(long, default_value_t = TrainOptions::default().heads)]
        heads: usize,
    },
    /// Evaluate the trained embeddings and ranker offline (leave-last-out).
    Eval {
        /// Print the report as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Candidates of the pipeline and speculative variants.
        #[arg(long, default_value_t = 300)]
        candidates: usize,
        /// Evaluate only the first N users (default: all).
        #[arg(long)]
        users: Option<usize>,
        /// Where eval.json and the plots go (default: DATA_DIR/eval).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The experiments study on simulated users: users an A/B test and
    /// interleaving need, Thompson sampling's regret against 50/50, A/A false
    /// positives under repeated reads (run `train` first).
    Simulate {
        /// Print the study as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Runs per measurement.
        #[arg(long, default_value_t = edgewise_lab::simulate::SimOptions::default().runs)]
        runs: u32,
        /// The most users one test may take.
        #[arg(long, default_value_t = edgewise_lab::simulate::SimOptions::default().max_users)]
        max_users: u32,
        /// Visits of the bandit comparison.
        #[arg(long, default_value_t = edgewise_lab::simulate::SimOptions::default().visits)]
        visits: u32,
        /// Users per A/A test.
        #[arg(long, default_value_t = edgewise_lab::simulate::SimOptions::default().aa_users)]
        aa_users: u32,
        /// Users between two reads of a test.
        #[arg(long, default_value_t = edgewise_lab::simulate::SimOptions::default().read_every)]
        read_every: u32,
        /// Seed of the first run.
        #[arg(long, default_value_t = edgewise_lab::simulate::SimOptions::default().seed)]
        seed: u64,
        /// Where simulation.json and the plots go (default: DATA_DIR/simulation).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCmd {
    /// Items from an NDJSON file, one item per line (the `PUT /v1/items` format).
    Items {
        /// The NDJSON file.
        #[arg(long)]
        file: PathBuf,
        /// Skip malformed lines (each is reported) instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// MovieLens-100K from RecBole's atomic files (`ml-100k.inter`, `.item`, `.user`).
    Movielens {
        /// Folder with the files; default: install `recbole==1.2.1` from PyPI into the cache and use its copy.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Skip malformed lines (each is reported with its file and line) instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    cli.global.init_logging();
    let cfg = cli.global.load(Vec::new())?;
    match &cli.cmd {
        Cmd::Import { what: ImportCmd::Items { file, skip_invalid } } => import_items(cfg, file, *skip_invalid),
        Cmd::Import { what: ImportCmd::Movielens { path, skip_invalid } } => {
            import_movielens(cfg, path.as_deref(), *skip_invalid)
        }
        Cmd::Train { dim, epochs, seed, ranker_epochs, history_length, heads } => {
            let o = TrainOptions {
                dim: dim.unwrap_or(cfg.index.dim),
                epochs: *epochs,
                seed: *seed,
                ranker_epochs: *ranker_epochs,
                history_length: *history_length,
                heads: *heads,
                ..TrainOptions::default()
            };
            train(cfg, &o)
        }
        Cmd::Eval { json, candidates, users, out } => eval(cfg, *json, *candidates, *users, out.clone()),
        Cmd::Simulate { json, runs, max_users, visits, aa_users, read_every, seed, out } => {
            let o = edgewise_lab::simulate::SimOptions {
                runs: *runs,
                max_users: *max_users,
                visits: *visits,
                aa_users: *aa_users,
                read_every: *read_every,
                seed: *seed,
                ..Default::default()
            };
            simulate(cfg, &o, *json, out.clone())
        }
    }
}

fn open_store(cfg: &Config) -> Result<edgewise_origin::store::Store> {
    edgewise_origin::store::Store::open(&cfg.data_dir)
        .with_context(|| format!("cannot open the store in {} (is a server running on it?)", cfg.data_dir.display()))
}

fn import_movielens(cfg: Config, path: Option<&std::path::Path>, skip_invalid: bool) -> Result<()> {
    use edgewise_lab::movielens::{self, OnError};
    let dir = match path {
        Some(p) => p.to_path_buf(),
        None => movielens::installed_dir(|m| eprintln!("{m}"))?,
    };
    let on_error = if skip_invalid { OnError::Skip } else { OnError::Stop };
    let ds = movielens::load(&dir, on_error)
        .map_err(|e| anyhow::anyhow!("{e} (use --skip-invalid to skip malformed lines)"))?;
    for e in &ds.skipped {
        eprintln!("skipped: {e}");
    }
    for n in &ds.notes {
        eprintln!("note: {n}");
    }
    let cfg = edgewise_lab::import::movielens_schema(&cfg);
    let store = open_store(&cfg)?;
    let pb = progress_bar(ds.ratings.len() as u64, "importing ratings as events");
    let report = edgewise_lab::import::import_movielens(&store, &cfg, &ds, |n, total| {
        pb.set_length(total);
        pb.set_position(n);
    })?;
    pb.finish_and_clear();
    println!(
        "imported MovieLens-100K from {} into {}: {} movies, {} users, {} ratings ({} new events, {} already there); \
         {} malformed lines skipped, {} values repaired",
        dir.display(),
        cfg.data_dir.display(),
        report.items,
        report.users,
        ds.ratings.len(),
        report.events_applied,
        report.events_duplicate,
        ds.skipped.len(),
        ds.notes.len()
    );
    Ok(())
}

fn train(cfg: Config, o: &TrainOptions) -> Result<()> {
    let store = open_store(&cfg)?;
    let pb = progress_bar(0, "training");
    let start = std::time::Instant::now();
    let report = edgewise_lab::train::train(&store, &cfg, o, |s| match s {
        Step::RankerEmbeddings(n, total) => {
            pb.set_message("ranker-data embeddings (ALS)");
            pb.set_length(total as u64);
            pb.set_position(n as u64);
        }
        Step::Ranker(n, total, loss, ndcg) => {
            pb.set_message(format!("ranker (loss {loss:.4}, validation NDCG@10 {ndcg:.4})"));
            pb.set_length(total as u64);
            pb.set_position(n as u64);
        }
        Step::Embeddings(n, total) => {
            pb.set_message("embeddings (ALS)");
            pb.set_length(total as u64);
            pb.set_position(n as u64);
        }
        Step::Writing => pb.set_message("writing items and users"),
    })?;
    pb.finish_and_clear();
    let mut next = cfg.clone();
    next.index.dim = o.dim;
    next.features.defaults = report.feature_defaults.clone();
    if next.data_schema() != cfg.data_schema() {
        next.data_schema().write(&cfg.data_dir)?;
        if o.dim != cfg.index.dim {
            println!("the data directory's embedding dimension is now {}", o.dim);
        }
        println!("missing features default to their training means: {:?}", report.feature_defaults);
    }
    println!(
        "trained in {:.1} s: {} item and {} user embeddings (dim {}), ranker on {} examples \
         (validation NDCG@10 {:.4} at epoch {}, AUC {:.3}; pre-ranker alone {:.3}; history of {}; \
         exported scores within {:.1e} of the trainer's); model {} ({} bytes) is now the stable model",
        start.elapsed().as_secs_f64(),
        report.items,
        report.users,
        report.dim,
        report.ranker_examples,
        report.ranker_validation_ndcg,
        report.ranker_best_epoch,
        report.ranker_validation_auc,
        report.prerank_validation_auc,
        report.history_length,
        report.export_max_logit_diff,
        report.model_digest,
        report.model_bytes
    );
    Ok(())
}

fn eval(cfg: Config, json: bool, candidates: usize, users: Option<usize>, out: Option<PathBuf>) -> Result<()> {
    if candidates == 0 || candidates > cfg.retrieval.max_k {
        bail!("--candidates must be in 1..={}", cfg.retrieval.max_k);
    }
    let store = std::sync::Arc::new(open_store(&cfg)?);
    let o = edgewise_lab::eval::EvalOptions { candidates, max_users: users, ..Default::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let pb = progress_bar(0, "evaluating users");
    let report = rt.block_on(edgewise_lab::eval::evaluate(store, &cfg, &o, |n, total| {
        pb.set_length(total);
        pb.set_position(n);
    }))?;
    pb.finish_and_clear();
    let dir = out.unwrap_or_else(|| cfg.data_dir.join("eval"));
    write_results(&dir, "eval.json", &report, json, &report.table(), |d| report.plots(d))
}

/// Writes `value` as `name` in `dir`, prints it (JSON, or `table`), then
/// draws its plots; a chart that cannot be drawn is reported, the numbers
/// are already written.
fn write_results(
    dir: &std::path::Path,
    name: &str,
    value: &impl serde::Serialize,
    json: bool,
    table: &str,
    plots: impl FnOnce(&std::path::Path) -> Result<Vec<PathBuf>, edgewise_lab::plot::PlotError>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(value)?;
    let json_path = dir.join(name);
    std::fs::write(&json_path, &text).with_context(|| format!("cannot write {}", json_path.display()))?;
    if json {
        println!("{text}");
    } else {
        print!("{table}");
    }
    match plots(dir) {
        Ok(paths) => {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            eprintln!("wrote {} and {}", json_path.display(), shown.join(", "));
        }
        Err(e) => eprintln!("wrote {}; plots not drawn: {e}", json_path.display()),
    }
    Ok(())
}

fn simulate(cfg: Config, o: &edgewise_lab::simulate::SimOptions, json: bool, out: Option<PathBuf>) -> Result<()> {
    use edgewise_lab::simulate;
    o.check().map_err(|e| anyhow::anyhow!("invalid options: {e}"))?;
    let store = std::sync::Arc::new(open_store(&cfg)?);
    let report = edgewise_lab::train::stored_report(&store)?;
    // Each user's lists, as `eval` ranks them.
    let eo = edgewise_lab::eval::EvalOptions { keep_lists: true, loss_at: Vec::new(), ..Default::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let pb = progress_bar(0, "ranking every user's lists");
    let ev = rt.block_on(edgewise_lab::eval::evaluate(store.clone(), &cfg, &eo, |n, total| {
        pb.set_length(total);
        pb.set_position(n);
    }))?;
    pb.finish_and_clear();
    // The truth: every interaction, folded in against the trained item factors.
    let mut log: std::collections::HashMap<u64, Vec<edgewise_origin::store::Interaction>> = Default::default();
    store.for_each_interaction(|i| log.entry(i.user).or_default().push(i))?;
    let mut items = std::collections::HashMap::new();
    store.for_each_item(|i| drop(items.insert(i.id, i.embedding)), |_| {})?;
    let embedder = edgewise_lab::train::UserEmbedder::new(
        items.iter().map(|(&id, e)| (id, e.as_slice())),
        cfg.index.dim,
        report.factorisation,
    );
    let truths = simulate::truths(&ev.lists, &log, &embedder).map_err(|e| anyhow::anyhow!("simulated users: {e}"))?;
    let mut comparisons = Vec::new();
    for other in ["mf", "popularity"] {
        let users = simulate::users(&ev.lists, other, &truths, |id| items.get(&id).map(Vec::as_slice))
            .map_err(|e| anyhow::anyhow!("simulated users: {e}"))?;
        comparisons.push((other, users));
    }
    let pb = progress_bar(0, "simulating");
    let study = simulate::study(&comparisons, o, |n, total| {
        pb.set_length(total);
        pb.set_position(n);
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    pb.finish_and_clear();
    let dir = out.unwrap_or_else(|| cfg.data_dir.join("simulation"));
    write_results(&dir, "simulation.json", &study, json, &study.table(), |d| study.plots(d))
}

fn import_items(cfg: Config, file: &PathBuf, skip_invalid: bool) -> Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let store = open_store(&cfg)?;
    let pb = progress_bar(size, "importing items");
    let reader = std::io::BufReader::new(f);
    let (mut batch, mut imported, mut skipped, mut read) = (Vec::new(), 0u64, 0u64, 0u64);
    let mut titles = Vec::new();
    let now = edgewise_http::now_ms();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read line", file.display(), n + 1))?;
        read += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str(&line).map_err(|e| e.to_string()).and_then(|v| Item::from_json(v, &cfg, now));
        match parsed {
            Ok((item, title)) => {
                if let Some(t) = title {
                    titles.push((item.id, t));
                }
                batch.push(item);
            }
            Err(e) if skip_invalid => {
                pb.suspend(|| eprintln!("{}:{}: skipped: {e}", file.display(), n + 1));
                skipped += 1;
            }
            Err(e) => bail!("{}:{}: {e} (use --skip-invalid to skip malformed lines)", file.display(), n + 1),
        }
        if batch.len() >= 10_000 {
            store.put_items(&batch)?;
            store.put_titles(&titles)?;
            imported += batch.len() as u64;
            batch.clear();
            titles.clear();
            pb.set_position(read);
        }
    }
    store.put_items(&batch)?;
    store.put_titles(&titles)?;
    imported += batch.len() as u64;
    pb.finish_and_clear();
    println!("imported {imported} items into {} ({skipped} malformed lines skipped)", cfg.data_dir.display());
    Ok(())
}
