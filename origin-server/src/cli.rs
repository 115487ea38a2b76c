//! The command-line options `edgewise-origin` and `edgewise-lab` share
//! (`--config`, `--data-dir`, `--log-format`), how they load the
//! configuration, and the logging both set up.

use std::path::PathBuf;

use crate::config::{Config, ConfigError};

/// Options every subcommand of both binaries takes (flatten into a `Parser`).
#[derive(clap::Args, Debug)]
pub struct GlobalArgs {
    /// Configuration file (TOML); `EDGEWISE__SECTION__KEY` variables and flags override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl GlobalArgs {
    /// Logs to stderr in the chosen format, filtered by `RUST_LOG` (default `info`).
    pub fn init_logging(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        if self.log_format == "json" {
            b.json().init();
        } else {
            b.init();
        }
    }

    /// The layered configuration ([`Config::load`]), with `--data-dir` and the
    /// subcommand's own flags (`overrides`) as the top layer.
    pub fn load(&self, mut overrides: Vec<(&'static str, figment::value::Value)>) -> Result<Config, ConfigError> {
        if let Some(d) = &self.data_dir {
            overrides.push(("data_dir", d.display().to_string().into()));
        }
        Config::load(self.config.as_deref(), &overrides)
    }
}
