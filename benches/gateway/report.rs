//! Results and the printed report (Markdown tables).

use std::fmt::Write as _;

use crate::procfs::ProcSample;

/// What the load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    OursCache,
    OursNoCache,
    /// Our gateway (cache on) called with gRPC-Web, as browsers call it.
    OursWeb,
    EnvoyCache,
    EnvoyNoCache,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::OursCache,
        Kind::OursNoCache,
        Kind::OursWeb,
        Kind::EnvoyCache,
        Kind::EnvoyNoCache,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct (no gateway)",
            Kind::OursCache => "ours, cache on",
            Kind::OursNoCache => "ours, cache off",
            Kind::OursWeb => "ours, gRPC-Web, cache on",
            Kind::EnvoyCache => "Envoy, jwt cache on",
            Kind::EnvoyNoCache => "Envoy, jwt cache off",
        }
    }

    /// Name on the command line (`--targets`).
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::OursCache => "ours-cache",
            Kind::OursNoCache => "ours-nocache",
            Kind::OursWeb => "ours-web",
            Kind::EnvoyCache => "envoy-cache",
            Kind::EnvoyNoCache => "envoy-nocache",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == slug)
    }

    pub fn is_envoy(self) -> bool {
        matches!(self, Kind::EnvoyCache | Kind::EnvoyNoCache)
    }
}

/// CPU and memory of the proxy process over one measured run.
#[derive(Debug, Clone, Copy)]
pub struct ProxyStats {
    pub cpu_us_per_call: f64,
    /// CPU time over wall time (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Largest VmRSS sampled during the run, KiB.
    pub rss_max_kib: u64,
    /// VmHWM at the end of the run, KiB.
    pub hwm_kib: u64,
}

/// One target at one concurrency.
pub struct CaseResult {
    pub kind: Kind,
    pub in_flight: usize,
    pub calls: u64,
    pub errors: u64,
    pub calls_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub proxy: Option<ProxyStats>,
    pub echo_cpu_us_per_call: f64,
    pub client_cpu_us_per_call: f64,
    /// Cores used by other processes during the run (noise).
    pub other_cores: f64,
    pub first_error: Option<String>,
}

impl CaseResult {
    pub fn one_line(&self) -> String {
        format!(
            "{} x{}: {:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs, proxy {} µs CPU/call, {} errors",
            self.kind.label(),
            self.in_flight,
            self.calls_per_second,
            self.p50_us,
            self.p99_us,
            self.proxy
                .map_or("-".into(), |p| format!("{:.1}", p.cpu_us_per_call)),
            self.errors
        )
    }
}

/// The uploads through one target.
pub struct UploadResult {
    pub kind: Kind,
    pub bytes: usize,
    pub seconds: Vec<f64>,
    /// Proxy memory: before, after, largest RSS sampled.
    pub memory: Option<(ProcSample, ProcSample, u64)>,
}

impl UploadResult {
    /// MB/s (10^6 bytes) of each upload.
    pub fn rates(&self) -> Vec<f64> {
        self.seconds
            .iter()
            .map(|s| self.bytes as f64 / 1e6 / s)
            .collect()
    }

