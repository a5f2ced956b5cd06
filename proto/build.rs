fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("sigsweep_descriptor.bin"))
        .compile_protos(&["sigsweep/v1/sigsweep.proto"], &["."])?;
    println!("cargo:rerun-if-changed=sigsweep/v1/sigsweep.proto");
    Ok(())
}
