//! Log output of the `perdure` binary: filter and format from the node's `[log]` config, each
//! overridden by the environment (`PERDURE_LOG`, else `RUST_LOG`, for the filter;
//! `PERDURE_LOG_FORMAT=plain|json` for the format). Logs go to stderr.

use perdure_types::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// The filter: `PERDURE_LOG`, else `RUST_LOG`, else `config.level`, else the default.
fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_env("PERDURE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|e| {
            eprintln!(
                "log.level {:?} is not a valid filter ({e}); using the default",
                config.level
            );
            EnvFilter::new(LogConfig::default().level)
        })
}

/// The format: `PERDURE_LOG_FORMAT` (`plain` or `json`), else `config.format`.
fn format(config: &LogConfig) -> LogFormat {
    match std::env::var("PERDURE_LOG_FORMAT").map(|v| v.to_ascii_lowercase()) {
        Ok(v) if v == "json" => LogFormat::Json,
        Ok(v) if v == "plain" => LogFormat::Plain,
        Ok(v) => {
            eprintln!("PERDURE_LOG_FORMAT={v:?} is neither plain nor json; ignored");
            config.format
        }
        Err(_) => config.format,
    }
}

/// Installs the global subscriber. JSON lines carry the current span and its parents' fields
/// (`entity`, `partition`, `route`, ...).
pub fn init(config: &LogConfig) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(config))
        .with_writer(std::io::stderr);
    match format(config) {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
