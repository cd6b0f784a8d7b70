//! Writes the KAITO CRDs to a directory (default `config/crd`), or checks that the files there are current.
//!
//! Usage: `crdgen [DIR]` writes; `crdgen --check [DIR]` exits 1 and names the stale files when they differ.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from("config/crd");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]   (DIR defaults to config/crd)");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    match run(&dir, check) {
        Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
        Ok(stale) => {
            eprintln!("these CRD files differ from the Rust types: {}", stale.join(", "));
            eprintln!("run `cargo run -p kaito-api --bin crdgen` and commit the result");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path, check: bool) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut stale = Vec::new();
    if !check {
        std::fs::create_dir_all(dir)?;
    }
    for generated in kaito_api::crd::all()? {
        let path = dir.join(&generated.file_name);
        let yaml = kaito_api::crd::to_yaml(&generated.crd)?;
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::write(&path, yaml)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(stale)
}
