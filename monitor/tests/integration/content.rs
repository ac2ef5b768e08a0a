//! The size and checksum a line carries belong to the file the event is
//! about: never to a file that replaced it before the line was written, and
//! every name of a hard-linked file learns of a write through any of them.

use std::time::Duration;

use file_event::FileEvent;

use crate::support::*;

const EDITED: &str = "sha256:68f01b289aedcf28e96fce1f9444365e83b9bfc7e1bf32df20f1f15966835316";
const FORMATTED: &str = "sha256:12b550cfb92e13b8905618885a6c31589e24a04627f6aab5b4b93ea095eb9b28";
const FIRST: &str = "sha256:b640e840b19d378660b32fb51ae18d67dccb4a8596a29e7bd72c1b2ae5928f41";
const SECOND: &str = "sha256:480c2336b410f1ad5f8bf1b28944490255804b65350c527787e74ebdd511e3a4";
const THIRD: &str = "sha256:5eef8098ed6ec0a16249fc7c12422027fc9fd75b16130cc9382cf09102014796";
/// The file as the shell's `>` creates it, before its write: a line read
/// in that moment (a slow machine) rightly carries it.
const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn lines_for<'a>(evs: &'a [FileEvent], path: &str) -> Vec<&'a FileEvent> {
    evs.iter().filter(|e| e.path == path).collect()
}

/// A write, then within the debounce window a replacement of the file
/// (an editor's save followed by a formatter's atomic save). `stopped`: the
/// monitor is stopped meanwhile, so it reads all the events at once.
fn edit_then_atomic_save(debounce: &str, stopped: bool) {
    if skipped_on_notify() {
        return;
    }
    let d = tempdir();
    for i in 0..4 {
        std::fs::write(d.path().join(format!("f{i}")), b"orig\n").unwrap();
    }
    let m = Monitor::start(d.path(), &["--checksum=sha256", debounce]);
    for i in 0..4 {
        if stopped {
            signal(m.pid(), nix::sys::signal::Signal::SIGSTOP);
        }
        sh(
            d.path(),
            &format!("echo edited > f{i}; echo formatted > .f{i}.tmp; mv .f{i}.tmp f{i}"),
        );
        if stopped {
            signal(m.pid(), nix::sys::signal::Signal::SIGCONT);
        }
        let f = format!("f{i}");
        m.wait_for("the move onto the file", |e| {
            e.iter().any(|x| x.path == f && x.from.is_some())
        });
    }
    let evs = m.settle(Duration::from_millis(300));
    for i in 0..4 {
        let f = format!("f{i}");
        let lines = lines_for(&evs, &f);
        let update = lines
            .iter()
            .find(|e| e.event_type.as_str() == "update")
            .unwrap_or_else(|| panic!("no update of {f}: {:?}", summary(&evs)));
        assert!(
            matches!(update.checksum.as_deref(), None | Some(EDITED)),
            "the update of {f} carries another file's content: {:?} in {:?}",
            update.checksum,
            summary(&evs)
        );
        if update.checksum.is_none() {
            assert_eq!(update.size, None, "{:?}", summary(&evs));
        }
        let mv = lines.iter().find(|e| e.from.is_some()).unwrap();
        assert_eq!(mv.checksum.as_deref(), Some(FORMATTED));
    }
    assert_seq_contiguous(&evs);
}

#[test]
fn an_update_never_carries_the_content_of_the_file_that_replaced_it() {
    edit_then_atomic_save("--debounce=100", false);
}

#[test]
fn an_update_never_carries_the_content_of_the_file_that_replaced_it_without_debounce() {
    // Each event is written as soon as it is handled: what follows it in
    // the same read from the kernel must be taken into account.
    edit_then_atomic_save("--debounce=0", true);
}

