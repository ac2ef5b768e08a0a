//! `--ignore` globs. Paths are relative to the root and `/`-separated.
//!
//! Rules: a pattern without `/` matches a name at any depth (`node_modules` is
//! `**/node_modules`); a pattern ending in `/**` also matches the directory
//! itself; a path is ignored when it or any of its ancestors matches, so an
//! ignored directory is pruned whole (never watched, never scanned).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Applied unless `--no-default-ignores`.
pub const DEFAULT_IGNORES: &[&str] = &["**/.git", "**/node_modules", "**/target"];

#[derive(Debug, thiserror::Error)]
#[error("bad --ignore glob {glob:?}: {source}")]
pub struct IgnoreError {
    glob: String,
    source: globset::Error,
}

#[derive(Debug, Clone)]
pub struct IgnoreSet {
    set: GlobSet,
    exact: HashSet<Vec<u8>>,
    patterns: Vec<String>,
}

impl IgnoreSet {
    pub fn new(globs: &[String]) -> Result<IgnoreSet, IgnoreError> {
        let mut b = GlobSetBuilder::new();
        let mut patterns = Vec::new();
        for g in globs {
            let g = g.trim().trim_start_matches("./");
            let g = g.strip_prefix('/').unwrap_or(g);
            if g.is_empty() {
                continue;
            }
            let g = g.trim_end_matches('/');
            let mut forms = vec![if g.contains('/') {
                g.to_owned()
            } else {
                format!("**/{g}")
            }];
            if let Some(dir) = forms[0].strip_suffix("/**") {
                if !dir.is_empty() {
                    forms.push(dir.to_owned());
                }
            }
            for f in forms {
                let glob = GlobBuilder::new(&f)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|source| IgnoreError {
                        glob: g.to_owned(),
                        source,
                    })?;
                b.add(glob);
                patterns.push(f);
            }
        }
        let set = b.build().map_err(|source| IgnoreError {
            glob: globs.join(","),
            source,
        })?;
        Ok(IgnoreSet {
            set,
            exact: HashSet::new(),
            patterns,
        })
    }

    /// Ignores one exact relative path (the monitor's own output and state
    /// files), and its `.tmp` sibling.
    pub fn add_exact(&mut self, rel: &OsStr) {
        let b = rel.as_bytes().to_vec();
        let mut tmp = b.clone();
        tmp.extend_from_slice(b".tmp");
        self.exact.insert(b);
        self.exact.insert(tmp);
    }

    /// The effective patterns (for logs and docs).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True when this one path matches, without looking at its ancestors.
    pub fn matches_self(&self, rel: &[u8]) -> bool {
        if rel.is_empty() {
            return false;
        }
        if self.exact.contains(rel) {
            return true;
        }
        self.set.is_match(OsStr::from_bytes(rel))
    }

    /// True when the path or one of its ancestors is ignored.
    pub fn is_ignored(&self, rel: &[u8]) -> bool {
        if rel.is_empty() {
            return false;
        }
        for (i, b) in rel.iter().enumerate() {
            if *b == b'/' && self.matches_self(&rel[..i]) {
                return true;
            }
        }
        self.matches_self(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(globs: &[&str]) -> IgnoreSet {
        IgnoreSet::new(&globs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn defaults_prune_at_any_depth() {
        let s = set(DEFAULT_IGNORES);
        for p in [
            ".git",
            ".git/HEAD",
            "a/node_modules",
            "a/node_modules/x/y.js",
            "target/debug/x",
        ] {
            assert!(s.is_ignored(p.as_bytes()), "{p} should be ignored");
        }
        for p in [
            "src/main.rs",
            "targets",
            "my.git",
            "a/node_modules_backup/x",
        ] {
            assert!(!s.is_ignored(p.as_bytes()), "{p} should not be ignored");
        }
    }

    #[test]
    fn trailing_double_star_matches_the_directory() {
        let s = set(&["build/**", "*.swp"]);
        assert!(s.is_ignored(b"build"));
        assert!(s.is_ignored(b"build/a/b"));
        assert!(!s.is_ignored(b"sub/build"), "anchored: contains '/'");
        assert!(s.is_ignored(b"deep/dir/.x.swp"));
        assert!(!s.is_ignored(b"x.swpx"));
    }

    #[test]
    fn exact_paths_and_bad_globs() {
        let mut s = set(&[]);
        s.add_exact(OsStr::new("state/index.json"));
        assert!(s.is_ignored(b"state/index.json"));
        assert!(s.is_ignored(b"state/index.json.tmp"));
        assert!(!s.is_ignored(b"state"));
        assert!(IgnoreSet::new(&["a[".to_string()]).is_err());
    }
}
