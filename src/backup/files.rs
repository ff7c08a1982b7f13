//! Copying files with their SHA-256, and walking a folder tree: the byte-level part of backups
//! and restores (blocking I/O; callers run it on a blocking thread).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Read and written at a time: memory stays at this whatever the file's size.
const BUFFER_BYTES: usize = 256 * 1024;

/// A file's size and SHA-256 (hexadecimal).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digest256 {
    pub size: u64,
    pub sha256: String,
}

/// Copies `from` to `to` (creating its folder), flushed to disk, and returns what was copied.
pub fn copy(from: &Path, to: &Path) -> anyhow::Result<Digest256> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut source = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut target = File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; BUFFER_BYTES];
    loop {
        let read = source
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", from.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        target
            .write_all(&buffer[..read])
            .with_context(|| format!("cannot write {}", to.display()))?;
        size += read as u64;
    }
    target
        .sync_all()
        .with_context(|| format!("cannot flush {}", to.display()))?;
    Ok(Digest256 {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// The size and SHA-256 of `path`.
pub fn digest(path: &Path) -> anyhow::Result<Digest256> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; BUFFER_BYTES];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(Digest256 {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Every complete file under `root`, by its path relative to `root` with `/` separators, in
/// sorted order; nothing when `root` does not exist. A blob store's file being written (named
/// `<final name>#<n>` until it is renamed into place) is not complete and is left out.
pub fn walk(root: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    if !root.exists() {
        return Ok(files);
    }
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot list {}", folder.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            if kind.is_dir() {
                folders.push(path);
            } else if kind.is_file() && !entry.file_name().to_string_lossy().contains('#') {
                let relative = path
                    .strip_prefix(root)
                    .expect("walked paths are under the root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(relative, path);
            }
        }
    }
    Ok(files)
}

/// Flushes a folder's entries (the names of files just created or renamed in it) to disk.
pub fn sync_folder(folder: &Path) -> anyhow::Result<()> {
    File::open(folder)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {}", folder.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_byte_for_byte_and_its_digest_is_the_source_s() {
        let dir = tempfile::tempdir().expect("dir");
        let source = dir.path().join("a");
        let bytes: Vec<u8> = (0..BUFFER_BYTES * 2 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&source, &bytes).expect("write");
        let copied = copy(&source, &dir.path().join("x/y/b")).expect("copy");
        assert_eq!(
            std::fs::read(dir.path().join("x/y/b")).expect("read"),
            bytes
        );
        assert_eq!(copied, digest(&source).expect("digest"));
        assert_eq!(copied.size, bytes.len() as u64);
        assert_eq!(copied.sha256, hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn a_walk_lists_complete_files_only_with_slash_separated_names() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("wound/images")).expect("mkdir");
        std::fs::write(dir.path().join("wound/images/1"), b"x").expect("write");
        std::fs::write(dir.path().join("wound/images/2#7"), b"partial").expect("write");
        std::fs::write(dir.path().join("top"), b"y").expect("write");
        let names: Vec<_> = walk(dir.path()).expect("walk").into_keys().collect();
        assert_eq!(names, ["top", "wound/images/1"]);
        assert!(walk(&dir.path().join("absent")).expect("walk").is_empty());
    }
}
