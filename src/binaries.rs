//! Finding the programs pglab runs (Postgres' servers and client tools,
//! slapd, Prometheus): on PATH, in given folders, then the usual places.

use std::path::PathBuf;

/// The path of `name` in `extra_dirs`, on PATH, or in /usr/sbin, /usr/bin.
pub fn find(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    extra_dirs
        .iter()
        .chain(path_dirs.iter())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")].iter())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
