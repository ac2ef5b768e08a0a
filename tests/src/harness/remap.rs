//! Runs VRL programs with the `vrl` crate, pinned to the release Vector 0.56.0 embeds
//! (0.33.1), with the full standard library, as Vector's `remap` transform and `vrl`
//! conditions do.
//!
//! Type checking: Vector compiles a remap program against the schema of its inputs only
//! when `schema.enabled = true` (off by default, and off in this project); otherwise
//! every event field is typed `any`, which is what [`Remap::compile`] does. The project's
//! programs read their inputs with `get()` so that they also compile with typed inputs;
//! [`Remap::compile_with_event_kind`] checks that.

use std::path::{Path, PathBuf};

use thiserror::Error;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::{ExternalEnv, RuntimeState};
use vrl::compiler::{CompileConfig, Program, TargetValue, TimeZone, TypeState};
use vrl::value::{Kind, ObjectMap, Secrets, Value};

/// A VRL program that failed to load or compile.
#[derive(Debug, Error)]
pub enum RemapError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} does not compile:\n{diagnostics}")]
    Compile { name: String, diagnostics: String },
}

/// What happened to one event in a remap transform configured as this project's is
/// (`drop_on_error = false`, `drop_on_abort = false`).
#[derive(Debug, Clone, PartialEq)]
pub enum RemapOutcome {
    /// The program ran to the end; the event is the program's target.
    Done(Value),
    /// A runtime error: Vector forwards the original event unchanged.
    Errored { original: Value, error: String },
    /// `abort`: Vector forwards the original event unchanged.
    Aborted { original: Value, error: String },
}

impl RemapOutcome {
    /// The event Vector sends downstream.
    pub fn event(&self) -> &Value {
        match self {
            RemapOutcome::Done(v) => v,
            RemapOutcome::Errored { original, .. } | RemapOutcome::Aborted { original, .. } => {
                original
            }
        }
    }
}

/// A compiled VRL program.
#[derive(Debug)]
pub struct Remap {
    name: String,
    program: Program,
    warnings: Vec<String>,
}

impl Remap {
    /// Compiles the program in `path` (as `file =` does).
    pub fn from_file(path: &Path) -> Result<Self, RemapError> {
        let source = std::fs::read_to_string(path).map_err(|source| RemapError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::compile(&path.display().to_string(), &source)
    }

    /// Compiles `source` with untyped inputs (Vector's default, schema tracking off).
    pub fn compile(name: &str, source: &str) -> Result<Self, RemapError> {
        Self::compile_with_event_kind(name, source, Kind::any_object())
    }

    /// Compiles `source` assuming the events have type `event_kind`.
    pub fn compile_with_event_kind(
        name: &str,
        source: &str,
        event_kind: Kind,
    ) -> Result<Self, RemapError> {
        let state = TypeState {
            local: Default::default(),
            external: ExternalEnv::new_with_kind(event_kind, Kind::any_object()),
        };
        let fns = vrl::stdlib::all();
        let result =
            vrl::compiler::compile_with_state(source, &fns, &state, CompileConfig::default())
                .map_err(|diagnostics| RemapError::Compile {
                    name: name.to_owned(),
                    diagnostics: vrl::diagnostic::Formatter::new(source, diagnostics).to_string(),
                })?;
        let warnings = if result.warnings.is_empty() {
            Vec::new()
        } else {
            vec![vrl::diagnostic::Formatter::new(source, result.warnings).to_string()]
        };
        Ok(Remap {
            name: name.to_owned(),
            program: result.program,
            warnings,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compiler warnings (unused expressions, deprecations), formatted.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Runs the program on one event, as the remap transform does.
    pub fn run(&self, event: Value) -> RemapOutcome {
        let mut target = TargetValue {
            value: event.clone(),
            metadata: Value::Object(ObjectMap::new()),
            secrets: Secrets::default(),
        };
        let mut runtime = Runtime::new(RuntimeState::default());
        match runtime.resolve(&mut target, &self.program, &TimeZone::default()) {
            Ok(_) => RemapOutcome::Done(target.value),
            Err(Terminate::Abort(e)) => RemapOutcome::Aborted {
                original: event,
                error: e.to_string(),
            },
            Err(Terminate::Error(e)) => RemapOutcome::Errored {
                original: event,
                error: e.to_string(),
            },
        }
    }

    /// Evaluates the program as a `vrl` condition (filter, route): true only when it
    /// returns `true`; a runtime error counts as false, as in Vector.
    pub fn check(&self, event: &Value) -> bool {
        let mut target = TargetValue {
            value: event.clone(),
            metadata: Value::Object(ObjectMap::new()),
            secrets: Secrets::default(),
        };
        let mut runtime = Runtime::new(RuntimeState::default());
        matches!(
            runtime.resolve(&mut target, &self.program, &TimeZone::default()),
            Ok(Value::Boolean(true))
        )
    }
}
