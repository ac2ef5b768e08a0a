//! Reading the project's Vector configurations as Vector reads them: the file text is
//! environment-interpolated first (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`
//! for a literal `$`), then parsed as TOML.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a Vector configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: environment variable {name} is not set and has no default")]
    MissingVariable { path: PathBuf, name: String },
    #[error("{path}: unterminated `${{` at byte {at}")]
    Unterminated { path: PathBuf, at: usize },
    #[error("{path}: not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// Every `*.toml` file under `dir`, recursively, sorted.
pub fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Interpolates environment variables the way Vector does before parsing a config.
/// `lookup` answers a variable's value (the tests pass a fixed map, not the process
/// environment, so results do not depend on the machine).
pub fn interpolate(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            offset += i + 2;
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| ConfigError::Unterminated {
                path: path.to_path_buf(),
                at: offset + i,
            })?;
            let expr = &body[..end];
            let (name, default) = if let Some((n, d)) = expr.split_once(":-") {
                (n, Some((d, true)))
            } else if let Some((n, d)) = expr.split_once('-') {
                (n, Some((d, false)))
            } else {
                (expr, None)
            };
            let value = match (lookup(name), default) {
                (Some(v), Some((d, true))) if v.is_empty() => d.to_owned(),
                (Some(v), _) => v,
                (None, Some((d, _))) => d.to_owned(),
                (None, None) => {
                    return Err(ConfigError::MissingVariable {
                        path: path.to_path_buf(),
                        name: name.to_owned(),
                    })
                }
            };
            out.push_str(&value);
            let consumed = i + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        } else {
            let name_len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if name_len == 0 {
                out.push('$');
            } else {
                let name = &after[..name_len];
                out.push_str(&lookup(name).ok_or_else(|| ConfigError::MissingVariable {
                    path: path.to_path_buf(),
                    name: name.to_owned(),
                })?);
            }
            offset += i + 1 + name_len;
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads, interpolates and parses one configuration file.
pub fn load(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = interpolate(path, &text, lookup)?;
    toml::from_str(&text).map_err(|source| ConfigError::Toml {
        path: path.to_path_buf(),
        source,
    })
}

/// The environment the project's configs are checked with: every variable unset
/// except `AUDIT_VRL_DIR`, which points at this repository's `vector-config/` so
/// that `file =` paths resolve to the checked-in programs (in the cluster the same
/// variable is unset and the default `/etc/vector` applies).
pub fn repo_lookup(name: &str) -> Option<String> {
    (name == "AUDIT_VRL_DIR").then(|| crate::paths::vector_config_dir().display().to_string())
}

/// A remap transform's program: loaded from a file or written inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemapProgram {
    File(PathBuf),
    Source(String),
}

/// Every `remap` transform in a config, by component id.
pub fn remap_programs(config: &toml::Table) -> Vec<(String, RemapProgram)> {
    let Some(transforms) = config.get("transforms").and_then(|t| t.as_table()) else {
        return Vec::new();
    };
    transforms
        .iter()
        .filter(|(_, t)| t.get("type").and_then(|v| v.as_str()) == Some("remap"))
        .filter_map(|(id, t)| {
            let program = if let Some(file) = t.get("file").and_then(|v| v.as_str()) {
                RemapProgram::File(PathBuf::from(file))
            } else {
                RemapProgram::Source(t.get("source")?.as_str()?.to_owned())
            };
            Some((id.clone(), program))
        })
        .collect()
}

/// The table of component `id` of `kind` (`sources`, `transforms`, `sinks`).
pub fn component<'a>(config: &'a toml::Table, kind: &str, id: &str) -> Option<&'a toml::Table> {
    config.get(kind)?.as_table()?.get(id)?.as_table()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn interp(text: &str) -> Result<String, ConfigError> {
        interpolate(Path::new("t.toml"), text, &env)
    }

    #[test]
    fn interpolates_like_vector() {
        assert_eq!(interp("a ${SET} b").unwrap_or_default(), "a value b");
        assert_eq!(interp("$SET/x").unwrap_or_default(), "value/x");
        assert_eq!(
            interp("${UNSET:-/etc/vector}/p.vrl").unwrap_or_default(),
            "/etc/vector/p.vrl"
        );
        assert_eq!(interp("${SET:-d}").unwrap_or_default(), "value");
        // `:-` also replaces an empty value, `-` only an unset one.
        assert_eq!(interp("${EMPTY:-d}").unwrap_or_default(), "d");
        assert_eq!(interp("${EMPTY-d}").unwrap_or_default(), "");
        assert_eq!(interp("${UNSET-d}").unwrap_or_default(), "d");
        assert_eq!(
            interp("cost: $$5, $ alone").unwrap_or_default(),
            "cost: $5, $ alone"
        );
        assert_eq!(interp("no variables").unwrap_or_default(), "no variables");
    }

    #[test]
    fn reports_missing_and_unterminated_variables() {
        assert!(
            matches!(interp("${UNSET}"), Err(ConfigError::MissingVariable { name, .. }) if name == "UNSET")
        );
        assert!(matches!(
            interp("$UNSET"),
            Err(ConfigError::MissingVariable { .. })
        ));
        assert!(matches!(
            interp("x ${SET"),
            Err(ConfigError::Unterminated { at: 2, .. })
        ));
    }
}
