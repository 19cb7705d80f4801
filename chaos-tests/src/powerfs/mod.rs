//! powerfs: a FUSE file system that can lose power. A node's data directory is mounted over a
//! backing directory; what the node writes stays in memory until it fsyncs the file (data) or
//! the directory (entries), and [`PowerMount::pull_plug`] throws away everything not synced.
//! The durability rules are in [`disk`]; the FUSE requests in `fuse.rs`.
//!
//! Each mount is served by a thread of the process that mounted it (the chaos harness); a
//! harness that dies leaves a dead mount that [`unmount_all_lazy`] (or `umount -l`) clears.

pub mod disk;
mod fuse;

use disk::Disk;
use fuser::{BackgroundSession, Config, MountOption};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A power-loss mount could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum PowerFsError {
    /// Reading or preparing the backing directory failed.
    #[error("powerfs: {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The FUSE mount failed (no /dev/fuse, not root and no fusermount3, ...).
    #[error("powerfs: mounting {}: {source} (needs /dev/fuse and root, or fusermount3: apt-get install fuse3)", path.display())]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Mount points this process has mounted and not unmounted yet (for a Ctrl-C or a panic).
static MOUNTED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// What a power cut threw away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Files with unsynced data or size.
    pub files: u64,
    /// Bytes of unsynced pages.
    pub bytes: u64,
    /// Directories with unsynced entries.
    pub dirs: u64,
    /// Those entries (`/state: +p00001.redb -old`), of directories still linked.
    pub entries: Vec<String>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} KiB unsynced in {} files, unsynced entries of {} directories",
            self.bytes / 1024,
            self.files,
            self.dirs
        )?;
        if !self.entries.is_empty() {
            write!(f, " ({})", self.entries.join("; "))?;
        }
        Ok(())
    }
}

/// One mounted power-loss file system.
#[derive(Debug)]
pub struct PowerMount {
    mountpoint: PathBuf,
    backing: PathBuf,
    staging: PathBuf,
    disk: Arc<Mutex<Disk>>,
    session: Option<BackgroundSession>,
}

impl PowerMount {
    /// Mounts at `mountpoint` (created if absent) the durable image in `backing` (created if
    /// absent). Its staging files go to `BACKING.staging`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<Self, PowerFsError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| PowerFsError::Io { what, path, source }
        };
        std::fs::create_dir_all(mountpoint).map_err(io("create", mountpoint))?;
        let mut staging = backing.as_os_str().to_owned();
        staging.push(".staging");
        let staging = PathBuf::from(staging);
        let disk = Disk::load(backing, &staging, 2).map_err(io("open", backing))?;
        let disk = Arc::new(Mutex::new(disk));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powerfs".into()),
            MountOption::Subtype("powerfs".into()),
            MountOption::NoAtime,
        ];
        let fs = fuse::PowerFuse { disk: disk.clone() };
        let session =
            fuser::spawn_mount(fs, mountpoint, &config).map_err(|source| PowerFsError::Mount {
                path: mountpoint.to_path_buf(),
                source,
            })?;
        MOUNTED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mountpoint.to_path_buf());
        Ok(Self {
            mountpoint: mountpoint.to_path_buf(),
            backing: backing.to_path_buf(),
            staging,
            disk,
            session: Some(session),
        })
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The durable image.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// The power cut: everything not synced is gone; the mount shows the durable image from
    /// now on. Whoever writes to the mount must be dead already (kill -9 and reaped).
    pub fn pull_plug(&self) -> Result<Dropped, PowerFsError> {
        let mut disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = disk.unsynced();
        let next = Disk::load(&self.backing, &self.staging, disk.next_ino()).map_err(|source| {
            PowerFsError::Io {
                what: "reopen after the power cut",
                path: self.backing.clone(),
                source,
            }
        })?;
        *disk = next;
        Ok(dropped)
    }

    /// Unmounts (what was not synced is lost, as at a power cut).
    pub fn unmount(mut self) -> Result<(), PowerFsError> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> Result<(), PowerFsError> {
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        MOUNTED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.mountpoint);
        let r = s.umount_and_join();
        let _ = std::fs::remove_dir_all(&self.staging);
        r.map_err(|source| PowerFsError::Io {
            what: "unmount",
            path: self.mountpoint.clone(),
            source,
        })
    }
}

impl Drop for PowerMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_now() {
            tracing::warn!("{e}");
            lazy_unmount(&self.mountpoint);
        }
    }
}

fn lazy_unmount(mountpoint: &Path) {
    let ok = std::process::Command::new("umount")
        .arg("-l")
        .arg(mountpoint)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(mountpoint)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Detaches every mount this process made and has not unmounted (Ctrl-C, panic): the serving
/// threads may be gone, so no orderly unmount is tried.
pub fn unmount_all_lazy() {
    let all: Vec<PathBuf> = std::mem::take(&mut *MOUNTED.lock().unwrap_or_else(|p| p.into_inner()))
        .into_iter()
        .collect();
    for m in all {
        lazy_unmount(&m);
    }
}

/// Why FUSE mounts cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse".into());
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let fusermount = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").exists()))
        .unwrap_or(false);
    if !root && !fusermount {
        return Some("not root and no fusermount3 (apt-get install fuse3)".into());
    }
    None
}

#[cfg(test)]
mod tests;