#[test]
fn a_deleted_and_recreated_file_keeps_each_content_on_its_own_lines() {
    if skipped_on_notify() {
        return;
    }
    let d = tempdir();
    let m = Monitor::start(d.path(), &["--checksum=sha256"]);
    for i in 0..4 {
        sh(
            d.path(),
            &format!("echo first > f{i}; echo second > f{i}; rm f{i}; echo third > f{i}"),
        );
        let f = format!("f{i}");
        m.wait_for("the second create", |e| {
            e.iter()
                .filter(|x| x.path == f && x.event_type.as_str() == "create")
                .count()
                == 2
        });
    }
    let evs = m.settle(Duration::from_millis(300));
    for i in 0..4 {
        let f = format!("f{i}");
        let lines = lines_for(&evs, &f);
        let delete = lines
            .iter()
            .position(|e| e.event_type.as_str() == "delete")
            .unwrap_or_else(|| panic!("no delete of {f}: {:?}", summary(&evs)));
        for e in &lines[..delete] {
            assert!(
                matches!(
                    e.checksum.as_deref(),
                    None | Some(EMPTY) | Some(FIRST) | Some(SECOND)
                ),
                "{} {f} before the delete carries {:?}: {:?}",
                e.event_type.as_str(),
                e.checksum,
                summary(&evs)
            );
        }
        let last = lines.last().unwrap();
        assert_eq!(last.event_type.as_str(), "create", "{:?}", summary(&evs));
        assert_eq!(last.checksum.as_deref(), Some(THIRD));
    }
}

#[test]
fn a_write_through_one_hard_link_updates_every_name() {
    let d = tempdir();
    std::fs::write(d.path().join("a.txt"), b"original\n").unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    let m = Monitor::start(d.path(), &["--checksum=sha256"]);
    sh(d.path(), "ln a.txt b.txt; ln a.txt sub/c.txt");
    m.wait_for("the links", |e| {
        has(e, "create file b.txt") && has(e, "create file sub/c.txt")
    });
    sh(d.path(), "echo changed >> b.txt");
    let want = "sha256:162274c38eaa2aa9973308fe17329fb4090c2404c780e65f2ba880c4035b4dbf";
    let evs = m.wait_for("updates of all three names", |e| {
        ["a.txt", "b.txt", "sub/c.txt"].iter().all(|p| {
            e.iter()
                .any(|x| x.path == *p && x.event_type.as_str() == "update")
        })
    });
    for p in ["a.txt", "b.txt", "sub/c.txt"] {
        let u = evs
            .iter()
            .find(|x| x.path == p && x.event_type.as_str() == "update")
            .unwrap();
        assert_eq!(
            u.checksum.as_deref(),
            Some(want),
            "{p}: {:?}",
            summary(&evs)
        );
        assert_eq!(u.size, Some(17), "{p}");
    }
    // A name that is no longer a link of the file is left alone.
    sh(
        d.path(),
        "rm sub/c.txt; echo other > sub/c.txt; echo more >> a.txt",
    );
    let evs = m.wait_for("the second write", |e| {
        e.iter()
            .filter(|x| x.path == "a.txt" && x.event_type.as_str() == "update")
            .count()
            == 2
    });
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    let c_updates = evs
        .iter()
        .filter(|x| x.path == "sub/c.txt" && x.event_type.as_str() == "update")
        .count();
    assert_eq!(c_updates, 1, "{:?}", summary(&evs));
    assert_eq!(
        evs.iter()
            .filter(|x| x.path == "b.txt" && x.event_type.as_str() == "update")
            .count(),
        2,
        "{:?}",
        summary(&evs)
    );
}

fn updates_of(evs: &[FileEvent], p: &str) -> usize {
    evs.iter()
        .filter(|x| x.path == p && x.event_type.as_str() == "update")
        .count()
}

#[test]
fn hard_link_names_stay_known_across_moves_deletes_and_restarts() {
    let d = tempdir();
    let st = tempdir();
    let root = d.path();
    let state = format!("--state-file={}", st.path().join("index.json").display());
    sh(
        root,
        "mkdir -p d sub && echo v1 > a && ln a d/b && ln a d/c && ln a sub/e",
    );
    let m = Monitor::start(root, &["--checksum=sha256", &state]);
    // One name renamed, one deleted, the directory of another renamed.
    sh(root, "mv d/b b2; rm d/c; mv sub sub2");
    m.wait_for("the moves", |e| {
        has(e, "move file d/b -> b2") && has(e, "delete file d/c") && has(e, "move dir sub -> sub2")
    });
    sh(root, "echo v2 >> a");
    let evs = m.wait_for("updates of every remaining name", |e| {
        ["a", "b2", "sub2/e"].iter().all(|p| updates_of(e, p) == 1)
    });
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    for gone in ["d/b", "d/c", "sub/e"] {
        assert_eq!(updates_of(&evs, gone), 0, "{gone}: {:?}", summary(&evs));
    }
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));

    // After a restart from the state file, the names are still known.
    let m = Monitor::start(root, &["--checksum=sha256", &state]);
    sh(root, "echo v3 >> b2");
    let evs = m.wait_for("updates after the restart", |e| {
        ["a", "b2", "sub2/e"].iter().all(|p| updates_of(e, p) == 1)
    });
    let sums: Vec<_> = ["a", "b2", "sub2/e"]
        .iter()
        .map(|p| {
            evs.iter()
                .find(|x| x.path == *p && x.event_type.as_str() == "update")
                .and_then(|x| x.checksum.clone())
        })
        .collect();
    assert!(
        sums[0].is_some() && sums.iter().all(|s| *s == sums[0]),
        "{:?}",
        summary(&evs)
    );
}

