//! Compiles the contract with `protox` (pure Rust: no system `protoc` needed), writes the encoded
//! descriptor set for the gateway's policy and reflection, and generates the tonic code.

use std::{env, error::Error, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let mut files: Vec<PathBuf> = fs::read_dir("telehealth/v1")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "proto"));
    files.sort();

    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    // Encoded by protox itself: re-encoding a prost_types::FileDescriptorSet would drop the
    // custom `(telehealth.v1.access)` options, and with them the whole access policy.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("telehealth_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;

    // Each file, not only the folder: a changed file must rebuild every unit of this crate
    // (the folder's own time changes only when files are added or removed).
    println!("cargo:rerun-if-changed=telehealth/v1");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}
