//! The demo lab that `pglab up --demo` applies: written for this project,
//! embedded in the binary, copied into the data directory.

use std::path::{Path, PathBuf};

const FILES: &[(&str, &str)] = &[
    ("lab.yaml", include_str!("lab.yaml")),
    ("starter.sql", include_str!("starter.sql")),
    ("reference.sql", include_str!("reference.sql")),
    ("participants.csv", include_str!("participants.csv")),
];

/// Writes the demo files into `dir` (overwriting older copies) and returns
/// the paths of the lab file and the participant list.
pub fn write(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok((dir.join("lab.yaml"), dir.join("participants.csv")))
}
