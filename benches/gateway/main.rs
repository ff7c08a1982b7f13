//! The gateway benchmark: direct calls vs our gateway vs Envoy (a bench binary printing
//! figures, not a timed test). Run it with `benches/run gateway [options]`, which installs Envoy
//! and keeps the report; by hand:
//!
//! ```text
//! cargo bench --bench gateway -- gateway [--duration-secs N] [--warmup-secs N] [--concurrency 1,16,64]
//!                          [--connections N] [--payload-bytes N] [--upload-mib N] [--uploads N]
//!                          [--targets direct,ours-cache,ours-nocache,envoy-cache,envoy-nocache]
//!                          [--envoy PATH] [--envoy-concurrency N] [--gateway-log-filter F]
//!                          [--gateway-workers N] [--quiet-wait-secs N] [--attempts N]
//! ```
//!
//! `gateway` starts an echo backend and each proxy in its own process (this binary in the
//! `serve-echo` / `serve-gateway` modes, or Envoy), so that each one's CPU time and memory can be
//! read from `/proc`. See `benches/README.md`.

mod envoy;
mod gateway_bench;
mod load;
mod procfs;
mod report;
mod servers;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use crate::report::Kind;

const USAGE: &str = "usage (after `cargo bench --bench gateway --`):
  gateway [--duration-secs N (5)] [--warmup-secs N (1)]
      [--concurrency 1,16,64] [--connections N (4)] [--payload-bytes N (100)]
      [--upload-mib N (64; 0 skips)] [--uploads N (3)]
      [--targets direct,ours-cache,ours-nocache,envoy-cache,envoy-nocache]
      [--envoy PATH] [--envoy-concurrency N (2)] [--gateway-log-filter FILTER (info)]
      [--gateway-workers N (one per core)] [--quiet-wait-secs N (600; 0: no wait)]
      [--attempts N (3): runs of a case disturbed by other processes]
      [--envoy-static-roles true (diagnostic: Envoy without its Lua filter)]
  serve-echo --data-dir DIR
  serve-gateway --data-dir DIR --upstream HOST:PORT --cache-entries N
      [--log-filter FILTER] [--workers N (0: one per core)]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` adds `--bench` to the arguments of every benchmark.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    let mut flags = Flags::parse(rest)?;
    match command.as_str() {
        "gateway" => {
            let seconds = |value: Option<String>, default: f64| -> anyhow::Result<Duration> {
                let secs = value.map_or(Ok(default), |v| v.parse::<f64>())?;
                Ok(Duration::from_secs_f64(secs))
            };
            let options = gateway_bench::Options {
                duration: seconds(flags.take("duration-secs"), 5.0)?,
                warmup: seconds(flags.take("warmup-secs"), 1.0)?,
                concurrency: flags
                    .take("concurrency")
                    .unwrap_or_else(|| "1,16,64".into())
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--concurrency")?,
                connections: flags.number("connections", 4)?,
                payload_bytes: flags.number("payload-bytes", 100)?,
                upload_mib: flags.number("upload-mib", 64)?,
                uploads: flags.number("uploads", 3)?,
                kinds: match flags.take("targets") {
                    None => Kind::ALL.to_vec(),
                    Some(list) => list
                        .split(',')
                        .map(|slug| {
                            Kind::from_slug(slug.trim())
                                .with_context(|| format!("unknown target `{slug}`"))
                        })
                        .collect::<anyhow::Result<_>>()?,
                },
                envoy: flags.take("envoy").map(PathBuf::from),
                envoy_concurrency: flags.number("envoy-concurrency", 2)?,
                envoy_static_roles: flags
                    .take("envoy-static-roles")
                    .map(|v| v.parse::<bool>())
                    .transpose()
                    .context("--envoy-static-roles true|false")?
                    .unwrap_or(false),
                gateway_log_filter: flags
                    .take("gateway-log-filter")
                    .unwrap_or_else(|| "info".into()),
                quiet_wait: seconds(flags.take("quiet-wait-secs"), 600.0)?,
                attempts: flags.number("attempts", 3)?,
                gateway_workers: flags
                    .take("gateway-workers")
                    .map(|n| n.parse())
                    .transpose()
                    .context("--gateway-workers")?,
            };
            flags.finish()?;
            // On Ctrl-C or SIGTERM the run is dropped, which stops the proxies it started.
            tokio::select! {
                result = gateway_bench::run(options) => result,
                () = terminated() => bail!("interrupted"),
            }
        }
        "serve-echo" => {
            let data_dir = flags.required("data-dir")?.into();
            flags.finish()?;
            servers::serve_echo(data_dir).await
        }
        "serve-gateway" => {
            let options = servers::GatewayOptions {
                data_dir: flags.required("data-dir")?.into(),
                upstream: flags.required("upstream")?,
                cache_entries: flags.number("cache-entries", 10_000)?,
                log_filter: flags.take("log-filter").unwrap_or_else(|| "info".into()),
                workers: flags.number("workers", 0)?,
            };
            flags.finish()?;
            servers::serve_gateway(options).await
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
}

/// `--name value` pairs.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> anyhow::Result<Flags> {
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(name) = arg.strip_prefix("--") else {
                bail!("unexpected argument `{arg}`\n{USAGE}");
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (
                    name.to_owned(),
                    iter.next()
                        .with_context(|| format!("--{name} needs a value"))?
                        .clone(),
                ),
            };
            pairs.push((name, value));
        }
        Ok(Flags(pairs))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(index).1)
    }

    fn required(&mut self, name: &str) -> anyhow::Result<String> {
        self.take(name)
            .with_context(|| format!("--{name} is required"))
    }

    fn number(&mut self, name: &str, default: usize) -> anyhow::Result<usize> {
        self.take(name).map_or(Ok(default), |v| {
            v.parse().with_context(|| format!("--{name} {v}"))
        })
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some((name, _)) = self.0.first() {
            bail!("unknown option --{name}\n{USAGE}");
        }
        Ok(())
    }
}
