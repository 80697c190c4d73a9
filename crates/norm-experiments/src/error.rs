//! `StudyError`: why a study could not run (a bad config value, or an error from a kernel).

use thiserror::Error;

/// Why a study could not run.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StudyError {
    /// A config field is out of its valid range.
    #[error("study `{study}`: config field `{field}` = {value} is invalid: {reason}")]
    InvalidConfig {
        /// Study id.
        study: &'static str,
        /// Field name.
        field: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// What is accepted.
        reason: &'static str,
    },
    /// A config table does not fit the study's config type (a field of the wrong type,
    /// an unknown or missing field).
    #[error("study `{study}`: config does not fit: {message}")]
    ConfigData {
        /// Study id.
        study: &'static str,
        /// What did not fit, as the TOML reader says it.
        message: String,
    },
    /// A norm kernel refused its input.
    #[error(transparent)]
    Norm(#[from] norm_core::NormError),
    /// A layer or backward pass of `norm-autograd` refused its input (studies 5-7).
    #[error(transparent)]
    Grad(#[from] norm_autograd::GradError),
}
