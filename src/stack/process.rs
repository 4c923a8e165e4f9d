//! Child processes of `pglab up`: finding binaries, switching users when run
//! as root, checking ports, starting and stopping.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "{binary} not found: install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingBinary {
        binary: String,
        package: &'static str,
    },
    #[error("port {port} on 127.0.0.1 (for {what}) is already in use: stop what uses it or pass {flag} with another port")]
    PortTaken {
        port: u16,
        what: &'static str,
        flag: &'static str,
    },
    #[error("the system user `{0}` does not exist: it comes with the Debian package `{1}`")]
    MissingUser(&'static str, &'static str),
    #[error("{user} cannot reach {dir}: a parent folder is not searchable by other users; choose a --data-dir under a world-searchable folder (e.g. /var/lib/pglab) or chmod o+x the parents")]
    Unreachable { user: &'static str, dir: String },
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

pub type Result<T> = std::result::Result<T, StackError>;

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StackError {
    let what = what.into();
    move |e| StackError::Io(what, e)
}

/// The unprivileged account a server runs as when pglab runs as root.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `None` when not root: then servers run as the current user.
    pub fn for_root(name: &'static str, package: &'static str) -> Result<Option<Self>> {
        if !nix::unistd::Uid::effective().is_root() {
            return Ok(None);
        }
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or(StackError::MissingUser(name, package))?;
        Ok(Some(Self {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    pub fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }

    /// Gives the directory tree to this user.
    pub fn chown_tree(&self, dir: &Path) -> Result<()> {
        let owner = (
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        );
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            nix::unistd::chown(&p, owner.0, owner.1)
                .map_err(|e| StackError::Io(format!("chown {}", p.display()), e.into()))?;
            if p.is_dir() && !p.is_symlink() {
                for entry in std::fs::read_dir(&p).map_err(io(p.display().to_string()))? {
                    stack.push(entry.map_err(io(p.display().to_string()))?.path());
                }
            }
        }
        Ok(())
    }

    /// Root can read anything; the service user needs `x` on every parent.
    pub fn check_reachable(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let abs = std::path::absolute(dir).map_err(io(dir.display().to_string()))?;
        for parent in abs.ancestors().skip(1) {
            let mode = std::fs::metadata(parent)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o755);
            if mode & 0o001 == 0 {
                return Err(StackError::Unreachable {
                    user: self.name,
                    dir: abs.display().to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Finds a binary on PATH or in the given folders.
pub fn find_binary(name: &str, extra_dirs: &[PathBuf], package: &'static str) -> Result<PathBuf> {
    crate::binaries::find(name, extra_dirs).ok_or(StackError::MissingBinary {
        binary: name.to_string(),
        package,
    })
}

/// Refuses a port another process listens on.
pub fn ensure_port_free(port: u16, what: &'static str, flag: &'static str) -> Result<()> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map(drop)
        .map_err(|_| StackError::PortTaken { port, what, flag })
}

/// Ports handed out by `free_ports`: below the kernel's ephemeral range
/// (32768 and up on Linux), where outgoing connections take their local
/// ports, so a port chosen there can be taken by some client before the
/// server binds it.
const PICKED_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// `n` consecutive loopback ports that were free a moment ago, never the
/// same twice in one process (for tests and benchmarks that start servers).
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = PICKED_PORTS.end - PICKED_PORTS.start;
    // Processes started one after another begin at different places.
    let _ = NEXT.compare_exchange(
        0,
        1 + std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        // Every call takes its own stretch of the range; a stretch that
        // would cross the end is skipped, so no two calls overlap (a modulus
        // that depended on `n` once handed the same port to two callers
        // after the counter wrapped).
        let first = NEXT.fetch_add(u32::from(n), Ordering::Relaxed) % span;
        if first + u32::from(n) > span {
            continue;
        }
        let base = PICKED_PORTS.start + first;
        let free = (0..u32::from(n)).all(|i| {
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, (base + i) as u16))).is_ok()
        });
        if free {
            return base as u16;
        }
    }
}

/// One port as `free_ports` hands them out.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A server started by pglab; stopped with `stop` (or killed on drop).
pub struct Service {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
    stop_signal: nix::sys::signal::Signal,
}

impl Service {
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        stop_signal: nix::sys::signal::Signal,
    ) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(log.display().to_string()))?;
        let err = file.try_clone().map_err(io(log.display().to_string()))?;
        cmd.stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true)
            // Our own process group, so a Ctrl-C in the terminal reaches pglab
            // only and pglab shuts the servers down in order.
            .process_group(0);
        let child = cmd.spawn().map_err(io(format!("start {name}")))?;
        Ok(Self {
            name,
            log: log.to_path_buf(),
            child,
            stop_signal,
        })
    }

    /// Fails with the end of the log if the process already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(StackError::Failed {
                what: format!("{} exited ({status})", self.name),
                detail: log_tail(&self.log),
            }),
            _ => Ok(()),
        }
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, self.stop_signal);
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(service = self.name, "did not stop in 15 s, killing it");
                let _ = self.child.kill().await;
            }
        }
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    format!("{tail}\n(full log: {})", path.display())
}

/// Runs a short command to completion; errors carry its output.
pub async fn run(what: &str, mut cmd: Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io(what.to_string()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(StackError::Failed {
            what: what.to_string(),
            detail: text,
        })
    }
}

/// Polls `probe` until it succeeds, the service dies, or `limit` passes.
pub async fn wait_ready<F, Fut>(service: &mut Service, limit: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if probe().await {
            return Ok(());
        }
        service.check_alive()?;
        if start.elapsed() > limit {
            return Err(StackError::Failed {
                what: format!(
                    "{} did not become ready in {} s",
                    service.name,
                    limit.as_secs()
                ),
                detail: log_tail(&service.log),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::free_ports;
    use std::collections::HashSet;

    /// Stretches of different lengths never share a port, also across the
    /// wrap of the range (5,000 ports of 12,000 from wherever this process
    /// starts).
    #[test]
    fn handed_out_ports_never_overlap() {
        let mut seen = HashSet::new();
        for i in 0..2500u16 {
            let n = 1 + i % 3;
            let base = free_ports(n);
            for port in base..base + n {
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
    }
}
