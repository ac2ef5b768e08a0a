//! Workspace paths as the API accepts them: spelled exactly as file events
//! spell them (`src/a.rs`, never `./src/a.rs`, `/src/a.rs`, `src//a.rs` or
//! `src/a.rs/`), so that one file has one spelling in claims and queries.

use super::error::shown;
use super::ApiError;

/// True for a path spelled one way only, as file events spell it: relative
/// to the workspace root, `/`-separated, without empty, `.` or `..`
/// segments, and without NUL (which no file name contains): the rule
/// ingest applies to every stored path ([`file_event::check_path`]).
pub fn is_canonical(p: &str) -> bool {
    file_event::check_path(p.as_bytes()).is_ok()
}

/// The spelling file events use for what `p` names (`./a//b/` → `a/b`,
/// `a/x/../b` → `a/b`); `None` when `p` names the workspace root itself, a
/// place outside it, or holds NUL.
pub fn canonical_spelling(p: &str) -> Option<String> {
    if p.contains('\0') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

/// 400 unless `p` is spelled as file events spell it; the message names
/// the spelling to use when there is one. `what` names the parameter.
pub fn check(what: &str, p: &str) -> Result<(), ApiError> {
    if p.is_empty() {
        return Err(ApiError::bad_request(format!("{what} must not be empty")));
    }
    if p.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "{what} {} contains NUL, which no file name contains",
            shown(p)
        )));
    }
    if is_canonical(p) {
        return Ok(());
    }
    let hint = match canonical_spelling(p) {
        Some(c) => format!("; write {}", shown(&c)),
        None => "; it names no file inside the workspace".to_owned(),
    };
    Err(ApiError::bad_request(format!(
        "{what} {} must be written as file events name it: relative to the workspace \
         root, `/`-separated, without empty, `.` or `..` segments{hint}",
        shown(p)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_file() {
        for ok in [
            "x.txt",
            "src/a.rs",
            "a b/c",
            "caf\u{fffd}.txt",
            ".hidden/..x",
        ] {
            assert!(is_canonical(ok), "{ok}");
            assert!(check("path", ok).is_ok());
        }
        for (bad, canonical) in [
            ("/x.txt", Some("x.txt")),
            ("./x.txt", Some("x.txt")),
            ("src2/", Some("src2")),
            ("a//b", Some("a/b")),
            ("a/x/../b", Some("a/b")),
            ("..", None),
            ("../x", None),
            (".", None),
            ("/", None),
        ] {
            assert!(!is_canonical(bad), "{bad}");
            assert_eq!(canonical_spelling(bad).as_deref(), canonical, "{bad}");
            let msg = check("path", bad).expect_err(bad).to_string();
            if let Some(c) = canonical {
                assert!(msg.contains(&format!("write {c:?}")), "{msg}");
            }
        }
        assert!(!is_canonical("b\0c"));
        assert!(check("path", "b\0c")
            .expect_err("nul")
            .to_string()
            .contains("NUL"));
        assert!(check("path", "").is_err());
    }
}
