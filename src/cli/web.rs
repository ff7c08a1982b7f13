//! The web client under `telehealth up`: served from `web/dist`, built from `web/` (npm) on the
//! first start and again whenever its sources changed since the last build. The build stamps
//! `dist/.source-hash` with the hash of its sources (`web/scripts/finish.mjs`); this module
//! computes the same hash to tell a stale build.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// The client's sources in the checkout the binary was built from.
pub fn default_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// The files whose change calls for a new build (the same list as `finish.mjs`).
const TOP_FILES: [&str; 6] = [
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
    "buf.gen.yaml",
];

/// SHA-256 over the sources, each as `path \0 bytes \0`, in the order of their `/`-separated paths.
pub fn source_hash(source: &Path) -> io::Result<String> {
    let mut paths: Vec<String> = TOP_FILES.iter().map(|name| name.to_string()).collect();
    for folder in ["src", "scripts"] {
        collect(source, &source.join(folder), &mut paths)?;
    }
    paths.sort();
    let mut hash = Sha256::new();
    for path in &paths {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(fs::read(source.join(path))?);
        hash.update([0]);
    }
    Ok(hex::encode(hash.finalize()))
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(base, &path, out)?;
        } else {
            let relative = path.strip_prefix(base).expect("under base");
            let parts: Vec<_> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// True when `dist/` was built from the sources as they are now.
pub fn is_current(source: &Path) -> io::Result<bool> {
    let stamp = match fs::read_to_string(source.join("dist").join(".source-hash")) {
        Ok(stamp) => stamp,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    Ok(stamp.trim() == source_hash(source)?)
}

/// The folder to serve: `source/dist`, built first when missing or stale.
pub fn ensure_built(source: &Path) -> anyhow::Result<PathBuf> {
    if is_current(source).with_context(|| format!("reading {}", source.display()))? {
        return Ok(source.join("dist"));
    }
    println!(
        "building the web client from {} (first start, or its sources changed)…",
        source.display()
    );
    // `npm ci` when the installed packages are not those of the lock file.
    let lock = source.join("package-lock.json");
    let installed = source.join("node_modules").join(".package-lock.json");
    let fresh = match (fs::metadata(&lock), fs::metadata(&installed)) {
        (Ok(lock), Ok(installed)) => installed.modified()? >= lock.modified()?,
        _ => false,
    };
    if !fresh {
        npm(
            source,
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        )?;
    }
    npm(source, &["run", "build", "--silent"])?;
    if !is_current(source)? {
        bail!("the web client's build did not stamp dist/.source-hash");
    }
    Ok(source.join("dist"))
}

fn npm(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .context("running npm (Node.js 20 and npm are needed to build the web client)")?;
    if !status.success() {
        bail!("npm {} failed in {}", args.join(" "), dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) {
        for name in TOP_FILES {
            fs::write(dir.join(name), name).expect("temp files");
        }
        fs::create_dir_all(dir.join("src/doctor")).expect("temp files");
        fs::create_dir_all(dir.join("scripts")).expect("temp files");
        fs::write(dir.join("src/main.tsx"), "main").expect("temp files");
        fs::write(dir.join("src/doctor/agenda.tsx"), "agenda").expect("temp files");
        fs::write(dir.join("scripts/finish.mjs"), "finish").expect("temp files");
        fs::create_dir_all(dir.join("dist")).expect("temp files");
    }

    #[test]
    fn a_build_is_current_until_a_source_changes() {
        let dir = tempfile::tempdir().expect("temp files");
        sample(dir.path());
        assert!(
            !is_current(dir.path()).expect("temp files"),
            "no stamp: never built"
        );
        let hash = source_hash(dir.path()).expect("temp files");
        fs::write(dir.path().join("dist/.source-hash"), format!("{hash}\n")).expect("temp files");
        assert!(is_current(dir.path()).expect("temp files"));

        fs::write(dir.path().join("src/doctor/agenda.tsx"), "agenda v2").expect("temp files");
        assert!(
            !is_current(dir.path()).expect("temp files"),
            "a changed screen is stale"
        );
        fs::write(dir.path().join("src/doctor/agenda.tsx"), "agenda").expect("temp files");
        assert!(is_current(dir.path()).expect("temp files"));
        fs::write(dir.path().join("src/new.ts"), "").expect("temp files");
        assert!(
            !is_current(dir.path()).expect("temp files"),
            "a new file is stale"
        );
    }

    /// The checkout's own build, made by `npm run build` (web/scripts/finish.mjs): Node's hash
    /// and this one must agree, or `up` would rebuild at every start. CI builds the client first
    /// and requires it; elsewhere a checkout that was never built is skipped.
    #[test]
    fn the_checkout_s_built_client_is_current() {
        let source = default_source();
        if !source.join("dist").join(".source-hash").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI builds the web client before the tests (npm run build in web/)"
            );
            return;
        }
        assert!(
            is_current(&source).expect("temp files"),
            "web/dist is stale or its hash differs from finish.mjs's: run npm run build in web/"
        );
    }
}
