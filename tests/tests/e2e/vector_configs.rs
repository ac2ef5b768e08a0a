//! Every TOML in `vector-config/` is a configuration Vector 0.56.0 accepts (by its own
//! JSON schema), the pipeline has the settings the design relies on, and the
//! `[[tests]]` blocks hold when run with the vrl crate.

use std::path::{Path, PathBuf};

use e2e_tests::harness::k8s_wrap::{wrap_kubernetes_logs, Stream};
use e2e_tests::harness::pipeline::Topology;
use e2e_tests::harness::remap::{Remap, RemapOutcome};
use e2e_tests::paths;
use e2e_tests::vector_config::{self, component, remap_programs, repo_lookup, RemapProgram};

use crate::support::{alice_pod, at, event_json};

fn configs() -> Vec<PathBuf> {
    let files =
        vector_config::toml_files(&paths::vector_config_dir()).expect("vector-config/ readable");
    assert!(
        files.len() >= 3,
        "expected vector.toml, vector-local.toml and tests/: {files:?}"
    );
    files
}

fn load(path: &Path) -> toml::Table {
    vector_config::load(path, &repo_lookup).unwrap_or_else(|e| panic!("{e}"))
}

/// Vector names its schema definitions after Rust types (`Inputs<String>`), which are
/// not valid in a URI fragment; JSON-schema libraries reject such `$ref`s. Renames every
/// definition to `d<N>` and rewrites the references, leaving the schema's meaning intact.
fn with_uri_safe_definition_names(mut schema: serde_json::Value) -> serde_json::Value {
    let names: std::collections::BTreeMap<String, String> = schema["definitions"]
        .as_object()
        .expect("definitions")
        .keys()
        .enumerate()
        .map(|(i, k)| (format!("#/definitions/{k}"), format!("#/definitions/d{i}")))
        .collect();
    fn rewrite(v: &mut serde_json::Value, names: &std::collections::BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    if k == "$ref" {
                        if let Some(new) = child.as_str().and_then(|r| names.get(r)) {
                            *child = new.clone().into();
                        }
                    } else {
                        rewrite(child, names);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|c| rewrite(c, names)),
            _ => {}
        }
    }
    rewrite(&mut schema, &names);
    let defs = schema["definitions"].as_object_mut().expect("definitions");
    let renamed: serde_json::Map<String, serde_json::Value> = std::mem::take(defs)
        .into_iter()
        .map(|(k, v)| {
            (
                names[&format!("#/definitions/{k}")]
                    .trim_start_matches("#/definitions/")
                    .to_owned(),
                v,
            )
        })
        .collect();
    *defs = renamed;
    schema
}

#[test]
fn every_config_validates_against_the_vector_0_56_schema() {
    let schema_path = paths::vector_schema();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (set SHARED_DIR to the shared contracts)",
                schema_path.display()
            )
        }))
        .expect("the schema is JSON");
    let schema = with_uri_safe_definition_names(schema);
    let validator = jsonschema::draft201909::new(&schema).expect("the schema compiles");
    for path in configs() {
        let mut config = serde_json::to_value(load(&path)).expect("TOML converts to JSON");
        // The schema was generated from a Vector build without these component types
        // (shared/vector/README.md lists the ones it has). They are standard in the
        // official images; their options are checked here against the documented ones.
        let outside_schema: &[(&str, &str, &[&str])] = &[(
            "sources",
            "prometheus_scrape",
            &["type", "endpoints", "scrape_interval_secs"],
        )];
        for (kind, ty, allowed) in outside_schema {
            if let Some(map) = config.get_mut(*kind).and_then(|m| m.as_object_mut()) {
                map.retain(|id, c| {
                    if c["type"] != *ty {
                        return true;
                    }
                    for key in c.as_object().expect("component table").keys() {
                        assert!(
                            allowed.contains(&key.as_str()),
                            "{}: {kind}.{id}: option {key} is not checked",
                            path.display()
                        );
                    }
                    false
                });
            }
        }
        let errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
    }

    // The validator does reject what Vector would reject.
    let bad = serde_json::json!({"sinks": {"x": {"type": "http", "inputs": ["a"], "uri": "http://h/", "buffer": {"type": "disk", "max_size": 1000}}}});
    assert!(
        !validator.is_valid(&bad),
        "a disk buffer below 268435488 bytes must fail"
    );
    let bad =
        serde_json::json!({"sources": {"x": {"type": "kubernetes_logs", "no_such_option": 1}}});
    assert!(!validator.is_valid(&bad), "unknown options must fail");
}

