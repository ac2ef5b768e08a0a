//! The project's Vector topology, run in-process: the transforms between a source and
//! the http sink of a config in `vector-config/` (filter conditions, remap programs and
//! route conditions, all in VRL and run with the `vrl` crate), then the
//! [`HttpSink`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use thiserror::Error;
use tokio::io::AsyncBufReadExt as _;
use vrl::value::Value;

use super::http_sink::{HttpSink, HttpSinkConfig, SinkClosed, SinkConfigError, SinkReport};
use super::k8s_wrap::{wrap_kubernetes_logs, PodMeta, Stream};
use super::remap::{Remap, RemapError, RemapOutcome};
use crate::vector_config::{self, ConfigError};

/// Why a topology could not be built from a config.
#[derive(Debug, Error)]
pub enum TopologyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Remap(#[from] RemapError),
    #[error(transparent)]
    Sink(#[from] SinkConfigError),
    #[error("no component {0:?}")]
    Missing(String),
    #[error("{0:?} is consumed by {1} transforms; the harness follows one chain")]
    Branching(String, usize),
    #[error("transform {id:?} has type {kind:?}, which the harness does not run")]
    Unsupported { id: String, kind: String },
    #[error("transform {0:?} has a condition that is not VRL")]
    Condition(String),
}

#[derive(Debug)]
enum Step {
    Filter {
        id: String,
        condition: Remap,
    },
    Remap {
        id: String,
        program: Remap,
    },
    Route {
        id: String,
        routes: Vec<(String, Remap)>,
        reroute_unmatched: bool,
    },
}

/// Where an event ended up.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The output it left the last transform on (`route_events.ok`), or the id of the
    /// filter that discarded it.
    pub output: String,
    /// The event, if the sink consumes that output.
    pub delivered: Option<Value>,
    /// True if a remap step did not run to completion (error or abort).
    pub remap_failed: bool,
}

/// The chain of transforms from one source to one sink.
#[derive(Debug)]
pub struct Topology {
    steps: Vec<Step>,
    sink_inputs: Vec<String>,
    sink: HttpSinkConfig,
}

fn condition_source(id: &str, value: Option<&toml::Value>) -> Result<String, TopologyError> {
    match value {
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(toml::Value::Table(t))
            if t.get("type").and_then(|v| v.as_str()).unwrap_or("vrl") == "vrl" =>
        {
            t.get("source")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
                .ok_or_else(|| TopologyError::Condition(id.to_owned()))
        }
        _ => Err(TopologyError::Condition(id.to_owned())),
    }
}

