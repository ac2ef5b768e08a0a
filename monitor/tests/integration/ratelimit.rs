//! Item 7: the rate limit holds back and merges updates; creates, deletes and
//! moves always pass; nothing is counted as dropped.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

#[test]
fn rate_limit_merges_updates_and_never_drops_structure() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--max-events-per-sec=5", "--debounce=0"]);
    std::fs::write(root.join("hot"), b"").unwrap();
    for i in 0..200 {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("hot"))
            .unwrap();
        writeln!(f, "{i}").unwrap();
        if i % 50 == 0 {
            std::fs::write(root.join(format!("c{i}")), b"c").unwrap();
        }
    }
    let final_size = std::fs::metadata(root.join("hot")).unwrap().len();
    std::fs::rename(root.join("c0"), root.join("c0-moved")).unwrap();
    std::fs::remove_file(root.join("c50")).unwrap();
    let evs = m.wait_for_within(
        "last update carries the final size",
        Duration::from_secs(20),
        |e| {
            e.iter()
                .any(|x| x.path == "hot" && x.size == Some(final_size))
                && has(e, "delete file c50")
                && has(e, "move file c0 -> c0-moved")
        },
    );
    for i in [0, 50, 100, 150] {
        assert!(
            has(&evs, &format!("create file c{i}")),
            "create c{i} kept: {:?}",
            summary(&evs)
        );
    }
    let updates = evs.iter().filter(|e| e.path == "hot").count();
    assert!(updates < 60, "updates were merged, got {updates}");
    assert_eq!(
        m.metric("fs_monitor_events_dropped_total{reason=\"kernel_queue_overflow\"}"),
        0.0
    );
    assert!(m.metric("fs_monitor_events_coalesced_total") > 0.0);
    assert_seq_contiguous(&evs);
}
