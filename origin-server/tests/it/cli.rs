//! The `edgewise-origin` binary's own commands: `token` mints what the server
//! verifies, and `serve` refuses a data directory recorded with another schema.

use std::path::PathBuf;
use std::process::{Command, Output};

use edgewise_http::auth::{UserTokenConfig, UserTokens, now_s};

use crate::common::USER_SECRET;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ew-origin-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn origin(dir: &PathBuf, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgewise-origin"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the binary runs")
}

#[test]
fn token_mints_what_the_server_verifies_and_names_a_missing_secret() {
    let dir = temp("token");
    let secret = ("EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS", format!("[\"{USER_SECRET}\"]"));
    let out = origin(&dir, &["token", "--user", "7", "--ttl", "600"], std::slice::from_ref(&secret));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tokens = UserTokens::new(&UserTokenConfig { hmac_secrets: vec![USER_SECRET.into()], ..Default::default() })
        .expect("a valid token configuration");
    let claims = tokens.verify(&token, now_s()).expect("the minted token verifies");
    assert_eq!(claims.user, 7);
    assert!(claims.expires_at <= now_s() + 600 + 5, "the lifetime asked for");

    let longer = origin(&dir, &["token", "--user", "7", "--ttl", "99999"], &[secret]);
    assert!(!longer.status.success(), "a lifetime past auth.user_tokens.max_lifetime_s is refused");
    assert!(
        String::from_utf8_lossy(&longer.stderr).contains("max_lifetime_s"),
        "{}",
        String::from_utf8_lossy(&longer.stderr)
    );

    let none = origin(&dir, &["token", "--user", "7"], &[]);
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("auth.user_tokens.hmac_secrets"), "the message names the missing key: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_a_directory_recorded_with_another_schema() {
    let dir = temp("schema");
    let mut cfg = edgewise_origin::Config { data_dir: dir.clone(), ..Default::default() };
    cfg.index.dim = 64;
    cfg.data_schema().write(&dir).expect("schema written");
    let out =
        origin(&dir, &["serve", "--listen", "127.0.0.1:0", "--shards", "1"], &[("EDGEWISE__INDEX__DIM", "32".into())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema.toml records index.dim = 64"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
