//! Checksums of regular files. Only regular files are ever opened: the type is
//! checked with `symlink_metadata` first, the open uses `O_NOFOLLOW |
//! O_NONBLOCK` (a FIFO swapped in meanwhile neither blocks nor follows a
//! symlink), and `fstat` on the open descriptor must again say "regular file"
//! before a single byte is read. A FIFO's data is therefore never consumed.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::ChecksumAlgo;

/// Why no checksum was computed.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than --checksum-max-bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("changed while being read")]
    Changed,
    #[error("replaced by another file before it was opened")]
    Replaced,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A computed checksum and the size of the content it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    /// `"sha256:<hex>"` or `"blake3:<hex>"`.
    pub value: String,
    pub size: u64,
}

enum Hasher {
    Sha256(sha2::Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => sha2::Digest::update(h, b),
            Hasher::Blake3(h) => {
                h.update(b);
            }
        }
    }
    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(sha2::Digest::finalize(h))),
            Hasher::Blake3(h) => format!("blake3:{}", h.finalize().to_hex()),
        }
    }
}

/// Checksums `path` if it is a regular file of at most `max_bytes`.
pub fn checksum_file(
    path: &Path,
    algo: ChecksumAlgo,
    max_bytes: u64,
) -> Result<Option<Sum>, ChecksumError> {
    checksum_file_opened(path, algo, max_bytes, None).1
}

/// Like [`checksum_file`], also telling whether the file was opened (its
/// open shows up as a kernel event the monitor must not report as access).
/// With `ino`, only that inode is read: a file put in its place meanwhile
/// is [`ChecksumError::Replaced`].
pub fn checksum_file_opened(
    path: &Path,
    algo: ChecksumAlgo,
    max_bytes: u64,
    ino: Option<u64>,
) -> (bool, Result<Option<Sum>, ChecksumError>) {
    let mut opened = false;
    let r = checksum_inner(path, algo, max_bytes, ino, &mut opened);
    (opened, r)
}

fn checksum_inner(
    path: &Path,
    algo: ChecksumAlgo,
    max_bytes: u64,
    ino: Option<u64>,
    opened: &mut bool,
) -> Result<Option<Sum>, ChecksumError> {
    let mut hasher = match algo {
        ChecksumAlgo::None => return Ok(None),
        ChecksumAlgo::Sha256 => Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
        ChecksumAlgo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
    };
    let pre = std::fs::symlink_metadata(path)?;
    if !pre.file_type().is_file() {
        return Err(ChecksumError::NotRegular);
    }
    if pre.len() > max_bytes {
        return Err(ChecksumError::TooLarge(pre.len()));
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    *opened = true;
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(ChecksumError::NotRegular);
    }
    if ino.is_some_and(|i| i != std::os::unix::fs::MetadataExt::ino(&m)) {
        return Err(ChecksumError::Replaced);
    }
    if m.len() > max_bytes {
        return Err(ChecksumError::TooLarge(m.len()));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        total += n as u64;
        if total > max_bytes {
            return Err(ChecksumError::TooLarge(total));
        }
        hasher.update(&buf[..n]);
    }
    let post = f.metadata()?;
    if post.len() != total {
        // A writer is still at work; the next close-write reports the final content.
        return Err(ChecksumError::Changed);
    }
    Ok(Some(Sum {
        value: hasher.finish(),
        size: total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        std::fs::write(&p, b"test\n").expect("write");
        let s = checksum_file(&p, ChecksumAlgo::Sha256, 100)
            .expect("ok")
            .expect("some");
        assert_eq!(
            s.value,
            "sha256:f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2"
        );
        assert_eq!(s.size, 5);
        let b = checksum_file(&p, ChecksumAlgo::Blake3, 100)
            .expect("ok")
            .expect("some");
        assert_eq!(
            b.value,
            format!("blake3:{}", blake3::hash(b"test\n").to_hex())
        );
        assert!(checksum_file(&p, ChecksumAlgo::None, 100)
            .expect("ok")
            .is_none());
        assert!(matches!(
            checksum_file(&p, ChecksumAlgo::Sha256, 4),
            Err(ChecksumError::TooLarge(5))
        ));
    }

    #[test]
    fn symlinks_and_dirs_are_not_opened() {
        let d = tempfile::tempdir().expect("tempdir");
        let target = d.path().join("t");
        std::fs::write(&target, b"x").expect("write");
        let link = d.path().join("l");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(
            checksum_file(&link, ChecksumAlgo::Sha256, 100),
            Err(ChecksumError::NotRegular)
        ));
        assert!(matches!(
            checksum_file(d.path(), ChecksumAlgo::Sha256, 100),
            Err(ChecksumError::NotRegular)
        ));
        assert!(matches!(
            checksum_file(&d.path().join("gone"), ChecksumAlgo::Sha256, 100),
            Err(ChecksumError::Io(_))
        ));
    }

    #[test]
    fn only_the_expected_inode_is_read() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        std::fs::write(&p, b"old").expect("write");
        let ino = std::fs::metadata(&p).expect("stat").ino();
        let (_, ok) = checksum_file_opened(&p, ChecksumAlgo::Sha256, 100, Some(ino));
        assert!(matches!(ok, Ok(Some(_))));
        let tmp = d.path().join("t");
        std::fs::write(&tmp, b"new").expect("write");
        std::fs::rename(&tmp, &p).expect("rename");
        let (_, r) = checksum_file_opened(&p, ChecksumAlgo::Sha256, 100, Some(ino));
        assert!(matches!(r, Err(ChecksumError::Replaced)), "{r:?}");
    }
}
