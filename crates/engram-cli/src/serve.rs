//! `engram serve`: the model and its adapters behind an OpenAI-compatible HTTP API on loopback.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use engram_serve::{Engine, Limits, Server, Timeouts};

use crate::{DeviceArgs, ModelArgs, Result, display_name, load};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on. Loopback by default: the server has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; the address is printed either way).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// An adapter a request may pick with `"model": NAME`, as NAME=DIR or DIR (named after its folder);
    /// repeat for several.
    #[arg(long)]
    adapter: Vec<String>,
    /// The base model's name in requests and /v1/models (`base` works too); default: the model file's stem.
    #[arg(long)]
    name: Option<String>,
    /// Largest request body in bytes (413 above it).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for (400 above it).
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    max_tokens: usize,
    /// `max_tokens` of a request that gives none.
    #[arg(long, default_value_t = Limits::default().default_max_tokens)]
    default_max_tokens: usize,
    /// Completions answered or waiting at once (429 beyond; the model answers one at a time).
    #[arg(long, default_value_t = Limits::default().max_concurrent)]
    max_concurrent: usize,
    /// Connections open at once; past it no more are accepted until one closes (each may hold up to
    /// --max-body-bytes while its body arrives).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers (the connection is closed past it).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    header_timeout: Duration,
    /// Seconds a client may take to send a request's body once its headers are in (408 past it).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    body_timeout: Duration,
    /// On SIGTERM or Ctrl-C, seconds the requests in flight may take to finish before they are cancelled.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    shutdown_timeout: Duration,
    /// Print nothing per request.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// A positive number of seconds, fractions allowed (tests use short timeouts).
fn seconds(text: &str) -> std::result::Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => {
            Duration::try_from_secs_f64(s).map_err(|e| format!("{text}: {e}"))
        }
        _ => Err(format!("`{text}` is not a number of seconds above 0")),
    }
}

/// `NAME=DIR` or `DIR` (named after the folder).
fn adapter_spec(spec: &str) -> Result<(String, PathBuf)> {
    let (name, dir) = match spec.split_once('=') {
        Some((n, d)) => (n.trim().to_owned(), PathBuf::from(d)),
        None => {
            let dir = PathBuf::from(spec);
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, dir)
        }
    };
    if name.is_empty() {
        return Err(format!("--adapter {spec}: no name (use NAME=DIR)").into());
    }
    if !dir.join("adapter_config.json").is_file() {
        return Err(format!(
            "--adapter {spec}: {} is not an adapter folder (no adapter_config.json)",
            dir.display()
        )
        .into());
    }
    Ok((name, dir))
}

pub(crate) fn serve_cmd(args: ServeArgs) -> Result<()> {
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_tokens: args.max_tokens,
        default_max_tokens: args.default_max_tokens.min(args.max_tokens),
        max_concurrent: args.max_concurrent,
        max_connections: args.max_connections,
    };
    // Before the model loads: a bad option is reported at once.
    limits.check()?;
    let adapters = args
        .adapter
        .iter()
        .map(|s| adapter_spec(s))
        .collect::<Result<Vec<_>>>()?;
    let lm = load(&args.model, &args.device)?;
    let name = args.name.clone().unwrap_or_else(|| {
        let file = display_name(&lm.path);
        file.split(['.']).next().unwrap_or(&file).to_owned()
    });
    let mut engine = Engine::new(lm, name);
    for (name, dir) in &adapters {
        engine.add_adapter(name, dir)?;
        eprintln!("adapter `{name}`: {}", dir.display());
    }
    let names = engine.model_names();
    let mut server = Server::bind(&format!("{}:{}", args.host, args.port), engine, limits)?
        .with_timeouts(Timeouts {
            header: args.header_timeout,
            body: args.body_timeout,
            shutdown: args.shutdown_timeout,
        })?;
    if !args.quiet {
        server = server.with_log(Box::new(|line| eprintln!("{line}")));
    }
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| format!("{}:{}", args.host, args.port));
    // One line on stdout, for scripts (and the tests) that start the server on port 0.
    println!(
        "listening on http://{addr}/v1 (models: {})",
        names.join(", ")
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    // Returns after SIGTERM/SIGINT once the requests in flight are done (or cancelled): exit 0.
    server.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_specs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("news");
        std::fs::create_dir(&a).unwrap();
        assert!(
            adapter_spec(a.to_str().unwrap()).is_err(),
            "no adapter_config.json"
        );
        std::fs::write(a.join("adapter_config.json"), "{}").unwrap();
        assert_eq!(adapter_spec(a.to_str().unwrap()).unwrap().0, "news");
        let spec = format!("mine={}", a.display());
        assert_eq!(adapter_spec(&spec).unwrap(), ("mine".into(), a.clone()));
        assert!(adapter_spec(&format!("={}", a.display())).is_err());
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(seconds("30").unwrap(), Duration::from_secs(30));
        for bad in ["0", "-1", "nan", "inf", "soon", "1e300"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
