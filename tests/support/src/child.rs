//! The suite in a child process (the calling binary re-executed with `--child`), so that the
//! server's memory is measured apart from the load generator's (benchmarks).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telehealth::suite::RunningSuite;
use telehealth_kit::{Part, Settings};

/// Child side: runs the suite on `settings`, prints `READY <gateway> <signalling>` followed by
/// `<part>=<address>` for every service, and stops cleanly when its standard input closes.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let mut suite = RunningSuite::start(settings).await?;
    suite.wait_healthy(Duration::from_secs(60)).await?;
    let services: Vec<String> = suite
        .services
        .iter()
        .map(|(part, address)| format!("{part}={address}"))
        .collect();
    println!(
        "READY {} {} {}",
        suite.gateway,
        suite.services[&Part::Signalling],
        services.join(" ")
    );
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    suite.shutdown_token().cancel();
    suite.join().await?;
    Ok(())
}

/// Parent side: the running child and the addresses it reported.
pub struct ChildSuite {
    child: Child,
    pub gateway: SocketAddr,
    /// The signalling service's internal address.
    pub signalling: SocketAddr,
    /// Every service's internal address.
    pub services: std::collections::BTreeMap<Part, SocketAddr>,
}

impl ChildSuite {
    /// Starts this binary with `--child` and `args`, and waits for its `READY` line.
    pub fn start(args: &[&std::ffi::OsStr]) -> anyhow::Result<ChildSuite> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        anyhow::ensure!(
            words.len() >= 3 && words[0] == "READY",
            "the suite did not start: {line:?}"
        );
        let mut services = std::collections::BTreeMap::new();
        for pair in &words[3..] {
            let (part, address) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("not <part>=<address>: {pair}"))?;
            services.insert(
                part.parse().map_err(|e: String| anyhow::anyhow!(e))?,
                address.parse()?,
            );
        }
        Ok(ChildSuite {
            gateway: words[1].parse()?,
            signalling: words[2].parse()?,
            services,
            child,
        })
    }

    /// The child's process id (for its memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's standard input (it stops cleanly), killing it after 30 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.wait()?;
        Ok(())
    }
}
