//! A torn last line (a crash in the middle of a write) set aside before a file is written on.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// When the file at `path` does not end with a line end (a write cut short by a crash), moves
/// its last, incomplete line to `<path>.torn` and cuts it off. Whether there was one.
pub fn set_aside_torn_line(path: &Path) -> io::Result<bool> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    // Read back from the end, a chunk at a time, until a line end (records are short; files
    // may be long, and a crash may leave a long tail of zeros without one).
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pos = len;
    let keep = loop {
        let step = pos.min(chunk.len() as u64);
        pos -= step;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk[..step as usize])?;
        if let Some(i) = memchr::memrchr(b'\n', &chunk[..step as usize]) {
            break pos + i as u64 + 1;
        }
        if pos == 0 {
            break 0;
        }
    };
    if keep == len {
        return Ok(false);
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".torn");
    let mut aside = OpenOptions::new().create(true).append(true).open(&name)?;
    file.seek(SeekFrom::Start(keep))?;
    io::copy(&mut Read::by_ref(&mut file).take(len - keep), &mut aside)?;
    aside.write_all(b"\n")?;
    aside.sync_data()?;
    file.set_len(keep)?;
    file.sync_data()?;
    Ok(true)
}
