//! `cargo xtask caches-test`: the regional cache operators' recipes
//! (`ops/`), nginx and Varnish from Debian in front of a real origin (the
//! conformance crate's `stack` example), each on a free loopback port:
//! personal bundles never shared, one origin fetch per `s-maxage` under 50
//! concurrent clients, stale while the origin is down, purge by
//! `Surrogate-Key` (Varnish), `If-None-Match` revalidation.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::{ensure_apt, npm, run};

/// Installs nginx, Varnish and its xkey module when missing, and runs `ops/test/`.
pub(crate) fn test(root: &Path) -> Result<()> {
    let xkey = format!("/usr/lib/{}-linux-gnu/varnish/vmods/libvmod_xkey.so", std::env::consts::ARCH);
    ensure_apt(&[
        ("nodejs", "/usr/bin/node"),
        ("nginx-light", "/usr/sbin/nginx"),
        ("varnish", "/usr/sbin/varnishd"),
        ("varnish-modules", xkey.as_str()),
    ])?;
    let stack = npm::stack(root)?;
    let dir = root.join("ops").join("test");
    let tests = crate::node_tests(&dir)?;
    run(Command::new("node")
        .args(["--test", "--test-timeout=300000", "--test-force-exit"])
        .args(&tests)
        .current_dir(&dir)
        .env("EDGEWISE_STACK", &stack))
}
