//! Everything pglab writes under its data directory is pglab's own: the
//! lab's reference SQL (the answers), uploaded and replaced dumps, pruned
//! dumps, server logs with classmates' statements, secrets. On a shared lab
//! host no other local user may read any of it.
//!
//! Two parts: the process runs with umask 077, so that every file and
//! folder it (or a server it starts) makes is private however it was made;
//! and at every start the data directory is walked once to take group and
//! other bits off what an earlier version (or a hand) left readable. As
//! root, the data directory itself stays `0711`: the Postgres and slapd
//! servers run as their own users and must pass through it to their own
//! (private) folders, but nobody can list it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Makes files and folders created from now on private to pglab's user.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// The mode of the data directory itself.
fn root_mode() -> u32 {
    if nix::unistd::Uid::effective().is_root() {
        0o711
    } else {
        0o700
    }
}

/// Calls `each` with every entry under `dir` (not following links) and
/// its mode.
fn walk(
    dir: &Path,
    mut each: impl FnMut(&Path, u32) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // gone meanwhile
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        each(&path, meta.permissions().mode() & 0o7777)?;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
    }
    Ok(())
}

/// Sets the umask and creates `dir` if needed, with its mode: what must
/// hold before anything is written into it (`pglab up` before it starts
/// the servers).
pub fn prepare_data_dir(dir: &Path) -> std::io::Result<()> {
    restrict_umask();
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(root_mode()))
}

/// `prepare_data_dir`, then group and other bits taken off everything in
/// it (once per start of the server).
pub fn secure_data_dir(dir: &Path) -> std::io::Result<()> {
    prepare_data_dir(dir)?;
    walk(dir, |path, mode| {
        if path != dir && mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        Ok(())
    })
}

/// What is wrong with the modes under `dir`: entries readable, writable or
/// searchable by others (the data directory itself may be `0711`).
pub fn exposed(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let _ = walk(dir, |path, mode| {
        let allowed = if path == dir { 0o011 } else { 0 };
        if mode & 0o077 & !allowed != 0 {
            out.push(format!("{:o} {}", mode & 0o777, path.display()));
        }
        Ok(())
    });
    out.sort();
    out
}
