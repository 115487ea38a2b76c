//! `cargo xtask www-test`: the demo web app end to end (`www/test/`).
//!
//! The real origin, edge and page server (the `ci`-profile binaries the
//! workspace tests build), MovieLens-100K imported and trained into
//! `<target>/www-e2e/`, and Debian's Chromium through playwright-core, from
//! the scratch app the npm tests install the package into (so the page
//! imports the package as a user installs it). Screenshots of each mode land
//! in `<target>/www-e2e/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, run, target_dir};

/// Runs `www/test/*.test.mjs` from the scratch app `app` (which has the
/// package and playwright-core installed).
pub(crate) fn test(root: &Path, app: &Path) -> Result<()> {
    // A no-op after the workspace tests; builds the binaries when run alone.
    run(cargo().args(["test", "--workspace", "--profile", "ci", "--no-run", "--quiet"]))?;
    let target = target_dir(root);
    let bin = target.join("ci");
    for b in ["edgewise-origin", "edgewise-lab", "edgewise-edge", "edgewise-www"] {
        if !bin.join(b).is_file() {
            bail!("{} is missing after the ci build", bin.join(b).display());
        }
    }
    // Incremental: never a stale guest from an earlier build.
    let guest = crate::guest(root)?;
    let package = app.join("node_modules").join("edgewise");
    if !package.join("index.js").is_file() {
        bail!("the package is not installed in {}", app.display());
    }
    let dir = app.join("www");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(root.join("www").join("test")).context("reading www/test")? {
        let p = entry?.path();
        if !p.is_file() {
            continue;
        }
        let name = p.file_name().context("a file name")?.to_string_lossy().into_owned();
        std::fs::copy(&p, dir.join(&name)).with_context(|| format!("copying {}", p.display()))?;
        if name.ends_with(".test.mjs") {
            tests.push(PathBuf::from(name));
        }
    }
    if tests.is_empty() {
        bail!("no tests in www/test");
    }
    std::fs::copy(root.join("browser-pkg").join("test").join("chromium.mjs"), dir.join("chromium.mjs"))?;
    let out = target.join("www-e2e");
    std::fs::create_dir_all(&out)?;
    run(Command::new("node")
        .args(["--test", "--test-timeout=300000", "--test-force-exit"])
        .args(&tests)
        .current_dir(&dir)
        .env("EDGEWISE_BIN", &bin)
        .env("EDGEWISE_GUEST", &guest)
        .env("EDGEWISE_PACKAGE", &package)
        .env("EDGEWISE_WWW", root.join("www").join("static"))
        .env("EDGEWISE_E2E_DIR", &out))?;
    println!("screenshots of the page: {}/page-*.png", out.display());
    Ok(())
}
