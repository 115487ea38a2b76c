//! The demo page server on a real socket: its documents, the sign-in route's
//! tokens (verified as the origin and the edge verify them) and its refusals,
//! the files it serves and the headers they carry.

use std::path::PathBuf;
use std::sync::Arc;

use edgewise_http::auth::{UserTokenConfig, UserTokens, now_s};
use edgewise_lab::movielens::{self, OnError};
use edgewise_www::{Demo, DemoSettings, MAX_SIGN_IN_BYTES, WwwError, app};

const SECRET: &str = "www-test-secret-of-at-least-32-bytes";
const EDGE: &str = "http://127.0.0.1:9";

/// A small MovieLens in RecBole's format, and the page and package folders.
fn fixture(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ew-www-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["ml", "static", "pkg"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
    }
    let files = [
        (
            "ml/ml-100k.item",
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
             1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\tunkonwn\tAction Adventure Thriller\n",
        ),
        (
            "ml/ml-100k.user",
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n\
             1\t24\tM\ttechnician\t85711\n7\t57\tM\tadministrator\t91344\n",
        ),
        (
            "ml/ml-100k.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t5\t881250949\n1\t1\t3\t891717742\n7\t1\t4\t891717742\n",
        ),
        ("static/index.html", "<!doctype html><title>Edgewise</title><script type=\"importmap\">{}</script>"),
        ("pkg/index.js", "export const x = 1;\n"),
        ("pkg/edgewise_core_bg.wasm", "\0asm\x01\0\0\0"),
    ];
    for (f, text) in files {
        std::fs::write(dir.join(f), text).expect("write");
    }
    dir
}

fn settings(users: Vec<u64>) -> DemoSettings {
    DemoSettings { edge: EDGE.into(), users, k: 20, candidates: 1000, secret: SECRET.as_bytes().to_vec() }
}

