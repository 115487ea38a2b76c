//! How long a restarted edge takes to open its disk cache: the index read,
//! CRC-checked, validated by `bytecheck` and turned into the in-memory map,
//! and the objects folder scanned for orphans, for 1k, 10k and 100k entries.
//!
//! `cargo bench -p edgewise-edge --bench disk`. Each size is opened 7 times
//! (after one untimed open that warms the page cache, as a restart finds it);
//! the table gives the median and the fastest. Bodies are 2 KiB with a
//! bundle's headers.

use std::time::{Duration, Instant};

use edgewise_edge::disk::{DiskStore, INDEX_FILE};
use reqwest::header::HeaderMap;

fn headers(region: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let pairs = [
        ("content-type", "application/vnd.edgewise.bundle".to_string()),
        (
            "cache-control",
            "public, max-age=60, s-maxage=300, stale-while-revalidate=600, stale-if-error=86400".to_string(),
        ),
        ("etag", format!("\"{:064x}\"", region)),
        ("surrogate-key", format!("bundle bundle-format-2 bundle-regional region-{}", region % 32)),
        ("x-edgewise-bundle-digest", format!("{:064x}", region)),
    ];
    for (k, v) in pairs {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    h
}

fn main() -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("ew-disk-bench-{}", std::process::id()));
    let body = vec![7u8; 2048];
    println!("| entries | index bytes | open, median | open, fastest |");
    println!("|---:|---:|---:|---:|");
    for n in [1_000u64, 10_000, 100_000] {
        let dir = root.join(n.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = DiskStore::open(&dir, u64::MAX)?;
        let t = Instant::now();
        for i in 0..n {
            store.put(
                &format!("/v1/regions/{}/bundle?k={i}", i % 32),
                &body,
                &headers(i),
                Duration::ZERO,
                1_700_000_000_000 + i,
            )?;
        }
        store.flush()?;
        eprintln!("wrote {n} entries in {:.1} s", t.elapsed().as_secs_f64());
        drop(store);
        let index = std::fs::metadata(dir.join(INDEX_FILE))?.len();
        let mut times = Vec::new();
        for round in 0..8 {
            let t = Instant::now();
            let (store, report) = DiskStore::open(&dir, u64::MAX)?;
            let took = t.elapsed();
            anyhow::ensure!(report.entries as u64 == n && report.discarded.is_none(), "{report:?}");
            drop(store);
            if round > 0 {
                times.push(took);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("| {n} | {index} | {:.1} ms | {:.1} ms |", ms(times[times.len() / 2]), ms(times[0]));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
