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
