//! The design's multi-tenant test: 10 users of 10 tenants write concurrently; every
//! record lands under its own tenant and nowhere else. Half the sidecars get their
//! attribution from `--metadata`, half only from the pod labels (filled in by the VRL
//! program).

use std::time::Duration;

use e2e_tests::harness::k8s_wrap::PodMeta;
use e2e_tests::scenario::{assert_stored_exactly_once, Attribution, Monitor};

use super::Stack;

const TENANTS: usize = 10;
const FILES_PER_USER: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tenants_writing_concurrently_stay_isolated() {
    let stack = Stack::start().await;
    let mut monitors = Vec::new();
    for i in 0..TENANTS {
        let (tenant, user, session) = (
            format!("tenant-{i:02}"),
            format!("user-{i:02}"),
            format!("session-{i:02}"),
        );
        let pod =
            PodMeta::workspace_sidecar(&format!("user-workspace-{user}"), &tenant, &user, &session);
        let attribution = if i % 2 == 0 {
            Attribution::Metadata
        } else {
            Attribution::PodLabelsOnly
        };
        let ws = stack.workspace(&user);
        let m = Monitor::start(
            &stack.bins,
            &ws,
            pod,
            attribution,
            50,
            stack.pipeline.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        monitors.push(m);
    }

    // Every user edits files in their own workspace at the same time.
    let writers: Vec<_> = monitors
        .iter()
        .map(|m| {
            let root = m.root.clone();
            tokio::spawn(async move {
                for n in 0..FILES_PER_USER {
                    let p = root.join(format!("notes-{n:02}.md"));
                    tokio::fs::write(&p, format!("draft {n}\n"))
                        .await
                        .expect("write");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    if n % 4 == 3 {
                        tokio::fs::remove_file(&p).await.expect("remove");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    let mut emitted = Vec::new();
    for m in monitors {
        let tenant = m.pod.pod_labels["coditect.ai/tenant-id"].clone();
        let user = m.pod.pod_labels["coditect.ai/user-id"].clone();
        emitted.push((
            tenant,
            user,
            m.stop().await.unwrap_or_else(|e| panic!("{e}")),
        ));
    }
    // Through the query API: each user sees exactly their own session's records, and a
    // token of another tenant sees none of them.
    for (i, (tenant, user, e)) in emitted.iter().enumerate() {
        let session = format!("/api/v5/agents/session-{i:02}/logs");
        let records = stack
            .query_until(&session, tenant, user, e.seqs.len())
            .await;
        assert_eq!(records.len(), e.seqs.len(), "{tenant}/{user}");
        assert!(
            records
                .iter()
                .all(|r| r["monitor_id"] == e.monitor_id.as_str()
                    && r["tenant_id"] == tenant.as_str())
        );
        let (other_tenant, other_user) = (format!("tenant-{:02}", (i + 1) % TENANTS), user.clone());
        let (_, leaked) = stack
            .query_records(&session, &other_tenant, &other_user)
            .await;
        assert!(
            leaked.is_empty(),
            "{other_tenant} sees {tenant}'s records: {leaked:#?}"
        );
    }

    let (report, store) = stack.finish().await;
    assert_eq!(report.dropped_events(), 0);

    let total: usize = emitted.iter().map(|(_, _, e)| e.seqs.len()).sum();
    assert_eq!(store.records.len(), total, "every line stored once");
    for (tenant, user, e) in &emitted {
        assert!(
            e.seqs.len() >= FILES_PER_USER,
            "{tenant}: only {} events",
            e.seqs.len()
        );
        assert_stored_exactly_once(e, &store);
        // Everything this monitor wrote is under its tenant, user and session…
        for r in store
            .records
            .iter()
            .filter(|r| r.3["monitor_id"] == e.monitor_id.as_str())
        {
            assert_eq!((&r.0, &r.1), (tenant, user), "{}", r.3);
            assert_eq!(r.3["tenant_id"], tenant.as_str());
        }
        // …and the tenant holds nothing else.
        let under_tenant: Vec<_> = store.records.iter().filter(|r| &r.0 == tenant).collect();
        assert_eq!(under_tenant.len(), e.seqs.len(), "{tenant}");
        assert!(under_tenant
            .iter()
            .all(|r| r.3["monitor_id"] == e.monitor_id.as_str()));
    }
    assert!(store.dead_letters.is_empty(), "{:?}", store.dead_letters);
}
