//! Reading the files stsguard is pointed at (certificate, key, CA, policy): regular files only,
//! capped, opened so that a FIFO cannot hang the reader. Used by the server's reloads and by the
//! commands alike.

use std::io::{self, Read};
use std::path::Path;

/// What a file is when it is not a regular file.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Reads a regular file of at most `cap` bytes. It is opened non-blocking, so that opening a
/// FIFO cannot hang, then checked with fstat: a FIFO, a device, a socket or a directory is
/// refused, as is a file over `cap`. The error does not name the path: the caller does.
pub fn read_file(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let f = opts.open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is {}, not a regular file: point the flag at a file (a mounted Secret or ConfigMap key)",
                kind_of(&meta)
            ),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is over {cap} bytes, the most a Secret or ConfigMap holds: not the file meant"
            ),
        )
    };
    if meta.len() > cap {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("tls.crt");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Were the open blocking, this would wait forever for a writer.
        let e = read_file(&fifo, 1024).unwrap_err().to_string();
        assert!(
            e.contains("FIFO") && e.contains("not a regular file"),
            "{e}"
        );
        let e = read_file(dir.path(), 1024).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        Ok(())
    }
}
