//! Errors shared across modules, and how they map to exit codes.
//!
//! Exit codes: 0 success, 1 the environment or target is not ready (e.g. `check` failed, the
//! target exited), 2 bad input (a path, a PID, a flag that cannot be used).

use std::path::PathBuf;

/// Bad input that the user can fix; exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {problem}; {hint}")]
    Path {
        path: PathBuf,
        problem: String,
        hint: &'static str,
    },
    #[error("{0}")]
    Other(String),
}

/// Exit code for an error chain: 2 when any cause is an [`InputError`] or a target lookup
/// error, 1 otherwise (including a target that exists but that this process may not inspect:
/// a privilege problem, not bad input).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use crate::target::TargetError;
    let bad_input = e.chain().any(|c| {
        c.is::<InputError>()
            || c.downcast_ref::<TargetError>()
                .is_some_and(|t| !matches!(t, TargetError::NotAccessible { .. }))
            || c.is::<crate::symbols::SymbolsError>()
    });
    if bad_input { 2 } else { 1 }
}
