//! The disk model behind the power-loss filesystem: what a file system holds now (the volatile
//! view every read sees) and what would survive a power cut (the durable image, kept as real
//! files in the backing directory).
//!
//! The rules, the strictest ones Linux documents (fsync(2): "Calling fsync() does not
//! necessarily ensure that the entry in the directory containing the file has also reached
//! disk. For that an explicit fsync() on a file descriptor for the directory is also needed."):
//!
//! - A file's **data and size** (write, truncate) are durable as of the file's last
//!   `fsync`/`fdatasync`. Until then written pages live in memory ([`FileData::dirty`]).
//! - A directory's **entries** (create, mkdir, unlink, rmdir, rename) are durable as of the
//!   directory's last `fsync`. A file created and fsynced in a directory never fsynced since
//!   vanishes at the power cut; a rename is undone unless the directories were fsynced; an
//!   unlinked file comes back.
//! - A power cut ([`Disk::load`] again from the same backing directory) keeps exactly the durable
//!   image: nothing written after the last sync survives, nothing partial either.
//!
//! How the image is kept: `backing/` holds the durable namespace by name. Every live file also
//! has a hard link `staging/f-INO` (its content, whatever names it has or had), so an fsync of
//! a directory can make a name durable by linking it; a directory that has no durable name yet
//! lives at `staging/d-INO`. Directory inodes are never forgotten while the disk is up (a
//! removed directory may still hold the durable path of a moved one).

use fuser::{Errno, FileType};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// An inode number (the root is [`ROOT`]).
pub type Ino = u64;

/// The root directory's inode.
pub const ROOT: Ino = 1;

/// The unit of buffered writes.
const PAGE: u64 = 4096;

/// What `getattr` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The inode.
    pub ino: Ino,
    /// File or directory.
    pub kind: FileType,
    /// Bytes (of the volatile view).
    pub size: u64,
    /// Names it has.
    pub nlink: u32,
    /// Permission bits.
    pub mode: u16,
    /// Last data change.
    pub mtime: SystemTime,
}

/// A file's content: the backing file (its durable content) and the writes since its last sync.
#[derive(Debug)]
struct FileData {
    /// The backing file, open read-write (reached by `staging/f-INO` and its durable names).
    backing: File,
    /// The backing file's length (the size as of the last sync).
    synced_len: u64,
    /// Bytes of the backing file that still show through (a truncation since the sync hides
    /// what lies past it): `base_len <= synced_len` and `base_len <= len`.
    base_len: u64,
    /// The size now.
    len: u64,
    /// Pages written since the last sync (bytes past `len` are zero).
    dirty: BTreeMap<u64, Box<[u8]>>,
}

/// A directory: its entries now and as of its last fsync.
#[derive(Debug, Default)]
struct DirData {
    entries: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, (Ino, FileType)>,
    /// Where the durable image has it: `(parent, name)`, `None` while it lives in staging.
    durable_at: Option<(Ino, OsString)>,
}

#[derive(Debug)]
enum Body {
    File(FileData),
    Dir(DirData),
}

#[derive(Debug)]
struct Inode {
    body: Body,
    /// Current names.
    links: u32,
    /// Open handles.
    open: u32,
    mode: u16,
    mtime: SystemTime,
}

impl Inode {
    fn kind(&self) -> FileType {
        match self.body {
            Body::File(_) => FileType::RegularFile,
            Body::Dir(_) => FileType::Directory,
        }
    }
}

/// The file system's state; see the module doc.
#[derive(Debug)]
pub struct Disk {
    backing: PathBuf,
    staging: PathBuf,
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
}

fn io_err(e: io::Error) -> Errno {
    Errno::from(e)
}

fn to_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.code())
}

