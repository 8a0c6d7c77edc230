//! Reading local files that may be hostile (settings and token files): only
//! regular files, opened without blocking, read with a size cap before
//! anything parses them; and I/O errors put in plain words.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::Path;

/// Why a file could not be read, found before any of it is parsed.
#[derive(Debug)]
pub enum FileProblem {
    /// Nothing at that path.
    Missing,
    /// A directory on the path cannot be searched, so whether the file
    /// exists cannot be known.
    DirectoryUnreadable(std::io::Error),
    /// Something other than a regular file, such as `a FIFO`.
    NotRegular(&'static str),
    /// Larger than this many bytes.
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads a regular file of at most `limit` bytes. A FIFO, device or socket
/// is refused without reading (and without blocking: it is opened
/// non-blocking and checked again once open, in case it was swapped in).
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, FileProblem> {
    let metadata = fs::metadata(path).map_err(|err| match err.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => FileProblem::Missing,
        ErrorKind::PermissionDenied => FileProblem::DirectoryUnreadable(err),
        _ => FileProblem::Io(err),
    })?;
    check_regular(&metadata)?;
    let mut file = open_without_blocking(path).map_err(FileProblem::Io)?;
    check_regular(&file.metadata().map_err(FileProblem::Io)?)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileProblem::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileProblem::TooLarge(limit));
    }
    Ok(bytes)
}

fn check_regular(metadata: &fs::Metadata) -> Result<(), FileProblem> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(FileProblem::NotRegular("a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Err(FileProblem::NotRegular("a FIFO (named pipe)"));
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Err(FileProblem::NotRegular("a device"));
        }
        if kind.is_socket() {
            return Err(FileProblem::NotRegular("a socket"));
        }
    }
    Err(FileProblem::NotRegular("not a regular file"))
}

#[cfg(unix)]
fn open_without_blocking(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> std::io::Result<fs::File> {
    fs::File::open(path)
}

/// `the file is a FIFO (named pipe), not a regular file`, or for the
/// catch-all kind, `the file is not a regular file`.
pub fn describe_kind(kind: &str) -> String {
    if kind.starts_with("not ") {
        kind.to_owned()
    } else {
        format!("{kind}, not a regular file")
    }
}

/// A size limit in words: `64 KiB`, `1 MiB`.
pub fn describe_size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// An I/O error in plain words, without the "(os error N)" suffix.
pub fn plain_io_error(err: &std::io::Error) -> String {
    let words = match err.kind() {
        ErrorKind::NotFound => "no such file or directory",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::IsADirectory => "it is a directory",
        ErrorKind::NotADirectory => "a part of the path is not a directory",
        ErrorKind::StorageFull => "no space left on device",
        ErrorKind::BrokenPipe => "the reader closed the pipe",
        ErrorKind::WouldBlock => "it would block",
        ErrorKind::ReadOnlyFilesystem => "read-only file system",
        _ => "",
    };
    if !words.is_empty() {
        return words.to_owned();
    }
    without_os_error_code(&err.to_string()).to_lowercase()
}

/// `text` without any ` (os error N)`: the number means nothing to a reader.
pub fn without_os_error_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let after = &rest[at + " (os error ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}