    pub fn median_rate(&self) -> f64 {
        let mut rates = self.rates();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Memory growth of the proxy: peak (VmHWM after) minus RSS before, KiB.
    pub fn growth_kib(&self) -> Option<u64> {
        self.memory
            .map(|(before, after, _)| after.hwm_kib.saturating_sub(before.rss_kib))
    }

    pub fn one_line(&self) -> String {
        format!(
            "upload {}: {:.0} MB/s median, growth {}",
            self.kind.label(),
            self.median_rate(),
            self.growth_kib().map_or("-".into(), mib)
        )
    }
}

pub struct Report {
    header: String,
    pub cases: Vec<CaseResult>,
    pub uploads: Vec<UploadResult>,
    load_before: String,
    load_after: String,
    upload_mib: usize,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

fn check(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

impl Report {
    /// An empty report under `header` (how the runs were made).
    pub fn new(header: String, upload_mib: usize) -> Report {
        Report {
            header,
            cases: Vec::new(),
            uploads: Vec::new(),
            load_before: loadavg(),
            load_after: String::new(),
            upload_mib,
        }
    }

    pub fn finish(&mut self) {
        self.load_after = loadavg();
    }

    fn case(&self, kind: Kind, in_flight: usize) -> Option<&CaseResult> {
        self.cases
            .iter()
            .find(|c| c.kind == kind && c.in_flight == in_flight)
    }

    fn concurrencies(&self) -> Vec<usize> {
        let mut list: Vec<usize> = self.cases.iter().map(|c| c.in_flight).collect();
        list.sort_unstable();
        list.dedup();
        list
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n## Gateway benchmark\n\n{}", self.header);
        let _ = writeln!(
            out,
            "Load average before: {}; after: {}.\n",
            self.load_before, self.load_after
        );
        let failed: Vec<String> = self
            .cases
            .iter()
            .filter(|c| c.errors > 0)
            .map(|c| format!("{} x{} ({} errors)", c.kind.label(), c.in_flight, c.errors))
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(
                out,
                "**Runs with failed calls (their figures are not valid): {}.**\n",
                failed.join(", ")
            );
        }
        self.render_cases(&mut out);
        self.render_ratios(&mut out);
        self.render_uploads(&mut out);
        self.render_targets(&mut out);
        out
    }

    fn render_cases(&self, out: &mut String) {
        let _ = writeln!(out, "### Unary calls\n");
        let _ = writeln!(
            out,
            "| target | in flight | calls | calls/s | p50 µs | p99 µs | proxy CPU µs/call | proxy cores | \
             proxy RSS max | proxy VmHWM | echo CPU µs/call | client CPU µs/call | other procs, cores | errors |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in &self.cases {
            let (cpu, cores, rss, hwm) = match c.proxy {
                Some(p) => (
                    format!("{:.1}", p.cpu_us_per_call),
                    format!("{:.2}", p.cpu_cores),
                    mib(p.rss_max_kib),
                    mib(p.hwm_kib),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {cpu} | {cores} | {rss} | {hwm} | {:.1} | {:.1} | {:.2} | {} |",
                c.kind.label(),
                c.in_flight,
                c.calls,
                c.calls_per_second,
                c.p50_us,
                c.p99_us,
                c.echo_cpu_us_per_call,
                c.client_cpu_us_per_call,
                c.other_cores,
                c.errors
            );
        }
        let _ = writeln!(out);
    }

    fn render_ratios(&self, out: &mut String) {
        let _ = writeln!(out, "### Against direct calls\n");
        let _ = writeln!(
            out,
            "| in flight | ours cache on | ours cache off | Envoy cache on | Envoy cache off | \
             added p50 ours on / off | added p50 Envoy on / off |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for n in self.concurrencies() {
            let Some(direct) = self.case(Kind::Direct, n) else {
                continue;
            };
            let share = |k: Kind| {
                self.case(k, n).map_or("-".into(), |c| {
                    pct(c.calls_per_second / direct.calls_per_second)
                })
            };
            let added = |k: Kind| {
                self.case(k, n)
                    .map_or("-".into(), |c| format!("{:.0}", c.p50_us - direct.p50_us))
            };
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {} | {} | {} / {} µs | {} / {} µs |",
                share(Kind::OursCache),
                share(Kind::OursNoCache),
                share(Kind::EnvoyCache),
                share(Kind::EnvoyNoCache),
                added(Kind::OursCache),
                added(Kind::OursNoCache),
                added(Kind::EnvoyCache),
                added(Kind::EnvoyNoCache),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "### Ours against Envoy (ratio ours / Envoy: calls/s above 1 is better, latency below 1 is better)\n"
        );
        let _ = writeln!(
            out,
            "| in flight | caches | calls/s | p50 | p99 | CPU per call | RSS max |"
        );
        let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|");
        for n in self.concurrencies() {
            for (ours, envoy, caches) in [
                (Kind::OursCache, Kind::EnvoyCache, "both on"),
                (Kind::OursNoCache, Kind::EnvoyNoCache, "both off"),
            ] {
                let (Some(o), Some(e)) = (self.case(ours, n), self.case(envoy, n)) else {
                    continue;
                };
                let (cpu, rss) = match (o.proxy, e.proxy) {
                    (Some(op), Some(ep)) => (
                        format!("{:.2}", op.cpu_us_per_call / ep.cpu_us_per_call),
                        format!("{:.2}", op.rss_max_kib as f64 / ep.rss_max_kib as f64),
                    ),
                    _ => ("-".into(), "-".into()),
                };
                let _ = writeln!(
                    out,
                    "| {n} | {caches} | {:.2} | {:.2} | {:.2} | {cpu} | {rss} |",
                    o.calls_per_second / e.calls_per_second,
                    o.p50_us / e.p50_us,
                    o.p99_us / e.p99_us,
                );
            }
        }
        let _ = writeln!(out);
    }

    fn render_uploads(&self, out: &mut String) {
        if self.uploads.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "### {} MiB client-streaming upload (UploadPhoto, 1 MiB messages)\n",
            self.upload_mib
        );
        let _ = writeln!(
            out,
            "| target | MB/s (each run) | MB/s median | proxy RSS before | VmHWM before | VmHWM after | RSS max during | RSS after | growth (VmHWM after - RSS before) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for u in &self.uploads {
            let rates = u
                .rates()
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            let memory = match u.memory {
                Some((before, after, max)) => format!(
                    "{} | {} | {} | {} | {} | {}",
                    mib(before.rss_kib),
                    mib(before.hwm_kib),
                    mib(after.hwm_kib),
                    mib(max),
                    mib(after.rss_kib),
                    u.growth_kib().map_or("-".into(), mib)
                ),
                None => "- | - | - | - | - | -".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {rates} | {:.0} | {memory} |",
                u.kind.label(),
                u.median_rate()
            );
        }
        let _ = writeln!(out);
    }

    fn render_targets(&self, out: &mut String) {
        let _ = writeln!(out, "### Targets (issue 19; they replace issue 3's)\n");
        let _ = writeln!(out, "| target | measured | |");
        let _ = writeln!(out, "|---|---|---|");
        for n in [16, 64] {
            if let (Some(d), Some(o)) = (self.case(Kind::Direct, n), self.case(Kind::OursCache, n))
            {
                let share = o.calls_per_second / d.calls_per_second;
                let _ = writeln!(
                    out,
                    "| cache on, {n} in flight: >= 45 % of direct | {} | {} |",
                    pct(share),
                    check(share >= 0.45)
                );
            }
        }
        for n in self.concurrencies() {
            if let Some(cpu) = self
                .case(Kind::OursCache, n)
                .and_then(|o| o.proxy.map(|p| p.cpu_us_per_call))
            {
                let _ = writeln!(
                    out,
                    "| cache on, {n} in flight: <= 120 µs of gateway CPU per call | {cpu:.0} µs | {} |",
                    check(cpu <= 120.0)
                );
            }
        }
        for n in self.concurrencies() {
            if let (Some(g), Some(w)) = (self.case(Kind::OursCache, n), self.case(Kind::OursWeb, n))
            {
                let share = w.calls_per_second / g.calls_per_second;
                let _ = writeln!(
                    out,
                    "| gRPC-Web, {n} in flight: >= 80 % of the gRPC calls/s through the gateway | {} | {} |",
                    pct(share),
                    check(share >= 0.80)
                );
            }
        }
        if let (Some(d), Some(o)) = (self.case(Kind::Direct, 1), self.case(Kind::OursCache, 1)) {
            let added = o.p50_us - d.p50_us;
            let _ = writeln!(
                out,
                "| cache on, 1 in flight: <= 150 µs added at p50 | {added:.0} µs | {} |",
                check(added <= 150.0)
            );
        }
        let rss = self
            .cases
            .iter()
            .filter(|c| c.kind == Kind::OursCache)
            .filter_map(|c| c.proxy.map(|p| p.rss_max_kib.max(p.hwm_kib)))
            .max();
        if let Some(rss) = rss {
            let _ = writeln!(
                out,
                "| gateway RSS under load < 32 MiB (peak VmHWM / sampled VmRSS) | {} | {} |",
                mib(rss),
                check(rss < 32 * 1024)
            );
        }
        if let Some(u) = self.uploads.iter().find(|u| u.kind == Kind::OursCache) {
            let rate = u.median_rate();
            let direct = self
                .uploads
                .iter()
                .find(|u| u.kind == Kind::Direct)
                .map(|d| d.median_rate());
            match direct {
                Some(direct) => {
                    let share = rate / direct;
                    let _ = writeln!(
                        out,
                        "| upload >= 80 % of direct | {rate:.0} MB/s, {} | {} |",
                        pct(share),
                        check(share >= 0.80)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "| upload >= 80 % of direct | {rate:.0} MB/s (no direct run) | - |"
                    );
                }
            }
            if let Some(growth) = u.growth_kib() {
                let _ = writeln!(
                    out,
                    "| upload memory growth < 32 MiB | {} | {} |",
                    mib(growth),
                    check(growth < 32 * 1024)
                );
            }
        }
        let mut ahead = 0;
        let mut lines = 0;
        for n in self.concurrencies() {
            for (ours, envoy) in [
                (Kind::OursCache, Kind::EnvoyCache),
                (Kind::OursNoCache, Kind::EnvoyNoCache),
            ] {
                if let (Some(o), Some(e)) = (self.case(ours, n), self.case(envoy, n)) {
                    lines += 3;
                    ahead += usize::from(o.calls_per_second > e.calls_per_second)
                        + usize::from(o.p50_us < e.p50_us)
                        + usize::from(o.p99_us < e.p99_us);
                }
            }
        }
        if lines > 0 {
            let _ = writeln!(
                out,
                "| ahead of Envoy on every line (calls/s, p50, p99; caches on vs on, off vs off) | {ahead} of {lines} | {} |",
                check(ahead == lines)
            );
        }
        let _ = writeln!(out);
    }
}
