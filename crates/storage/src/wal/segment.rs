//! File operations on segments and the log directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::format::{encode_header, segment_name, tmp_name, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

/// Makes the directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

/// Creates segment `seq`, the previous one being `prev_len` bytes long (0 if none), holding its
/// header followed by `heads` (already framed records):
/// written to `{seq}.wal.tmp`, synced, renamed to `{seq}.wal`, directory synced. Returns the
/// file, positioned at its end, and its length.
pub(crate) fn create_segment(
    dir: &Path,
    seq: u64,
    prev_len: u64,
    heads: &[u8],
) -> Result<(File, u64)> {
    let tmp = dir.join(tmp_name(seq));
    let path = dir.join(segment_name(seq));
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {
            return Err(Error::Format {
                path,
                reason: "segment already exists; refusing to overwrite it".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, "stat", e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create", e))?;
    let mut start = Vec::with_capacity(SEGMENT_HEADER_LEN + heads.len());
    start.extend_from_slice(&encode_header(seq, prev_len));
    start.extend_from_slice(heads);
    file.write_all(&start)
        .map_err(|e| Error::io(&tmp, "write", e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&tmp, "rename", e))?;
    sync_dir(dir)?;
    Ok((file, start.len() as u64))
}

/// Opens an existing segment for appending after its first `len` bytes.
pub(crate) fn open_for_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, "open for append", e))
}
