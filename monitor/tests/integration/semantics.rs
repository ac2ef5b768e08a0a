//! Items 1, 2 and 4: the design's scenario, complete writes, new directories.

use std::time::Duration;

use crate::support::*;

#[test]
fn create_append_delete_back_to_back_is_create_update_delete() {
    let d = tempdir();
    let m = Monitor::start(d.path(), &[]);
    sh(d.path(), "echo test > f; echo update >> f; rm f");
    let evs = m.wait_for("delete of f", |e| has(e, "delete file f"));
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    assert_eq!(
        types_for(&evs, "f"),
        vec!["create", "update", "delete"],
        "{:?}",
        summary(&evs)
    );
    assert!(evs.iter().all(|e| e.path == "f"), "{:?}", summary(&evs));
    assert_seq_contiguous(&evs);
}

#[test]
fn a_write_is_reported_once_complete_with_size_and_checksum() {
    let d = tempdir();
    std::fs::write(d.path().join("w"), b"").unwrap();
    let m = Monitor::start(d.path(), &["--checksum=sha256", "--debounce=50"]);
    // One writer, two writes 300 ms apart, then close.
    sh(
        d.path(),
        "exec 3>>w; printf hello >&3; sleep 0.3; printf ' world' >&3; exec 3>&-",
    );
    let evs = m.wait_for("update of w", |e| has(e, "update file w"));
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    let updates: Vec<_> = evs.iter().filter(|e| e.path == "w").collect();
    assert_eq!(
        updates.len(),
        1,
        "one update after the close: {:?}",
        summary(&evs)
    );
    assert_eq!(updates[0].size, Some(11));
    // sha256("hello world")
    assert_eq!(
        updates[0].checksum.as_deref(),
        Some("sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
    );

    sh(d.path(), "printf abc > new");
    let evs = m.wait_for("create of new", |e| has(e, "create file new"));
    let c = evs.iter().find(|e| e.path == "new").unwrap();
    assert_eq!(c.size, Some(3));
    // sha256("abc")
    assert_eq!(
        c.checksum.as_deref(),
        Some("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
}

#[test]
fn files_created_in_a_new_directory_before_its_watch_are_reported() {
    let d = tempdir();
    let m = Monitor::start(d.path(), &[]);
    for i in 0..5 {
        sh(d.path(), &format!("mkdir -p a{i}/b/c && touch a{i}/b/c/x"));
    }
    let evs = m.wait_for("all nested files", |e| {
        (0..5).all(|i| has(e, &format!("create file a{i}/b/c/x")))
    });
    for i in 0..5 {
        for p in [format!("a{i}"), format!("a{i}/b"), format!("a{i}/b/c")] {
            assert_eq!(
                types_for(&evs, &p),
                vec!["create"],
                "{p}: {:?}",
                summary(&evs)
            );
        }
        assert_eq!(types_for(&evs, &format!("a{i}/b/c/x")), vec!["create"]);
    }
    // The new directories are watched: a later change inside is seen.
    sh(d.path(), "echo later > a0/b/c/later");
    m.wait_for("create in new dir", |e| has(e, "create file a0/b/c/later"));
    assert_seq_contiguous(&m.events());
}

#[test]
fn a_file_still_open_when_its_directory_is_scanned_is_updated_only_if_its_content_changes() {
    still_open_when_scanned(&[]);
    still_open_when_scanned(&["--checksum=sha256"]);
}

fn still_open_when_scanned(flags: &[&str]) {
    use std::io::Write;
    let d = tempdir();
    let outside = tempfile::Builder::new()
        .prefix("fmon-out-")
        .tempdir_in(d.path().parent().unwrap())
        .unwrap();
    let m = Monitor::start(d.path(), flags);
    // Two files, open for writing, in directories moved in: the monitor
    // finds them by scanning, while their writers still hold them.
    let moved_in_open = |name: &str| {
        std::fs::create_dir(outside.path().join(name)).unwrap();
        let mut f = std::fs::File::create(outside.path().join(name).join("x")).unwrap();
        f.write_all(b"abc").unwrap();
        std::fs::rename(outside.path().join(name), d.path().join(name)).unwrap();
        f
    };
    let same = moved_in_open("same");
    let mut grown = moved_in_open("grown");
    m.wait_for("both files found", |e| {
        has(e, "create file same/x") && has(e, "create file grown/x")
    });
    // `same` only gets new times (what `touch` does after its open), `grown`
    // gets more bytes; then both writers close.
    same.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000))
        .unwrap();
    drop(same);
    grown.write_all(b"def").unwrap();
    drop(grown);
    m.wait_for("update of grown/x", |e| has(e, "update file grown/x"));
    let evs = m.settle(Duration::from_millis(300));
    assert_eq!(
        types_for(&evs, "same/x"),
        vec!["create"],
        "{flags:?}: {:?}",
        summary(&evs)
    );
    assert_eq!(
        types_for(&evs, "grown/x"),
        vec!["create", "update"],
        "{:?}",
        summary(&evs)
    );
    let update = evs
        .iter()
        .find(|e| e.path == "grown/x" && e.event_type == file_event::EventType::Update);
    assert_eq!(update.and_then(|e| e.size), Some(6), "{flags:?}");
    assert_seq_contiguous(&evs);
}

/// `mkdir -p a/b && echo text > a/b/f`, as unpacking and build tools do it
/// thousands of times: the new directory's scan can find `f` created but
/// not written yet, and the kernel's create and close of `f` come after.
/// The content the stream last gives each file is what it holds.
#[test]
fn files_written_in_new_directories_end_with_their_written_content() {
    let _h = heavy();
    for backend in ["--backend=inotify", "--backend=notify"] {
        let d = tempdir();
        let m = Monitor::start(d.path(), &["--checksum=sha256", backend]);
        sh(
            d.path(),
            "for i in $(seq 1 1500); do mkdir -p a$((i%250))/b$((i%7)); \
             echo \"content $i\" > a$((i%250))/b$((i%7))/f$i; done",
        );
        let evs = m.settle(Duration::from_millis(500));
        let mut last = std::collections::BTreeMap::new();
        for e in &evs {
            if e.kind == file_event::Kind::File && e.event_type != file_event::EventType::Delete {
                last.insert(e.path.clone(), e.size);
            }
        }
        let wrong: Vec<String> = (1..=1500)
            .map(|i| format!("a{}/b{}/f{i}", i % 250, i % 7))
            .filter_map(|p| {
                let want = std::fs::metadata(d.path().join(&p)).unwrap().len();
                let got = last.get(&p).copied().flatten();
                (got != Some(want)).then(|| format!("{p}: stream {got:?}, disk {want}"))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{backend}: {} files end with another size in the stream: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        assert_trees_equal(&replay(&Tree::new(), &evs), &disk_tree(d.path(), &[]));
        assert_seq_contiguous(&evs);
    }
}

#[test]
fn an_atomic_save_carries_the_checksum_of_what_was_saved() {
    let d = tempdir();
    std::fs::write(d.path().join("t"), b"old").unwrap();
    let m = Monitor::start(d.path(), &["--checksum=sha256"]);
    // The temporary file is renamed before its create is written, so only
    // the move can say what the saved file holds.
    sh(d.path(), "printf new > t.tmp && mv t.tmp t");
    let evs = m.wait_for("move onto t", |e| has(e, "move file t.tmp -> t"));
    let mv = evs
        .iter()
        .find(|e| e.event_type == file_event::EventType::Move)
        .expect("the move");
    assert_eq!(mv.size, Some(3));
    // sha256 of "new".
    assert_eq!(
        mv.checksum.as_deref(),
        Some("sha256:11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437")
    );
}

#[test]
fn atomic_save_is_create_of_temp_and_move_over_target() {
    let d = tempdir();
    std::fs::write(d.path().join("t"), b"old").unwrap();
    let m = Monitor::start(d.path(), &[]);
    sh(d.path(), "printf new > t.tmp && mv t.tmp t");
    let evs = m.wait_for("move onto t", |e| has(e, "move file t.tmp -> t"));
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    assert_eq!(
        summary(&evs),
        vec!["create file t.tmp", "move file t.tmp -> t"]
    );
    assert_eq!(evs[1].size, Some(3));
}
