//! File systems mounted below the root. inotify does not cross mount
//! points: a file system mounted under the root after the watches were
//! placed hides the directory that held them, and its contents raise no
//! events. The engine compares the mount table (`/proc/self/mountinfo`)
//! every `--poll-interval` and re-watches and rescans a directory whose
//! mount changed.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::coalesce::RelPath;

/// Mounts below the root: mount id → mount point relative to the root.
pub type Mounts = BTreeMap<u64, RelPath>;

/// Where the mount table is read from.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mounts strictly below `root` (the root's own mount is not one);
/// `None` where the mount table cannot be read (not Linux, no `/proc`).
pub fn below(root: &Path) -> Option<Mounts> {
    let text = std::fs::read(MOUNTINFO).ok()?;
    Some(parse(&text, root.as_os_str().as_bytes()))
}

/// Parses `mountinfo` lines: `id parent major:minor root mount-point ...`,
/// the mount point with spaces, tabs, newlines and backslashes written as
/// octal escapes.
fn parse(text: &[u8], root: &[u8]) -> Mounts {
    let root = root.strip_suffix(b"/").unwrap_or(root);
    let mut out = Mounts::new();
    for line in text.split(|b| *b == b'\n') {
        let mut fields = line.split(|b| *b == b' ');
        let (Some(id), Some(point)) = (fields.next(), fields.nth(3)) else {
            continue;
        };
        let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let point = unescape(point);
        if let Some(rel) = point
            .strip_prefix(root)
            .and_then(|r| r.strip_prefix(b"/"))
            .filter(|r| !r.is_empty())
        {
            out.insert(id, rel.to_vec());
        }
    }
    out
}

/// Decodes `\ooo` escapes.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let esc = s.get(i + 1..i + 4).filter(|d| {
            s[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match esc {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// Mount points that changed from `old` to `new`: (mounted, unmounted),
/// each in path order. A mount stacked on an existing mount point is a
/// new mount (a new id).
pub fn changes(old: &Mounts, new: &Mounts) -> (Vec<RelPath>, Vec<RelPath>) {
    let mut mounted: Vec<RelPath> = new
        .iter()
        .filter(|(id, _)| !old.contains_key(id))
        .map(|(_, p)| p.clone())
        .collect();
    let mut unmounted: Vec<RelPath> = old
        .iter()
        .filter(|(id, _)| !new.contains_key(id))
        .map(|(_, p)| p.clone())
        .collect();
    mounted.sort();
    mounted.dedup();
    unmounted.sort();
    unmounted.dedup();
    (mounted, unmounted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /workspace rw shared:2 - ext4 /dev/sdb rw
31 30 0:27 / /workspace/cache rw shared:3 - tmpfs tmpfs rw
32 30 0:28 / /workspace/my\\040dir rw shared:4 - tmpfs tmpfs rw
33 22 0:29 / /workspace2 rw shared:5 - tmpfs tmpfs rw
34 31 0:30 /sub /workspace/cache/deep rw - tmpfs tmpfs rw
";

    #[test]
    fn keeps_mounts_strictly_below_the_root_with_escapes_decoded() {
        let m = parse(TABLE, b"/workspace");
        let points: Vec<(u64, String)> = m
            .iter()
            .map(|(id, p)| (*id, String::from_utf8_lossy(p).into_owned()))
            .collect();
        assert_eq!(
            points,
            vec![
                (31, "cache".to_owned()),
                (32, "my dir".to_owned()),
                (34, "cache/deep".to_owned())
            ]
        );
        assert_eq!(parse(TABLE, b"/workspace/").len(), 3);
        assert_eq!(
            parse(TABLE, b"/").len(),
            5,
            "every mount but the root's own"
        );
    }

    #[test]
    fn a_stacked_mount_is_a_change_at_the_same_point() {
        let old = parse(TABLE, b"/workspace");
        let mut new = old.clone();
        new.insert(40, b"cache".to_vec());
        new.remove(&32);
        assert_eq!(
            changes(&old, &new),
            (vec![b"cache".to_vec()], vec![b"my dir".to_vec()])
        );
        assert_eq!(changes(&old, &old), (vec![], vec![]));
    }

    #[test]
    fn unescapes_octal_and_keeps_other_backslashes() {
        assert_eq!(unescape(b"a\\011b\\134c\\x"), b"a\tb\\c\\x".to_vec());
    }
}
