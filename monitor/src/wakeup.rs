//! A wake-up the engine thread can wait on with `poll(2)` beside its event
//! source: a non-blocking pipe whose read end is readable once fired, until
//! cleared. Used for shutdown requests and by the `notify` backend to say
//! that events were handed over.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

#[derive(Debug)]
pub struct Wakeup {
    read: OwnedFd,
    write: OwnedFd,
}

impl Wakeup {
    pub fn new() -> io::Result<Wakeup> {
        let (read, write) = nix::unistd::pipe()?;
        for fd in [&read, &write] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        }
        Ok(Wakeup { read, write })
    }

    /// Makes the descriptor readable (a full pipe is already readable).
    pub fn fire(&self) -> io::Result<()> {
        match nix::unistd::write(&self.write, &[1]) {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the descriptor unreadable again, until the next [`Wakeup::fire`].
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(self.read.as_raw_fd(), &mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }

    /// The descriptor to wait on.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags};

    fn readable(w: &Wakeup) -> bool {
        let mut fds = [PollFd::new(w.fd(), PollFlags::POLLIN)];
        poll(&mut fds, 0u8).expect("poll") == 1
    }

    #[test]
    fn readable_from_fire_until_clear() {
        let w = Wakeup::new().expect("pipe");
        assert!(!readable(&w));
        for _ in 0..100_000 {
            // Far more than a pipe holds: a full pipe is not an error.
            w.fire().expect("fire");
        }
        assert!(readable(&w));
        w.clear();
        assert!(!readable(&w));
        w.fire().expect("fire");
        assert!(readable(&w));
    }
}
