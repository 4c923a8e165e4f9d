//! Preflight of an uploaded file: which `pg_dump` format it is (custom,
//! tar, a directory dump packed as tar, or plain SQL), what an archive holds
//! (`pg_restore --list`), and a clear refusal for anything else.

use crate::lab::submissions::DumpFormat;
use crate::settings::PgServerSettings;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// What the preflight found.
#[derive(Debug)]
pub struct Preflight {
    pub format: DumpFormat,
    /// `pg_restore --list` of an archive.
    pub contents: Option<String>,
}

/// Where a directory-format dump is unpacked, next to the upload.
pub fn unpacked_dir(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".d");
    PathBuf::from(p)
}

fn head(file: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![];
    std::fs::File::open(file)?
        .take(n as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Unpacks a tar of a directory-format dump; only plain files and folders
/// with ordinary relative names are accepted (no links, no `..`).
fn unpack_directory_tar(file: &Path, out: &Path) -> Result<PathBuf, String> {
    let bad = |e: std::io::Error| format!("the tar file cannot be read: {e}");
    let mut archive = tar::Archive::new(std::fs::File::open(file).map_err(bad)?);
    std::fs::create_dir_all(out).map_err(bad)?;
    let mut toc_dir = None;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(format!(
                "the tar file holds the path {:?}, which is not a plain relative name",
                path.display().to_string()
            ));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(out.join(&path)).map_err(bad)?;
            }
            tar::EntryType::Regular => {
                let target = out.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(bad)?;
                }
                let mut f = std::fs::File::create(&target).map_err(bad)?;
                std::io::copy(&mut entry, &mut f).map_err(bad)?;
                if path.file_name().is_some_and(|n| n == "toc.dat") {
                    toc_dir = target.parent().map(Path::to_path_buf);
                }
            }
            other => {
                return Err(format!(
                    "the tar file holds {:?} of type {other:?}; a dump has only files and folders",
                    path.display().to_string()
                ))
            }
        }
    }
    toc_dir.ok_or_else(|| {
        "this tar file is neither a pg_dump tar archive (pg_dump -Ft) nor a packed directory dump (no toc.dat inside)".to_string()
    })
}

fn looks_like_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// Reads a plain SQL file through the splitter that will restore it.
fn check_plain(file: &Path, target: &str) -> Result<(), String> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| format!("cannot read the upload: {e}"))?,
    );
    super::plain::check(reader, target).map_err(|r| r.to_string())
}

/// Finds the format and checks that the file is a dump pglab can restore.
pub async fn preflight(
    server: &PgServerSettings,
    file: &Path,
    allowed: &[DumpFormat],
    target: &str,
) -> Result<Preflight, String> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("cannot read the upload: {e}"))?
        .len();
    if size == 0 {
        return Err("the file is empty".into());
    }
    let head = head(file, 64 * 1024).map_err(|e| format!("cannot read the upload: {e}"))?;
    let (format, archive) = if head.starts_with(b"PGDMP") {
        (DumpFormat::Custom, file.to_path_buf())
    } else if looks_like_tar(&head) {
        match super::tools::list(server, file).await {
            Ok(_) => (DumpFormat::Tar, file.to_path_buf()),
            Err(_) => {
                let (f, out) = (file.to_path_buf(), unpacked_dir(file));
                let dir = tokio::task::spawn_blocking(move || unpack_directory_tar(&f, &out))
                    .await
                    .map_err(|e| format!("unpacking: {e}"))??;
                (DumpFormat::Directory, dir)
            }
        }
    } else if head.starts_with(&[0x1f, 0x8b]) {
        return Err("the file is gzip-compressed: upload the .sql file itself, or a custom-format dump (pg_dump -Fc, compressed already)".into());
    } else if head.contains(&0) {
        return Err(
            "this is not a pg_dump file (binary data, and not a custom or tar archive)".into(),
        );
    } else {
        (DumpFormat::Plain, file.to_path_buf())
    };
    if !allowed.contains(&format) {
        let names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
        return Err(format!(
            "this is a {} dump; this lab accepts {} (e.g. {})",
            format.name(),
            names.join(", "),
            allowed.first().map_or("", |f| f.how())
        ));
    }
    if format == DumpFormat::Plain {
        let (f, target) = (file.to_path_buf(), target.to_string());
        tokio::task::spawn_blocking(move || check_plain(&f, &target))
            .await
            .map_err(|e| format!("scanning: {e}"))??;
        return Ok(Preflight {
            format,
            contents: None,
        });
    }
    let contents = super::tools::list(server, &archive)
        .await
        .map_err(|e| format!("not a readable pg_dump archive: {e}"))?;
    Ok(Preflight {
        format,
        contents: Some(contents),
    })
}