async fn serve(dir: &std::path::Path) -> String {
    let data = movielens::load(&dir.join("ml"), OnError::Stop).expect("the fixture loads");
    let demo = Arc::new(Demo::new(&data, settings(vec![7, 1])).expect("a demo"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app(demo, &dir.join("static"), &dir.join("pkg"), addr.port()).expect("the page is readable");
    let metrics = edgewise_http::metrics::HttpMetrics::new().expect("metrics");
    tokio::spawn(edgewise_http::serve::serve(listener, router, Default::default(), metrics, std::future::pending()));
    format!("http://{addr}")
}

#[tokio::test]
async fn the_demo_serves_its_documents_files_and_tokens_and_refuses_the_rest() {
    let dir = fixture("serve");
    let base = serve(&dir).await;
    let http = reqwest::Client::new();

    let config: serde_json::Value =
        http.get(format!("{base}/demo/config.json")).send().await.expect("config").json().await.expect("json");
    assert_eq!(config["edge"], "http://127.0.0.1:9/");
    let users = config["users"].as_array().expect("users");
    assert_eq!(
        users.iter().map(|u| u["id"].as_u64()).collect::<Vec<_>>(),
        vec![Some(7), Some(1)],
        "in the order given"
    );
    assert_eq!((users[1]["region"].as_u64(), users[1]["ratings"].as_u64()), (Some(8), Some(2)), "{users:?}");
    assert_eq!(config["regions"].as_array().map(Vec::len), Some(11));

    let cat: serde_json::Value =
        http.get(format!("{base}/demo/catalogue.json")).send().await.expect("catalogue").json().await.expect("json");
    assert_eq!(cat["items"]["1"]["title"], "Toy Story");
    assert_eq!(cat["items"]["1"]["year"], 1995);
    assert_eq!(cat["items"]["1"]["genres"], serde_json::json!(["Animation", "Children's", "Comedy"]));
    assert!(cat["items"]["2"]["year"].is_null(), "an unknown year is null");

    // A token for a known user, which the origin's and the edge's verifier accepts for that user only.
    let res = http
        .post(format!("{base}/demo/sign-in"))
        .header("content-type", "application/json")
        .body(r#"{"user": 7}"#)
        .send()
        .await
        .expect("sign-in");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: serde_json::Value = res.json().await.expect("json");
    let tokens = UserTokens::new(&UserTokenConfig { hmac_secrets: vec![SECRET.into()], ..Default::default() })
        .expect("verifier");
    let claims = tokens.verify(body["token"].as_str().expect("token"), now_s()).expect("the token verifies");
    assert_eq!(claims.user, 7);
    assert_eq!(body["expiresInS"], 900);

    // Refusals, each with a JSON error naming the problem.
    let big = format!(r#"{{"user": 7, "pad": "{}"}}"#, "x".repeat(MAX_SIGN_IN_BYTES));
    for (ctype, body, status, says) in [
        ("application/json", r#"{"user": 8}"#.to_string(), 404, "not a MovieLens-100K user"),
        ("application/json", r#"{"user": -1}"#.to_string(), 400, "must be"),
        ("application/json", r#"{"user": 7, "admin": true}"#.to_string(), 400, "unknown field"),
        ("text/plain", r#"{"user": 7}"#.to_string(), 415, "application/json"),
        ("application/json", big, 413, ""),
    ] {
        let res = http
            .post(format!("{base}/demo/sign-in"))
            .header("content-type", ctype)
            .body(body.clone())
            .send()
            .await
            .expect("sign-in");
        assert_eq!(res.status(), status, "{ctype} {body:.60}");
        let text = res.text().await.expect("text");
        assert!(text.contains(says), "{status}: {text}");
    }
    assert_eq!(http.get(format!("{base}/demo/sign-in")).send().await.expect("get").status(), 405);

    // The page and the package, with the policy that keeps every asset local.
    let page = http.get(format!("{base}/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_string();
    assert!(csp.contains("connect-src 'self' http://127.0.0.1:9;"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.text().await.expect("text").contains("<title>Edgewise</title>"));
    let wasm = http.get(format!("{base}/pkg/edgewise/edgewise_core_bg.wasm")).send().await.expect("wasm");
    assert_eq!(wasm.headers()["content-type"], "application/wasm", "wasm streams compile only with this type");
    let js = http.get(format!("{base}/pkg/edgewise/index.js")).send().await.expect("js");
    assert!(js.headers()["content-type"].to_str().expect("ascii").contains("javascript"));
    assert!(csp.contains("script-src 'self' 'sha256-"), "the import map's hash, no 'unsafe-inline': {csp}");
    // Raw request lines: an HTTP client would normalise the dot segments away before sending.
    for path in [
        "/pkg/edgewise/../../ml/ml-100k.user",
        "/pkg/edgewise/..%2f..%2fml/ml-100k.user",
        "/../ml/ml-100k.user",
        "/..%2fml/ml-100k.user",
        "/missing.js",
    ] {
        let (status, body) =
            raw(&base, &format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", host(&base))).await;
        assert!(matches!(status, 400 | 404), "{path} must not escape the served folders: {status}");
        assert!(!body.contains("technician"), "{path} leaked the user file");
    }
    // Another name for this address (DNS rebinding), and another origin, cannot sign in.
    let (status, _) = raw(&base, &format!(
        "POST /demo/sign-in HTTP/1.1\r\nHost: evil.example:{}\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{{\"user\": 7}}",
        host(&base).rsplit(':').next().unwrap_or_default()
    )).await;
    assert_eq!(status, 421, "a rebound host name is refused");
    for (name, value) in [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")] {
        let res = http
            .post(format!("{base}/demo/sign-in"))
            .header("content-type", "application/json")
            .header(name, value)
            .body(r#"{"user": 7}"#)
            .send()
            .await
            .expect("sign-in");
        assert_eq!(res.status(), 403, "{name}: {value}");
    }
    let same = http
        .post(format!("{base}/demo/sign-in"))
        .header("content-type", "application/json")
        .header("origin", format!("http://{}", host(&base)))
        .header("sec-fetch-site", "same-origin")
        .body(r#"{"user": 7}"#)
        .send()
        .await
        .expect("sign-in");
    assert_eq!(same.status(), 200, "the page itself signs in");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_refused_by_name() {
    let dir = fixture("settings");
    let data = movielens::load(&dir.join("ml"), OnError::Stop).expect("the fixture loads");
    assert!(matches!(Demo::new(&data, settings(vec![1, 99])), Err(WwwError::UnknownUser(99))));
    let short = DemoSettings { secret: b"short".to_vec(), ..settings(vec![1]) };
    assert!(matches!(Demo::new(&data, short), Err(WwwError::ShortSecret(5))));
    let bad_edge = DemoSettings { edge: "edge:8081".into(), ..settings(vec![1]) };
    let err = Demo::new(&data, bad_edge).expect_err("refused");
    assert!(err.to_string().contains("\"edge:8081\" is not an http(s) URL"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `host:port` of a base URL.
fn host(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Sends `request` as written over a fresh connection; the status and body.
async fn raw(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host(base)).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}
