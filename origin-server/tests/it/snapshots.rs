//! Index snapshots with the real binary: a graceful shutdown saves the HNSW
//! shards, the next start loads them; a snapshot that is corrupt, missing or
//! older than the store (a write after it, then SIGKILL) is never served: the
//! server warns and rebuilds the index from the store, and answers the same.

use edgewise_core::bundle::Bundle;
use serde_json::{Value, json};

use crate::common::{Origin, ingest_client, user_token};

const DIM: usize = 8;
const SHARDS: usize = 2;

fn env() -> Vec<(&'static str, String)> {
    vec![("EDGEWISE__INDEX__DIM", DIM.to_string()), ("EDGEWISE__RETRIEVAL__DEADLINE_MS", "5000".into())]
}

fn item(id: u64) -> Value {
    let e: Vec<f32> = (0..DIM).map(|j| (((id * 37 + j as u64 * 11) % 23) as f32 / 23.0) - 0.4).collect();
    json!({"id": id, "embedding": e, "creator": (id % 7) as u32, "created_at": id})
}

/// The candidate ids user 1 gets (collaborative retrieval runs on the ANN index).
async fn candidates(o: &Origin) -> Vec<u64> {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/users/1/candidates?k=40", o.url))
        .bearer_auth(user_token(1))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("a valid bundle");
    (0..b.len()).map(|i| b.id(i)).collect()
}

async fn loads(o: &Origin, how: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", o.url)).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find(|l| l.starts_with("edgewise_origin_index_loads_total") && l.contains(&format!("how=\"{how}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn snapshot_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir.join("index")).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_loaded_when_current_and_rebuilt_otherwise() {
    let dir = std::env::temp_dir().join(format!("ew-snapshots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let client = ingest_client();

    // First start: nothing to load.
    let o = Origin::start(&dir, SHARDS, &env()).await;
    assert_eq!(loads(&o, "rebuild").await, 1.0);
    // Regression (issue 13, "also seen"): /readyz's 503 while loading was logged at ERROR.
    assert_eq!(o.errors(), Vec::<Value>::new(), "start-up logs no error");
    let body: Vec<Value> = (1..=400).map(item).collect();
    assert_eq!(client.put(format!("{}/v1/items", o.url)).json(&body).send().await.expect("put").status(), 200);
    let evs: Vec<Value> = (1..=5)
        .map(|i| json!({"event_id": format!("c{i}"), "user": 1, "item": i * 3, "kind": "click", "time": 1000 + i, "region": 0}))
        .collect();
    assert_eq!(client.post(format!("{}/v1/events", o.url)).json(&evs).send().await.expect("post").status(), 200);
    let want = candidates(&o).await;
    assert_eq!(want.len(), 40);
    let logs = o.stop();
    assert!(logs.iter().any(|m| m.contains("index snapshots saved")), "{logs:?}");
    let files = snapshot_files(&dir);
    assert_eq!(files.len(), SHARDS, "one file per shard: {files:?}");

    // A clean restart loads the snapshot and answers the same.
    let o = Origin::start(&dir, SHARDS, &env()).await;
    assert_eq!((loads(&o, "snapshot").await, loads(&o, "rebuild").await), (1.0, 0.0));
    assert_eq!(candidates(&o).await, want);
    o.stop();

    // A corrupt snapshot is refused, with a warning, and the index is rebuilt.
    let mut bytes = std::fs::read(&files[1]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&files[1], &bytes).expect("corrupt it");
    let o = Origin::start(&dir, SHARDS, &env()).await;
    assert_eq!((loads(&o, "snapshot").await, loads(&o, "rebuild").await), (0.0, 1.0));
    let logs = o.messages();
    assert!(logs.iter().any(|m| m.contains("snapshot not used") && m.contains("checksum mismatch")), "{logs:?}");
    assert_eq!(candidates(&o).await, want);

    // A write after the last snapshot, then SIGKILL: the snapshot on disk is stale.
    o.stop();
    let o = Origin::start(&dir, SHARDS, &env()).await;
    assert_eq!(loads(&o, "snapshot").await, 1.0, "the rebuilt index was saved at the clean stop");
    let late = vec![item(401)];
    assert_eq!(client.put(format!("{}/v1/items", o.url)).json(&late).send().await.expect("put").status(), 200);
    o.kill();
    let o = Origin::start(&dir, SHARDS, &env()).await;
    assert_eq!((loads(&o, "snapshot").await, loads(&o, "rebuild").await), (0.0, 1.0));
    let logs = o.messages();
    assert!(logs.iter().any(|m| m.contains("written since")), "{logs:?}");
    let r = client.get(format!("{}/v1/items/401", o.url)).send().await.expect("get");
    assert_eq!(r.status(), 200, "the acknowledged write is there");
    o.stop();

    // A missing shard file: rebuilt, with a note.
    std::fs::remove_file(&files[0]).expect("remove");
    let o = Origin::start(&dir, SHARDS, &env()).await;
    assert_eq!((loads(&o, "snapshot").await, loads(&o, "rebuild").await), (0.0, 1.0));
    assert!(o.messages().iter().any(|m| m.contains("no index snapshot")));
    o.stop();

    // Another shard count cannot use these files either.
    let o = Origin::start(&dir, SHARDS + 1, &env()).await;
    assert_eq!(loads(&o, "rebuild").await, 1.0);
    o.stop();
    assert_eq!(snapshot_files(&dir).len(), SHARDS + 1, "old layouts are cleaned up");
    let _ = std::fs::remove_dir_all(&dir);
}