#[test]
fn every_remap_file_exists_and_compiles() {
    let mut seen = 0;
    for path in configs() {
        for (id, program) in remap_programs(&load(&path)) {
            seen += 1;
            match program {
                RemapProgram::File(file) => {
                    assert!(
                        file.is_file(),
                        "{}: transform {id} reads {}, which does not exist",
                        path.display(),
                        file.display()
                    );
                    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("vrl"));
                    Remap::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
                }
                RemapProgram::Source(src) => {
                    Remap::compile(&id, &src).unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }
    assert!(seen >= 2, "both configs have a remap");
}

#[test]
fn in_the_cluster_remap_files_resolve_under_etc_vector() {
    let path = paths::vector_config_dir().join("vector.toml");
    let config = vector_config::load(&path, &|_| None).expect("loads with an empty environment");
    let programs = remap_programs(&config);
    assert_eq!(
        programs,
        vec![(
            "parse_events".to_owned(),
            RemapProgram::File("/etc/vector/parse_events.vrl".into())
        )]
    );
}

/// The DaemonSet pipeline's settings that the design depends on.
#[test]
fn daemonset_pipeline_settings() {
    let config = load(&paths::vector_config_dir().join("vector.toml"));
    let src = component(&config, "sources", "k8s_logs").expect("k8s_logs");
    assert_eq!(src["type"].as_str(), Some("kubernetes_logs"));
    // Selection must not hang on pod labels: Vector never reads the log files of a pod
    // its selectors exclude, and nothing would report that loss. The namespace and the
    // sidecar's container name select the files.
    assert!(
        src.get("extra_label_selector").is_none(),
        "a workspace pod missing a label would silently not be collected"
    );
    assert_eq!(
        src["extra_field_selector"].as_str(),
        Some("metadata.namespace=coditect-app")
    );
    let include = src["include_paths_glob_patterns"]
        .as_array()
        .expect("include patterns");
    assert!(include.iter().all(|p| {
        let p = p.as_str().unwrap_or_default();
        p.starts_with("/var/log/pods/coditect-app_") && p.contains("/file-monitor/")
    }));

    let sink = component(&config, "sinks", "fdb_sink").expect("fdb_sink");
    assert_eq!(sink["type"].as_str(), Some("http"));
    assert_eq!(
        sink["uri"].as_str(),
        Some("http://127.0.0.1:8080/v1/events")
    );
    assert_eq!(
        sink["framing"]["method"].as_str(),
        Some("newline_delimited")
    );
    assert_eq!(sink["encoding"]["codec"].as_str(), Some("json"));
    assert_eq!(sink["compression"].as_str(), Some("gzip"));
    assert_eq!(sink["buffer"]["type"].as_str(), Some("disk"));
    assert_eq!(sink["buffer"]["when_full"].as_str(), Some("block"));
    assert!(sink["buffer"]["max_size"].as_integer().unwrap_or_default() >= 268_435_488);
    // kubernetes_logs has no end-to-end acknowledgements: enabling them makes Vector
    // warn "Silent data loss could occur" and fail --deny-warnings.
    assert!(sink.get("acknowledgements").is_none());
    assert!(config.get("acknowledgements").is_none());
    // Nothing leaves the route without reaching the sink.
    let inputs: Vec<&str> = sink["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for out in [
        "route_events.ok",
        "route_events.dead_letter",
        "route_events._unmatched",
    ] {
        assert!(inputs.contains(&out), "{out} not consumed by fdb_sink");
    }
    let remap = component(&config, "transforms", "parse_events").expect("parse_events");
    assert_eq!(remap["drop_on_error"].as_bool(), Some(false));
    assert_eq!(remap["drop_on_abort"].as_bool(), Some(false));

    let prom = component(&config, "sinks", "vector_prometheus").expect("vector_prometheus");
    assert_eq!(prom["address"].as_str(), Some("0.0.0.0:9598"));
    assert_eq!(config["api"]["enabled"].as_bool(), Some(true));
    assert_eq!(config["api"]["address"].as_str(), Some("127.0.0.1:8686"));
}

/// Every output of every component has a consumer (Vector warns otherwise, which
/// fails `--deny-warnings`), and every input names an existing component.
#[test]
fn every_output_is_consumed_and_every_input_exists() {
    for path in configs()
        .into_iter()
        .filter(|p| !p.starts_with(paths::vector_config_dir().join("tests")))
    {
        let config = load(&path);
        let mut outputs = Vec::new();
        let mut inputs = Vec::new();
        for kind in ["sources", "transforms", "sinks"] {
            for (id, c) in config
                .get(kind)
                .and_then(|t| t.as_table())
                .into_iter()
                .flatten()
            {
                if kind != "sinks" {
                    match c.get("type").and_then(|t| t.as_str()) {
                        Some("route") => {
                            for name in c["route"].as_table().expect("routes").keys() {
                                outputs.push(format!("{id}.{name}"));
                            }
                            if c.get("reroute_unmatched").and_then(|v| v.as_bool()) != Some(false) {
                                outputs.push(format!("{id}._unmatched"));
                            }
                        }
                        Some("remap")
                            if c.get("reroute_dropped").and_then(|v| v.as_bool()) == Some(true) =>
                        {
                            outputs.push(id.clone());
                            outputs.push(format!("{id}.dropped"));
                        }
                        _ => outputs.push(id.clone()),
                    }
                }
                if kind != "sources" {
                    for i in c["inputs"]
                        .as_array()
                        .expect("inputs")
                        .iter()
                        .filter_map(|v| v.as_str())
                    {
                        inputs.push(i.to_owned());
                    }
                }
            }
        }
        for o in &outputs {
            assert!(
                inputs.contains(o),
                "{}: output {o} has no consumer",
                path.display()
            );
        }
        for i in &inputs {
            assert!(
                outputs.contains(i),
                "{}: input {i} is not an output",
                path.display()
            );
        }
    }
}

/// The `[[tests]]` blocks, run as `vector test` would: the input's VRL builds the
/// event, the topology of vector.toml processes it from `insert_at`, and each
/// condition is evaluated on what comes out of `extract_from`.
#[test]
fn vector_unit_tests_hold_under_the_vrl_crate() {
    e2e_tests::harness::env::init();
    let vector_toml = paths::vector_config_dir().join("vector.toml");
    let topology = Topology::from_config_file(&vector_toml, "k8s_logs", "fdb_sink")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ran = 0;
    for path in configs()
        .into_iter()
        .filter(|p| p.starts_with(paths::vector_config_dir().join("tests")))
    {
        let file = load(&path);
        for test in file["tests"].as_array().expect("tests array") {
            let name = test["name"].as_str().expect("name");
            let mut produced = Vec::new();
            for input in test["inputs"].as_array().expect("inputs") {
                assert_eq!(
                    input["insert_at"].as_str(),
                    Some("monitor_stdout"),
                    "{name}"
                );
                assert_eq!(input["type"].as_str(), Some("vrl"), "{name}");
                let builder = Remap::compile(name, input["source"].as_str().expect("source"))
                    .unwrap_or_else(|e| panic!("{e}"));
                let event = match builder.run(vrl::value::Value::Object(Default::default())) {
                    RemapOutcome::Done(v) => v,
                    other => panic!("{name}: input does not build: {other:?}"),
                };
                produced.push(topology.process(event));
            }
            for output in test
                .get("outputs")
                .and_then(|o| o.as_array())
                .into_iter()
                .flatten()
            {
                let from = output["extract_from"].as_str().expect("extract_from");
                let events: Vec<_> = produced
                    .iter()
                    .filter(|r| r.output == from)
                    .filter_map(|r| r.delivered.clone())
                    .collect();
                assert!(
                    !events.is_empty(),
                    "{name}: nothing came out of {from}: {produced:?}"
                );
                for cond in output["conditions"].as_array().expect("conditions") {
                    let check = Remap::compile(name, cond["source"].as_str().expect("source"))
                        .unwrap_or_else(|e| panic!("{e}"));
                    for ev in &events {
                        match check.run(ev.clone()) {
                            RemapOutcome::Done(_) => {}
                            other => panic!("{name}: condition failed on {ev:?}: {other:?}"),
                        }
                    }
                }
                ran += 1;
            }
            for none_from in test
                .get("no_outputs_from")
                .and_then(|o| o.as_array())
                .into_iter()
                .flatten()
            {
                let id = none_from.as_str().expect("id");
                assert!(
                    produced
                        .iter()
                        .all(|r| r.output == id && r.delivered.is_none()),
                    "{name}: expected nothing past {id}: {produced:?}"
                );
                ran += 1;
            }
        }
    }
    assert!(ran >= 6, "only {ran} vector test expectations ran");
}

/// The DaemonSet topology end to end in-process: stdout events reach the sink on
/// `route_events.ok`, bad lines on `route_events.dead_letter`, stderr never.
#[test]
fn topology_routes_events_dead_letters_and_stderr() {
    e2e_tests::harness::env::init();
    let topology = Topology::from_config_file(
        &paths::vector_config_dir().join("vector.toml"),
        "k8s_logs",
        "fdb_sink",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pod = alice_pod();
    let ok = topology.process(wrap_kubernetes_logs(
        event_json(1, "create").to_string().as_bytes(),
        &pod,
        Stream::Stdout,
        at(),
    ));
    assert_eq!(ok.output, "route_events.ok");
    assert!(ok.delivered.is_some() && !ok.remap_failed);
    let dl = topology.process(wrap_kubernetes_logs(b"garbage", &pod, Stream::Stdout, at()));
    assert_eq!(dl.output, "route_events.dead_letter");
    assert!(dl.delivered.is_some());
    let log = topology.process(wrap_kubernetes_logs(
        b"INFO watching /workspace",
        &pod,
        Stream::Stderr,
        at(),
    ));
    assert_eq!(log.output, "monitor_stdout");
    assert!(log.delivered.is_none());
}
