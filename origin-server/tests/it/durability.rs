//! Durability: the real `edgewise-origin` binary is SIGKILLed at random points
//! while a client writes items and events as fast as it can. After every
//! restart, every write the server acknowledged must be there.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KILLS: usize = 20;
const DIM: usize = 8;

use crate::common::{Origin, ingest_client};

async fn start(data_dir: &std::path::Path) -> Origin {
    Origin::start(data_dir, 2, &[("EDGEWISE__INDEX__DIM", DIM.to_string())]).await
}

fn item(id: u64) -> Value {
    let e: Vec<f32> = (0..DIM).map(|j| ((id * 31 + j as u64) % 17) as f32 / 17.0 - 0.5).collect();
    json!({"id": id, "embedding": e, "creator": (id % 13) as u32, "created_at": id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill() {
    let dir = std::env::temp_dir().join(format!("ew-durability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let client = ingest_client();
    let mut acked_items: Vec<u64> = Vec::new();
    let mut acked_events: Vec<String> = Vec::new();
    let mut next_id = 1u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..KILLS {
        let origin = start(&dir).await;
        // Everything acknowledged so far is there.
        for &id in &acked_items {
            let r = client.get(format!("{}/v1/items/{id}", origin.url)).send().await.expect("request");
            assert_eq!(r.status(), 200, "round {round}: acknowledged item {id} was lost");
        }
        if !acked_events.is_empty() {
            let replay: Vec<Value> = acked_events
                .iter()
                .map(|e| json!({"event_id": e, "user": 1, "item": 1, "kind": "click", "time": 1, "region": 0}))
                .collect();
            let r: Value = client
                .post(format!("{}/v1/events", origin.url))
                .json(&replay)
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            let dup = r["results"].as_array().expect("results").iter().filter(|x| x["status"] == "duplicate").count();
            assert_eq!(dup, acked_events.len(), "round {round}: an acknowledged event id was lost");
        }
        // Write until killed at a random moment.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = Duration::from_millis(30 + rng % 200);
        let start = Instant::now();
        while start.elapsed() < kill_after {
            let ids: Vec<u64> = (next_id..next_id + 20).collect();
            next_id += 20;
            let body: Vec<Value> = ids.iter().map(|&i| item(i)).collect();
            match client.put(format!("{}/v1/items", origin.url)).json(&body).send().await {
                Ok(r) if r.status() == 200 => acked_items.extend(&ids),
                other => panic!("round {round}: write failed before the kill: {other:?}"),
            }
            let evs: Vec<Value> = ids
                .iter()
                .map(|&i| json!({"event_id": format!("e{i}"), "user": i % 5, "item": i, "kind": "like", "time": i, "region": 1}))
                .collect();
            match client.post(format!("{}/v1/events", origin.url)).json(&evs).send().await {
                Ok(r) if r.status() == 200 => acked_events.extend(ids.iter().map(|i| format!("e{i}"))),
                other => panic!("round {round}: event write failed before the kill: {other:?}"),
            }
        }
        // Kill -9 while a write is in flight.
        let racing: Vec<u64> = (next_id..next_id + 20).collect();
        next_id += 20;
        let write = {
            let (c, u) = (client.clone(), origin.url.clone());
            let body: Vec<Value> = racing.iter().map(|&i| item(i)).collect();
            tokio::spawn(async move { c.put(format!("{u}/v1/items")).json(&body).send().await })
        };
        tokio::time::sleep(Duration::from_millis(rng % 3)).await;
        origin.kill();
        // If the racing write was acknowledged before the kill landed, it must survive too.
        if let Ok(Ok(r)) = write.await
            && r.status() == 200
        {
            acked_items.extend(&racing);
        }
    }
    let origin = start(&dir).await;
    for &id in &acked_items {
        let r = client.get(format!("{}/v1/items/{id}", origin.url)).send().await.expect("request");
        assert_eq!(r.status(), 200, "final check: acknowledged item {id} was lost");
    }
    origin.kill();
    println!("{KILLS} SIGKILLs: {} acknowledged items and {} events, none lost", acked_items.len(), acked_events.len());
    let _ = std::fs::remove_dir_all(&dir);
}