/// The checksum each file was last reported with, replaying the stream the
/// way a consumer does (a directory's move takes its subtree along).
fn checksums(evs: &[FileEvent]) -> std::collections::BTreeMap<String, Option<String>> {
    let mut t = std::collections::BTreeMap::new();
    for e in evs {
        match e.event_type {
            file_event::EventType::Create | file_event::EventType::Update => {
                if e.kind == file_event::Kind::File {
                    t.insert(e.path.clone(), e.checksum.clone());
                }
            }
            file_event::EventType::Delete => {
                let pre = format!("{}/", e.path);
                t.retain(|k: &String, _| k != &e.path && !k.starts_with(&pre));
            }
            file_event::EventType::Move => {
                let from = e.from.clone().unwrap_or_default();
                let (pre, to_pre) = (format!("{from}/"), format!("{}/", e.path));
                t.retain(|k: &String, _| k != &e.path && !k.starts_with(&to_pre));
                let moved: Vec<String> = t
                    .keys()
                    .filter(|k| **k == from || k.starts_with(&pre))
                    .cloned()
                    .collect();
                for k in moved {
                    let v = t.remove(&k).unwrap_or_default();
                    t.insert(format!("{}{}", e.path, &k[from.len()..]), v);
                }
                if e.kind == file_event::Kind::File && e.checksum.is_some() {
                    t.insert(e.path.clone(), e.checksum.clone());
                }
            }
            file_event::EventType::Access => {}
        }
    }
    t
}

/// A directory moved in is scanned at once and its files reported one by
/// one; when it is renamed while they are being read, the rest cannot be
/// read under the name their creates carry. Each file still ends up with a
/// line carrying its checksum.
#[test]
fn files_of_a_directory_renamed_while_its_scan_is_reported_get_their_checksum() {
    let _h = heavy();
    let d = tempdir();
    let outside = tempdir();
    let root = d.path();
    let big = outside.path().join("big");
    let mut want = std::collections::BTreeMap::new();
    for p in 0..8 {
        let dir = big.join(format!("lib/p{p}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let body = format!("{p} {f}\n").repeat(8000);
            std::fs::write(dir.join(format!("f{f}.js")), &body).unwrap();
            let sum = <sha2::Sha256 as sha2::Digest>::digest(&body);
            want.insert(
                format!("y/src/p{p}/f{f}.js"),
                Some(format!("sha256:{}", hex::encode(sum))),
            );
        }
    }
    let m = Monitor::start(root, &["--checksum=sha256"]);
    std::fs::rename(&big, root.join("x")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    sh(root, "mv x y && mv y/lib y/src");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (missing, evs) = loop {
        let evs = m.settle(Duration::from_millis(500));
        let got = checksums(&evs);
        let missing: Vec<_> = want
            .iter()
            .filter(|(p, sum)| got.get(*p) != Some(*sum))
            .map(|(p, _)| (p.clone(), got.get(p).cloned()))
            .collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break (missing, evs);
        }
    };
    let unread = evs
        .iter()
        .filter(|e| e.event_type == file_event::EventType::Create && e.path.starts_with("x/"))
        .filter(|e| e.kind == file_event::Kind::File && e.checksum.is_none())
        .count();
    eprintln!("{unread} creates could not be read under their first name");
    assert!(
        missing.is_empty(),
        "{} of {} files without their checksum, e.g. {:?}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(5)]
    );
    assert_seq_contiguous(&evs);
}