fn input_list(t: &toml::Table) -> Vec<String> {
    t.get("inputs")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Topology {
    /// Loads `path` (interpolated with [`vector_config::repo_lookup`]) and follows the
    /// transforms from `source_id` to `sink_id`.
    pub fn from_config_file(
        path: &Path,
        source_id: &str,
        sink_id: &str,
    ) -> Result<Self, TopologyError> {
        let config = vector_config::load(path, &vector_config::repo_lookup)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_config(&config, &base, source_id, sink_id)
    }

    /// Follows the transforms of `config` from `source_id` to `sink_id`; relative
    /// `file =` paths resolve against `base`.
    pub fn from_config(
        config: &toml::Table,
        base: &Path,
        source_id: &str,
        sink_id: &str,
    ) -> Result<Self, TopologyError> {
        let sink_table = vector_config::component(config, "sinks", sink_id)
            .ok_or_else(|| TopologyError::Missing(sink_id.to_owned()))?;
        let sink = HttpSinkConfig::from_vector_sink(sink_table)?;
        let sink_inputs = input_list(sink_table);
        let transforms = config
            .get("transforms")
            .and_then(|t| t.as_table())
            .cloned()
            .unwrap_or_default();
        let mut steps = Vec::new();
        let mut current = source_id.to_owned();
        loop {
            let consumers: Vec<(&String, &toml::Value)> = transforms
                .iter()
                .filter(|(_, t)| {
                    t.as_table()
                        .map(|t| input_list(t).contains(&current))
                        .unwrap_or(false)
                })
                .collect();
            if consumers.is_empty() {
                break;
            }
            if consumers.len() > 1 {
                return Err(TopologyError::Branching(current, consumers.len()));
            }
            let (id, t) = consumers[0];
            let t = t
                .as_table()
                .ok_or_else(|| TopologyError::Missing(id.clone()))?;
            let kind = t.get("type").and_then(|v| v.as_str()).unwrap_or_default();
            match kind {
                "filter" => {
                    let src = condition_source(id, t.get("condition"))?;
                    steps.push(Step::Filter {
                        id: id.clone(),
                        condition: Remap::compile(&format!("{id}.condition"), &src)?,
                    });
                }
                "remap" => {
                    let program = if let Some(file) = t.get("file").and_then(|f| f.as_str()) {
                        let p = PathBuf::from(file);
                        Remap::from_file(&if p.is_absolute() { p } else { base.join(p) })?
                    } else {
                        let src = t
                            .get("source")
                            .and_then(|s| s.as_str())
                            .ok_or_else(|| TopologyError::Missing(format!("{id}.source")))?;
                        Remap::compile(id, src)?
                    };
                    steps.push(Step::Remap {
                        id: id.clone(),
                        program,
                    });
                }
                "route" => {
                    let mut routes = Vec::new();
                    if let Some(r) = t.get("route").and_then(|r| r.as_table()) {
                        for (name, cond) in r {
                            let src = condition_source(&format!("{id}.{name}"), Some(cond))?;
                            routes.push((
                                name.clone(),
                                Remap::compile(&format!("{id}.{name}"), &src)?,
                            ));
                        }
                    }
                    let reroute_unmatched = t
                        .get("reroute_unmatched")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(true);
                    steps.push(Step::Route {
                        id: id.clone(),
                        routes,
                        reroute_unmatched,
                    });
                    break;
                }
                other => {
                    return Err(TopologyError::Unsupported {
                        id: id.clone(),
                        kind: other.to_owned(),
                    })
                }
            }
            current = id.clone();
        }
        Ok(Topology {
            steps,
            sink_inputs,
            sink,
        })
    }

    /// The sink settings read from the config.
    pub fn sink_config(&self) -> &HttpSinkConfig {
        &self.sink
    }

    /// Runs one event through the transforms. A route sends the event to every output
    /// whose condition holds; the first consumed one is reported (the project's routes
    /// are mutually exclusive).
    pub fn process(&self, event: Value) -> Routed {
        let mut event = event;
        let mut output = String::new();
        let mut remap_failed = false;
        for step in &self.steps {
            match step {
                Step::Filter { id, condition } => {
                    if !condition.check(&event) {
                        return Routed {
                            output: id.clone(),
                            delivered: None,
                            remap_failed,
                        };
                    }
                    output = id.clone();
                }
                Step::Remap { id, program } => {
                    let outcome = program.run(event);
                    remap_failed |= !matches!(outcome, RemapOutcome::Done(_));
                    event = match outcome {
                        RemapOutcome::Done(v) => v,
                        RemapOutcome::Errored { original, .. }
                        | RemapOutcome::Aborted { original, .. } => original,
                    };
                    output = id.clone();
                }
                Step::Route {
                    id,
                    routes,
                    reroute_unmatched,
                } => {
                    let matched: Vec<String> = routes
                        .iter()
                        .filter(|(_, c)| c.check(&event))
                        .map(|(name, _)| format!("{id}.{name}"))
                        .collect();
                    let outputs = if matched.is_empty() && *reroute_unmatched {
                        vec![format!("{id}._unmatched")]
                    } else {
                        matched
                    };
                    let consumed = outputs.iter().find(|o| self.sink_inputs.contains(o));
                    return Routed {
                        output: consumed
                            .or(outputs.first())
                            .cloned()
                            .unwrap_or_else(|| id.clone()),
                        delivered: consumed.map(|_| event),
                        remap_failed,
                    };
                }
            }
        }
        let consumed = self.sink_inputs.contains(&output);
        Routed {
            output,
            delivered: consumed.then_some(event),
            remap_failed,
        }
    }
}

/// A topology feeding a running http sink.
pub struct Pipeline {
    topology: Arc<Topology>,
    sink: HttpSink,
}

impl Pipeline {
    /// Starts the sink with the topology's settings, sending to `uri` instead of the
    /// configured address.
    pub fn start(topology: Arc<Topology>, uri: &str) -> Self {
        let mut cfg = topology.sink_config().clone();
        cfg.uri = uri.to_owned();
        Self::start_with(topology, cfg)
    }

    pub fn start_with(topology: Arc<Topology>, sink: HttpSinkConfig) -> Self {
        super::env::init();
        Pipeline {
            topology,
            sink: HttpSink::start(sink),
        }
    }

    /// Runs one source event through the transforms and queues it for delivery.
    pub async fn push(&self, event: Value) -> Result<Routed, SinkClosed> {
        let routed = self.topology.process(event);
        if let Some(ev) = &routed.delivered {
            self.sink.send(ev.clone()).await?;
        }
        Ok(routed)
    }

    /// Reads a container's output line by line (as the kubelet writes it to the pod's
    /// log file) until end of file, wrapping each line as `kubernetes_logs` does.
    /// Returns the number of lines read.
    pub async fn feed_lines<R>(
        &self,
        reader: R,
        pod: &PodMeta,
        stream: Stream,
    ) -> Result<u64, FeedError>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let mut reader = tokio::io::BufReader::new(reader);
        let mut line = Vec::new();
        let mut n = 0;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).await?;
            if read == 0 {
                return Ok(n);
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            n += 1;
            self.push(wrap_kubernetes_logs(&line, pod, stream, Utc::now()))
                .await?;
        }
    }

    /// Flushes and waits for every batch to be acknowledged or dropped.
    pub async fn finish(self) -> SinkReport {
        self.sink.finish().await
    }
}

/// Reading a container's output failed.
#[derive(Debug, Error)]
pub enum FeedError {
    #[error("reading the container output: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Closed(#[from] SinkClosed),
}
