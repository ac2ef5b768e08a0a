//! Item 3: moves inside the root, in from outside, out to outside; directory
//! renames move their subtree.

use std::time::Duration;

use crate::support::*;

#[test]
fn moves_inside_in_and_out() {
    let d = tempdir();
    let outside = tempdir();
    let root = d.path();
    sh(root, "mkdir -p dir/sub && echo 1 > dir/sub/f && echo 2 > a");
    std::fs::create_dir_all(outside.path().join("incoming/deep")).unwrap();
    std::fs::write(outside.path().join("incoming/deep/g"), b"g").unwrap();
    std::fs::write(outside.path().join("single"), b"s").unwrap();
    let m = Monitor::start(root, &[]);

    sh(root, "mv a b");
    m.wait_for("file move", |e| has(e, "move file a -> b"));

    sh(root, "mv dir renamed");
    m.wait_for("dir move", |e| has(e, "move dir dir -> renamed"));
    // The subtree moved with it: a change below uses the new name.
    sh(root, "echo 3 > renamed/sub/new");
    m.wait_for("create below renamed dir", |e| {
        has(e, "create file renamed/sub/new")
    });

    std::fs::rename(outside.path().join("single"), root.join("single")).unwrap();
    std::fs::rename(outside.path().join("incoming"), root.join("incoming")).unwrap();
    m.wait_for("moved-in tree", |e| {
        has(e, "create file single")
            && has(e, "create dir incoming")
            && has(e, "create file incoming/deep/g")
    });

    std::fs::rename(root.join("b"), outside.path().join("b")).unwrap();
    std::fs::rename(root.join("renamed"), outside.path().join("renamed")).unwrap();
    m.wait_for("moved-out", |e| {
        has(e, "delete file b") && has(e, "delete dir renamed")
    });
    let evs = m.settle(Duration::from_millis(300));
    assert!(
        !evs.iter().any(|e| e.path.starts_with("dir/")),
        "{:?}",
        summary(&evs)
    );
    assert_seq_contiguous(&evs);

    // Replaying the stream from the starting tree gives the final tree.
    let mut start = Tree::new();
    for (p, k) in [
        ("dir", "dir"),
        ("dir/sub", "dir"),
        ("dir/sub/f", "file"),
        ("a", "file"),
    ] {
        start.insert(p.as_bytes().to_vec(), k);
    }
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
}

/// `renameat2(a, b, RENAME_EXCHANGE)` (`mv --exchange a b`).
fn exchange(a: &std::path::Path, b: &std::path::Path) {
    nix::fcntl::renameat2(None, a, None, b, nix::fcntl::RenameFlags::RENAME_EXCHANGE)
        .expect("renameat2 RENAME_EXCHANGE");
}

#[test]
fn an_exchange_of_two_names_replays_to_both() {
    let d = tempdir();
    let root = d.path();
    sh(
        root,
        "echo AAA > f && echo BB > g && mkdir d1 d2 && echo 1 > d1/one && echo 2 > d2/two",
    );
    let start = disk_tree(root, &[]);
    let m = Monitor::start(root, &["--checksum=sha256"]);
    exchange(&root.join("f"), &root.join("g"));
    exchange(&root.join("d1"), &root.join("d2"));
    // Both directories are still watched under their new names.
    sh(root, "echo 3 > d1/three && echo 4 > d2/four");
    let evs = m.wait_for("changes in both exchanged directories", |e| {
        has(e, "create file d1/three") && has(e, "create file d2/four")
    });
    let f = evs
        .iter()
        .find(|e| e.path == "f" && e.event_type == file_event::EventType::Create)
        .unwrap_or_else(|| panic!("{:?}", summary(&evs)));
    assert_eq!(f.size, Some(3), "f holds what g held");
    assert!(has(&evs, "move file f -> g"), "{:?}", summary(&evs));
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
    // A name moved away and back is still a pair of moves.
    sh(root, "mv f h && mv h f");
    let evs = m.wait_for("moves back and forth", |e| has(e, "move file h -> f"));
    assert!(has(&evs, "move file f -> h"), "{:?}", summary(&evs));
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
    assert_seq_contiguous(&evs);
}