impl Disk {
    /// The disk as the durable image in `backing` has it (at first, and after each power cut), with
    /// new inode numbers from `first_ino` on (so a kernel that still remembers inodes of the
    /// previous incarnation cannot confuse them). `staging` is emptied.
    pub fn load(backing: &Path, staging: &Path, first_ino: Ino) -> io::Result<Disk> {
        fs::create_dir_all(backing)?;
        if staging.exists() {
            fs::remove_dir_all(staging)?;
        }
        fs::create_dir_all(staging)?;
        let mut disk = Disk {
            backing: backing.to_path_buf(),
            staging: staging.to_path_buf(),
            inodes: HashMap::new(),
            next_ino: first_ino.max(ROOT + 1),
        };
        disk.inodes.insert(ROOT, Self::dir_inode(None, 0o755));
        let mut by_backing: HashMap<(u64, u64), Ino> = HashMap::new();
        disk.scan(ROOT, backing.to_path_buf(), &mut by_backing)?;
        Ok(disk)
    }

    /// What a power cut now would throw away.
    pub fn unsynced(&self) -> super::Dropped {
        let mut d = super::Dropped::default();
        for (&ino, i) in &self.inodes {
            match &i.body {
                Body::File(f) => {
                    if !f.dirty.is_empty() || f.len != f.synced_len || f.base_len != f.synced_len {
                        d.files += 1;
                        d.bytes += f.dirty.len() as u64 * PAGE;
                    }
                }
                Body::Dir(dir) => {
                    let added = dir
                        .entries
                        .iter()
                        .filter(|(n, i)| dir.durable.get(*n).map(|x| x.0) != Some(**i))
                        .map(|(n, _)| format!("+{}", n.to_string_lossy()));
                    let removed = dir
                        .durable
                        .iter()
                        .filter(|(n, (i, _))| dir.entries.get(*n) != Some(i))
                        .map(|(n, _)| format!("-{}", n.to_string_lossy()));
                    let changes: Vec<String> = added.chain(removed).collect();
                    if !changes.is_empty() {
                        d.dirs += 1;
                        if i.links > 0 {
                            d.entries.push(format!(
                                "{}: {}",
                                self.describe(ino),
                                changes.join(" ")
                            ));
                        }
                    }
                }
            }
        }
        d.entries.sort();
        d
    }

    /// Where directory `ino` is in the durable image, for messages.
    fn describe(&self, ino: Ino) -> String {
        match self.dir_path(ino) {
            Ok(p) => match p.strip_prefix(&self.backing) {
                Ok(rel) => format!("/{}", rel.display()),
                Err(_) => format!("(new directory {ino})"),
            },
            Err(_) => format!("(directory {ino})"),
        }
    }

    /// The first inode number that the next incarnation may use.
    pub fn next_ino(&self) -> Ino {
        self.next_ino
    }

    fn dir_inode(durable_at: Option<(Ino, OsString)>, mode: u16) -> Inode {
        Inode {
            body: Body::Dir(DirData {
                durable_at,
                ..Default::default()
            }),
            links: 1,
            open: 0,
            mode,
            mtime: SystemTime::now(),
        }
    }

    /// Reads the durable image of directory `dir` (at `path`) into inodes.
    fn scan(
        &mut self,
        dir: Ino,
        path: PathBuf,
        by_backing: &mut HashMap<(u64, u64), Ino>,
    ) -> io::Result<()> {
        let mut entries = Vec::new();
        for e in fs::read_dir(&path)? {
            let e = e?;
            entries.push((e.file_name(), e.path(), e.metadata()?));
        }
        for (name, p, meta) in entries {
            let ino = if meta.is_dir() {
                let ino = self.alloc();
                self.inodes.insert(
                    ino,
                    Self::dir_inode(Some((dir, name.clone())), (meta.mode() & 0o7777) as u16),
                );
                self.scan(ino, p, by_backing)?;
                ino
            } else if meta.is_file() {
                if let Some(&ino) = by_backing.get(&(meta.dev(), meta.ino())) {
                    self.inode_mut(ino).map_err(to_io)?.links += 1;
                    ino
                } else {
                    let ino = self.alloc();
                    let backing = OpenOptions::new().read(true).write(true).open(&p)?;
                    fs::hard_link(&p, self.file_staging(ino))?;
                    self.inodes.insert(
                        ino,
                        Inode {
                            body: Body::File(FileData {
                                backing,
                                synced_len: meta.len(),
                                base_len: meta.len(),
                                len: meta.len(),
                                dirty: BTreeMap::new(),
                            }),
                            links: 1,
                            open: 0,
                            mode: (meta.mode() & 0o7777) as u16,
                            mtime: meta.modified().unwrap_or_else(|_| SystemTime::now()),
                        },
                    );
                    by_backing.insert((meta.dev(), meta.ino()), ino);
                    ino
                }
            } else {
                continue; // only files and directories are modelled
            };
            let kind = self.inodes[&ino].kind();
            let d = self.dir_mut(dir).map_err(to_io)?;
            d.entries.insert(name.clone(), ino);
            d.durable.insert(name, (ino, kind));
        }
        Ok(())
    }

