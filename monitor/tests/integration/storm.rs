//! A rename storm: files renamed into and out of a directory while that
//! directory itself is renamed back and forth.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use file_event::EventType;

use crate::support::*;

/// Files moved each way.
const FILES: usize = 300;

/// Renames `from` to the same name below whichever of `dirs` holds the
/// renamed directory at that moment (`{}` in `to` stands for it), or from
/// below it to `to` when `from` holds the `{}`.
fn rename_via(root: &Path, from: &str, to: &str) {
    loop {
        for d in ["d", "e"] {
            let f = root.join(from.replace("{}", d));
            let t = root.join(to.replace("{}", d));
            if std::fs::rename(&f, &t).is_ok() {
                return;
            }
        }
    }
}

/// Every file is one `move`, or, moved at the moment its directory was
/// renamed, a `delete` and a `create`; replaying the stream gives the disk.
#[test]
fn files_moved_through_a_directory_renamed_meanwhile_replay_to_the_disk() {
    let _heavy = heavy();
    let tmp = tempdir();
    let root = tmp.path().to_path_buf();
    for d in ["src", "d", "out"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let mut start = Tree::new();
    for d in ["src", "d", "out"] {
        start.insert(d.as_bytes().to_vec(), "dir");
    }
    for i in 0..FILES {
        std::fs::write(root.join(format!("src/f{i}")), b"").unwrap();
        std::fs::write(root.join(format!("d/g{i}")), b"").unwrap();
        start.insert(format!("src/f{i}").into_bytes(), "file");
        start.insert(format!("d/g{i}").into_bytes(), "file");
    }
    let m = Monitor::start(&root, &["--debounce=0", "--metrics-addr=off"]);

    // One thread renames `d` to `e` and back, at most once per file moved
    // (the kernel's queue must not overflow), while the other moves files
    // into it and out of it.
    let done = Arc::new(AtomicBool::new(false));
    let step = Arc::new(AtomicUsize::new(0));
    let dirs = {
        let (root, done, step) = (root.clone(), done.clone(), step.clone());
        std::thread::spawn(move || {
            let (mut at, mut n) = ("d", 0usize);
            while !done.load(Ordering::Relaxed) {
                if n > step.load(Ordering::Relaxed) {
                    std::thread::yield_now();
                    continue;
                }
                let next = if at == "d" { "e" } else { "d" };
                std::fs::rename(root.join(at), root.join(next)).unwrap();
                (at, n) = (next, n + 1);
            }
            n
        })
    };
    for i in 0..FILES {
        rename_via(&root, &format!("src/f{i}"), &format!("{{}}/f{i}"));
        rename_via(&root, &format!("{{}}/g{i}"), &format!("out/g{i}"));
        step.fetch_add(1, Ordering::Relaxed);
    }
    done.store(true, Ordering::Relaxed);
    let dir_renames = dirs.join().unwrap();
    assert!(dir_renames > 0);

    // Every file's last line is out (a move to its new name, or its create
    // there), then nothing more.
    m.wait_for_within("a line for every file", Duration::from_secs(30), |evs| {
        let mut seen = std::collections::HashSet::new();
        for e in evs {
            if matches!(e.event_type, EventType::Move | EventType::Create) {
                seen.insert(e.path.rsplit('/').next().unwrap_or_default().to_owned());
            }
        }
        (0..FILES).all(|i| seen.contains(&format!("f{i}")) && seen.contains(&format!("g{i}")))
    });
    m.settle(Duration::from_millis(300));
    let (_, _, evs) = m.terminate();
    assert_seq_contiguous(&evs);
    let disk = disk_tree(&root, &[]);
    assert_trees_equal(&replay(&start, &evs), &disk);

    // Each file: its moves, and its delete and create lines.
    let mut moves: HashMap<String, usize> = HashMap::new();
    let mut others: HashMap<String, Vec<String>> = HashMap::new();
    for e in &evs {
        let name = |p: &str| p.rsplit('/').next().unwrap_or_default().to_owned();
        match e.event_type {
            EventType::Move if e.kind.as_str() == "file" => {
                *moves.entry(name(&e.path)).or_default() += 1;
            }
            EventType::Move => {}
            _ => others.entry(name(&e.path)).or_default().push(short(e)),
        }
    }
    let mut fallbacks = 0;
    let mut wrong = Vec::new();
    for i in 0..FILES {
        for (name, old) in [
            (format!("f{i}"), format!("src/f{i}")),
            (format!("g{i}"), String::new()),
        ] {
            let n = moves.get(&name).copied().unwrap_or(0);
            let rest = others.get(&name).cloned().unwrap_or_default();
            if n == 1 && rest.is_empty() {
                continue;
            }
            // The watches of a renamed directory are dropped and placed
            // again under its new name: a file moved in or out at that
            // moment is its delete and its create (found by the scan of the
            // directory's new name), and a scan that saw a file before its
            // move was read reports its create before the move.
            let creates = rest.iter().filter(|l| l.starts_with("create file")).count();
            let fallback = match n {
                0 => {
                    rest.len() == 2
                        && creates == 1
                        && rest.iter().any(|l| l.starts_with("delete file"))
                        && (old.is_empty() || rest.contains(&format!("delete file {old}")))
                }
                1 => rest.len() == 1 && creates == 1,
                _ => false,
            };
            if fallback {
                fallbacks += 1;
            } else {
                wrong.push(format!("{name}: {n} moves, {rest:?}"));
            }
        }
    }
    eprintln!(
        "{} lines, {dir_renames} directory renames, {fallbacks} files as delete + create",
        evs.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} files neither one move nor a delete and a create: {:?}",
        wrong.len(),
        2 * FILES,
        &wrong[..wrong.len().min(10)]
    );
}
