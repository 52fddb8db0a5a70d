//! One siplb per SIP address. Linux admits any socket of the same user into an `SO_REUSEPORT`
//! group, so a second siplb started on the same address would silently share (and with BPF
//! steering, take) the first one's traffic. Before it builds its group, siplb claims the
//! address: it holds an exclusive lock on a file named after it (and its network namespace), and checks that nothing else
//! (sipp, another proxy) has the address bound, by binding it once without `SO_REUSEPORT`.

use socket2::{Domain, Protocol, Socket, Type};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// How long a bound address is asked again before siplb gives up on it.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The claim on a listen address, held while siplb runs (the lock goes with the process).
/// Dropped, it removes its lock file; a process killed leaves the file, unlocked, and the next
/// siplb on the address takes it over whichever user made it.
#[derive(Debug)]
pub struct AddressClaim {
    lock: File,
    pub path: PathBuf,
}

impl Drop for AddressClaim {
    /// Removed while still locked, and only while the name is still this claim's file: a
    /// siplb that opened the old file meanwhile finds, once it has the lock, that the name
    /// has gone and starts again on a new file (see [`claim`]).
    fn drop(&mut self) {
        if same_file(&self.lock, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` names the open file `f` (and not a file made in its place since).
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Opens the lock file at `path` for `flock`, which needs no write access: an existing file is
/// opened read-only, so one left by another user (root's, after a kill -9) does not stop a
/// start; a new one is made readable by everyone for the same reason.
fn open_lock(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o644)
                .open(path)?;
            // The umask may have taken bits off; the file is only ever locked, never read.
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o644));
            Ok(f)
        }
        other => other,
    }
}

/// Where the lock files go: `/run/lock` (Debian's world-writable lock folder) when there is
/// one, the temporary folder otherwise.
pub fn lock_dir() -> PathBuf {
    let run_lock = Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.into()
    } else {
        std::env::temp_dir()
    }
}

/// The lock file of `addr` in `dir`. The same address in another network namespace is
/// another address: the namespace's inode is part of the name.
pub fn lock_path(dir: &Path, addr: SocketAddr) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let ip = addr.ip().to_string().replace(':', "_");
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    dir.join(format!("siplb-udp-{ip}-{}-net{netns}.lock", addr.port()))
}

/// Claims `addr` for this process: fails with "address already in use" when another siplb
/// holds it or another program has it bound.
pub fn claim(addr: SocketAddr, dir: &Path) -> io::Result<AddressClaim> {
    let path = lock_path(dir, addr);
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let lock = loop {
        let lock = open_lock(&path).map_err(named)?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "udp:{addr}: address already in use (another siplb holds {})",
                        path.display()
                    ),
                ));
            }
            return Err(named(e));
        }
        // A siplb stopping removes its file under the lock: locked after that, this file has
        // no name any more, and a third siplb could lock a new one. Start again on the name.
        if same_file(&lock, &path) {
            break lock;
        }
    };
    // From here an error drops the claim, which removes the file it made.
    let claim = AddressClaim { lock, path };
    // The lock says no siplb runs on the address; a siplb that just died (kill -9, a crash)
    // may still have it bound for a moment, while the kernel tears its io_uring down after
    // the process is gone. So a bound address is asked again for a short while.
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        match probe.bind(&addr.into()) {
            Ok(()) => return Ok(claim),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("udp:{addr}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("siplb-claim-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_address_is_claimed_once() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let d = dir();
        let first = claim(addr, &d).unwrap();
        let second = claim(addr, &d).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        assert!(
            second.to_string().contains("address already in use"),
            "{second}"
        );
        drop(first);
        assert!(
            !lock_path(&d, addr).exists(),
            "the lock file goes with its claim"
        );
        assert!(claim(addr, &d).is_ok(), "the claim goes with its holder");
    }

    #[test]
    fn a_lock_file_left_behind_is_taken_over_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let d = dir();
        // As a kill -9 leaves it, and as no one but its maker may write it.
        let left = lock_path(&d, addr);
        std::fs::write(&left, b"").unwrap();
        std::fs::set_permissions(&left, std::fs::Permissions::from_mode(0o444)).unwrap();
        let c = claim(addr, &d).unwrap();
        assert!(c.lock.metadata().unwrap().permissions().readonly());
        drop(c);
        assert!(!left.exists());
        // A new one is made readable by everyone, whatever the umask.
        let c = claim(addr, &d).unwrap();
        let mode = std::fs::metadata(&c.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_refused_claim_leaves_no_lock_file() {
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let d = dir();
        claim(addr, &d).unwrap_err();
        assert!(!lock_path(&d, addr).exists());
    }

    #[test]
    fn an_address_another_program_has_bound_is_refused() {
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = claim(other.local_addr().unwrap(), &dir()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    }

    #[test]
    fn lock_files_are_named_after_the_address_and_the_network_namespace() {
        let p = lock_path(Path::new("/run/lock"), "[::1]:5060".parse().unwrap());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("siplb-udp-__1-5060-net"), "{name}");
        assert!(name.ends_with(".lock"), "{name}");
    }
}
