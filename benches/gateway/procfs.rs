//! Processes under measurement: children started by the bench, and what `/proc` says about them
//! (CPU time, resident memory).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, anyhow, bail};

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, in clock ticks (all threads).
    pub cpu_ticks: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started, KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux unless told otherwise).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let field = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: no field {}", index + 3))
    };
    let cpu_ticks = field(11)? + field(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_ticks,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// Busy CPU time of the whole machine (`/proc/stat`), in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineSample {
    pub busy_ticks: u64,
}

/// Reads the first line of `/proc/stat`.
pub fn machine() -> anyhow::Result<MachineSample> {
    let stat = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    if values.len() < 8 {
        bail!("/proc/stat: unexpected format");
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    Ok(MachineSample {
        busy_ticks: total - idle,
    })
}

/// Waits until the machine is quiet (less than `max_busy_cores` busy over half a second) for at
/// most `patience`, so that other work (builds) does not skew a run. Returns the cores busy at
/// the last look.
pub async fn wait_until_quiet(
    ticks_per_second: f64,
    max_busy_cores: f64,
    patience: Duration,
) -> anyhow::Result<f64> {
    let began = std::time::Instant::now();
    let mut warned = false;
    loop {
        let before = machine()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = machine()?;
        let busy = (after.busy_ticks - before.busy_ticks) as f64 / ticks_per_second / 0.5;
        if busy <= max_busy_cores {
            return Ok(busy);
        }
        if began.elapsed() >= patience {
            eprintln!("  machine still busy ({busy:.2} cores); measuring anyway");
            return Ok(busy);
        }
        if !warned {
            eprintln!("  waiting for the machine to be quiet ({busy:.2} cores busy by others)...");
            warned = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Polls the RSS of a process in the background and keeps the largest value seen.
pub struct RssSampler {
    max_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Samples `pid` every `every` until [`RssSampler::finish`].
    pub fn start(pid: u32, every: Duration) -> Self {
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (max_kib, stop) = (max_kib.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(sample) = sample(pid) {
                        max_kib.fetch_max(sample.rss_kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        RssSampler {
            max_kib,
            stop,
            task,
        }
    }

    /// Stops sampling; the largest RSS seen, KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max_kib.load(Ordering::Relaxed)
    }
}

/// A child process that is killed when dropped.
pub struct ChildGuard {
    pub name: String,
    child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the child has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited: {status}", self.name),
            None => Ok(()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this executable in a serving sub-mode (`args`) and waits for the `LISTENING <addr>`
/// line it prints. The child's other output goes to our stderr, prefixed with `name`. The child
/// exits when its stdin closes, so it does not outlive the bench.
pub async fn spawn_self(
    name: &str,
    args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<(ChildGuard, String)> {
    let exe = std::env::current_exe().context("current executable")?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().with_context(|| format!("spawn {name}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let stderr = child.stderr.take().context("child stderr")?;
    let mut guard = ChildGuard {
        name: name.to_owned(),
        child,
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    {
        let name = name.to_owned();
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !announced && let Some(address) = line.strip_prefix("LISTENING ") {
                    announced = true;
                    let _ = tx.send(address.trim().to_owned());
                } else {
                    forward_log(&name, &line);
                }
            }
        });
    }
    {
        let name = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                forward_log(&name, &line);
            }
        });
    }
    let address = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await?
        .map_err(|_| anyhow!("{name} did not announce its address within 30 s"))?;
    guard.check_alive()?;
    Ok((guard, address))
}

/// Starts an external program (Envoy) with its output in `log_file`.
pub fn spawn_external(
    name: &str,
    program: &Path,
    args: &[String],
    log_file: &Path,
) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(log_file).with_context(|| log_file.display().to_string())?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawn {}", program.display()))?;
    Ok(ChildGuard {
        name: name.to_owned(),
        child,
    })
}

fn forward_log(name: &str, line: &str) {
    // Quiet: only warnings and errors of the children reach the terminal, except the refusals
    // the enforcement check provokes on purpose.
    let wanted = line.contains("WARN") || line.contains("ERROR") || line.contains("panicked");
    if wanted && !line.contains("call refused") {
        eprintln!("[{name}] {line}");
    }
}

/// In a child: exits the process when the parent closes our stdin (or dies).
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
}