    fn alloc(&mut self) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn file_staging(&self, ino: Ino) -> PathBuf {
        self.staging.join(format!("f-{ino}"))
    }

    fn dir_staging(&self, ino: Ino) -> PathBuf {
        self.staging.join(format!("d-{ino}"))
    }

    /// Where the durable image keeps directory `ino`.
    fn dir_path(&self, ino: Ino) -> Result<PathBuf, Errno> {
        if ino == ROOT {
            return Ok(self.backing.clone());
        }
        match &self.dir(ino)?.durable_at {
            Some((parent, name)) => Ok(self.dir_path(*parent)?.join(name)),
            None => Ok(self.dir_staging(ino)),
        }
    }

    fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&DirData, Errno> {
        match &self.inode(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirData, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file(&self, ino: Ino) -> Result<&FileData, Errno> {
        match &self.inode(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        let i = self.inode(ino)?;
        let (size, nlink) = match &i.body {
            Body::File(f) => (f.len, i.links),
            Body::Dir(d) => (PAGE, 2 + d.entries.len() as u32),
        };
        Ok(Attr {
            ino,
            kind: i.kind(),
            size,
            nlink,
            mode: i.mode,
            mtime: i.mtime,
        })
    }

    /// The entry `name` of directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        self.getattr(ino)
    }

    /// `(inode, kind, name)` of every entry of `dir`, in name order.
    pub fn readdir(&self, dir: Ino) -> Result<Vec<(Ino, FileType, OsString)>, Errno> {
        let d = self.dir(dir)?;
        Ok(d.entries
            .iter()
            .filter_map(|(n, i)| self.inodes.get(i).map(|x| (*i, x.kind(), n.clone())))
            .collect())
    }

    /// Creates an empty file `name` in `parent` (volatile until `parent` is fsynced).
    pub fn create(&mut self, parent: Ino, name: &OsStr, mode: u16) -> Result<Attr, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.alloc();
        let path = self.file_staging(ino);
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        self.inodes.insert(
            ino,
            Inode {
                body: Body::File(FileData {
                    backing,
                    synced_len: 0,
                    base_len: 0,
                    len: 0,
                    dirty: BTreeMap::new(),
                }),
                links: 1,
                open: 0,
                mode,
                mtime: SystemTime::now(),
            },
        );
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.getattr(ino)
    }

    /// Creates directory `name` in `parent` (volatile until `parent` is fsynced).
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, mode: u16) -> Result<Attr, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.alloc();
        fs::create_dir(self.dir_staging(ino)).map_err(io_err)?;
        self.inodes.insert(ino, Self::dir_inode(None, mode));
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.getattr(ino)
    }

    /// Removes file `name` from `parent`.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        self.file(ino)?;
        self.dir_mut(parent)?.entries.remove(name);
        self.drop_link(ino);
        Ok(())
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.inode_mut(ino)?.links = 0; // kept: it may still hold a durable path
        Ok(())
    }

    /// One name of `ino` less; a file with no name and no handle is forgotten.
    fn drop_link(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.links = i.links.saturating_sub(1);
            self.forget_if_unused(ino);
        }
    }

    fn forget_if_unused(&mut self, ino: Ino) {
        let unused = self
            .inodes
            .get(&ino)
            .is_some_and(|i| matches!(i.body, Body::File(_)) && i.links == 0 && i.open == 0);
        if unused {
            self.inodes.remove(&ino);
            let _ = fs::remove_file(self.file_staging(ino));
        }
    }

    /// Renames `parent/name` to `newparent/newname`, replacing a file (or an empty directory)
    /// there unless `noreplace`.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        self.dir(newparent)?;
        if parent == newparent && name == newname {
            return Ok(());
        }
        let moving_dir = matches!(self.inode(ino)?.body, Body::Dir(_));
        if moving_dir && self.is_ancestor(ino, newparent) {
            return Err(Errno::EINVAL);
        }
        if let Some(&old) = self.dir(newparent)?.entries.get(newname) {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            match (&self.inode(old)?.body, moving_dir) {
                (Body::Dir(d), true) if d.entries.is_empty() => {
                    self.inode_mut(old)?.links = 0;
                }
                (Body::Dir(_), true) => return Err(Errno::ENOTEMPTY),
                (Body::Dir(_), false) => return Err(Errno::EISDIR),
                (Body::File(_), true) => return Err(Errno::ENOTDIR),
                (Body::File(_), false) => {
                    self.dir_mut(newparent)?.entries.remove(newname);
                    self.drop_link(old);
                }
            }
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(newparent)?
            .entries
            .insert(newname.to_owned(), ino);
        Ok(())
    }

    /// Whether directory `a` is `b` or contains it (now).
    fn is_ancestor(&self, a: Ino, b: Ino) -> bool {
        let mut stack = vec![a];
        while let Some(d) = stack.pop() {
            if d == b {
                return true;
            }
            if let Ok(dir) = self.dir(d) {
                stack.extend(dir.entries.values().copied());
            }
        }
        false
    }

    /// A handle opened on `ino`.
    pub fn open(&mut self, ino: Ino) -> Result<(), Errno> {
        self.inode_mut(ino)?.open += 1;
        Ok(())
    }

    /// A handle on `ino` closed (closing syncs nothing).
    pub fn release(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.open = i.open.saturating_sub(1);
        }
        self.forget_if_unused(ino);
    }

    /// Sets the permission bits.
    pub fn set_mode(&mut self, ino: Ino, mode: u16) -> Result<(), Errno> {
        self.inode_mut(ino)?.mode = mode & 0o7777;
        Ok(())
    }

    /// Up to `size` bytes of `ino` from `offset`, as of now (synced or not).
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let f = self.file(ino)?;
        let end = f.len.min(offset.saturating_add(u64::from(size)));
        let mut out = vec![0u8; end.saturating_sub(offset) as usize];
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE * PAGE;
            let upto = end.min(page + PAGE);
            let dst = &mut out[(pos - offset) as usize..(upto - offset) as usize];
            if let Some(p) = f.dirty.get(&page) {
                dst.copy_from_slice(&p[(pos - page) as usize..(upto - page) as usize]);
            } else {
                f.read_base(pos, dst).map_err(io_err)?;
            }
            pos = upto;
        }
        Ok(out)
    }

    /// Writes `data` at `offset` (volatile until the file is synced); returns the bytes written.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let i = self.inode_mut(ino)?;
        i.mtime = SystemTime::now();
        let Body::File(f) = &mut i.body else {
            return Err(Errno::EISDIR);
        };
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE * PAGE;
            let upto = end.min(page + PAGE);
            if !f.dirty.contains_key(&page) {
                let mut buf = vec![0u8; PAGE as usize];
                let have = f.len.min(page + PAGE).saturating_sub(page) as usize;
                f.read_base(page, &mut buf[..have]).map_err(io_err)?;
                f.dirty.insert(page, buf.into_boxed_slice());
            }
            let p = f.dirty.get_mut(&page).expect("inserted above");
            p[(pos - page) as usize..(upto - page) as usize]
                .copy_from_slice(&data[(pos - offset) as usize..(upto - offset) as usize]);
            pos = upto;
        }
        f.len = f.len.max(end);
        Ok(data.len() as u32)
    }

    /// Sets the size of `ino` (volatile until the file is synced).
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Errno> {
        let i = self.inode_mut(ino)?;
        i.mtime = SystemTime::now();
        let Body::File(f) = &mut i.body else {
            return Err(Errno::EISDIR);
        };
        if size < f.len {
            f.dirty.retain(|page, _| *page < size);
            let page = size / PAGE * PAGE;
            if let Some(p) = f.dirty.get_mut(&page) {
                p[(size - page) as usize..].fill(0);
            }
            f.base_len = f.base_len.min(size);
        }
        f.len = size;
        Ok(())
    }

    /// fsync of a file (its data and size become durable) or of a directory (its entries
    /// become durable).
    pub fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(f) => f.sync().map_err(io_err),
            Body::Dir(_) => self.sync_dir(ino),
        }
    }

    /// Makes the durable image of directory `dir` its entries now.
    fn sync_dir(&mut self, dir: Ino) -> Result<(), Errno> {
        let path = self.dir_path(dir)?;
        let d = self.dir(dir)?;
        let gone: Vec<(OsString, Ino, FileType)> = d
            .durable
            .iter()
            .filter(|(n, (i, _))| d.entries.get(*n) != Some(i))
            .map(|(n, (i, k))| (n.clone(), *i, *k))
            .collect();
        let new: Vec<(OsString, Ino)> = d
            .entries
            .iter()
            .filter(|(n, i)| d.durable.get(*n).map(|x| x.0) != Some(**i))
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        for (name, ino, kind) in gone {
            let at = path.join(&name);
            if kind == FileType::Directory {
                // moved to staging, not deleted: it may hold the durable path of a moved one
                fs::rename(&at, self.dir_staging(ino)).map_err(io_err)?;
                if let Ok(d) = self.dir_mut(ino) {
                    d.durable_at = None;
                }
            } else {
                fs::remove_file(&at).map_err(io_err)?;
            }
            self.dir_mut(dir)?.durable.remove(&name);
        }
        for (name, ino) in new {
            let at = path.join(&name);
            let kind = self.inode(ino)?.kind();
            if kind == FileType::Directory {
                let from = self.dir_path(ino)?;
                if let Some((p, n)) = self.dir(ino)?.durable_at.clone() {
                    // durable elsewhere too (a move whose source was not synced): it moves
                    self.dir_mut(p)?.durable.remove(&n);
                }
                fs::rename(from, &at).map_err(io_err)?;
                self.dir_mut(ino)?.durable_at = Some((dir, name.clone()));
            } else {
                fs::hard_link(self.file_staging(ino), &at).map_err(io_err)?;
            }
            self.dir_mut(dir)?.durable.insert(name, (ino, kind));
        }
        File::open(&path).and_then(|d| d.sync_all()).map_err(io_err)
    }
}

impl FileData {
    /// Fills `dst` with the backing content from `pos` (zero past what still shows through).
    fn read_base(&self, pos: u64, dst: &mut [u8]) -> io::Result<()> {
        let n = (self.base_len.saturating_sub(pos) as usize).min(dst.len());
        self.backing.read_exact_at(&mut dst[..n], pos)?;
        dst[n..].fill(0);
        Ok(())
    }

    /// Writes the dirty pages and the size through to the backing file and syncs it.
    fn sync(&mut self) -> io::Result<()> {
        if self.dirty.is_empty() && self.base_len == self.synced_len && self.len == self.synced_len
        {
            return Ok(());
        }
        self.backing.set_len(self.base_len)?;
        for (page, p) in &self.dirty {
            let n = self.len.saturating_sub(*page).min(PAGE) as usize;
            self.backing.write_all_at(&p[..n], *page)?;
        }
        self.backing.set_len(self.len)?;
        self.backing.sync_all()?;
        self.dirty.clear();
        self.synced_len = self.len;
        self.base_len = self.len;
        Ok(())
    }
}
