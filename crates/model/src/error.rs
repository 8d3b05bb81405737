//! Errors of the model: what was wrong, with which value, and what to do.

use std::fmt;

use serde::Serialize;

/// The class of a model error; maps onto an HTTP status at the API edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is malformed or violates a rule (400).
    InvalidArgument,
    /// A referenced or addressed object does not exist or is not visible (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The object changed since the revision the caller named (412).
    PreconditionFailed,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
        }
    }
}

/// A refused change: nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ModelError {
    /// The class of error.
    pub code: ErrorCode,
    /// What was wrong and what to do, for a human.
    pub message: String,
    /// The offending field as a path (`fixed_ips[0].ip`), when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} (field {field})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ModelError {
    /// A 400 error.
    pub fn invalid(message: impl Into<String>) -> Self {
        ModelError {
            code: ErrorCode::InvalidArgument,
            message: message.into(),
            field: None,
        }
    }
    /// A 404 error.
    pub fn not_found(message: impl Into<String>) -> Self {
        ModelError {
            code: ErrorCode::NotFound,
            message: message.into(),
            field: None,
        }
    }
    /// A 409 error.
    pub fn conflict(message: impl Into<String>) -> Self {
        ModelError {
            code: ErrorCode::Conflict,
            message: message.into(),
            field: None,
        }
    }
    /// A 412 error.
    pub fn precondition(message: impl Into<String>) -> Self {
        ModelError {
            code: ErrorCode::PreconditionFailed,
            message: message.into(),
            field: None,
        }
    }
    /// Names the offending field.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    /// Prefixes the field path with an outer field (`subnets[1]` + `cidr`).
    pub fn within(mut self, outer: impl fmt::Display) -> Self {
        self.field = Some(match self.field.take() {
            Some(inner) if inner.starts_with('[') => format!("{outer}{inner}"),
            Some(inner) => format!("{outer}.{inner}"),
            None => outer.to_string(),
        });
        self
    }
}

/// Shorthand for results of the model.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
