//! The crate's error type. Every fallible public function returns
//! `Result<T, SedrError>`; the R glue turns the variant into an R condition
//! class (`sedr_error_<kind>`) so R code can react to each kind.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SedrError {
    /// Bad user input; `arg` is the R-level argument name.
    #[error("`{arg}`: {msg}")]
    Input { arg: String, msg: String },
    /// A device was asked for that is not there (e.g. CUDA without a GPU).
    #[error("`device`: {0}")]
    Device(String),
    /// The memory estimate exceeds what is available.
    #[error("{0}")]
    Memory(String),
    /// libtorch threw (allocation failure, shape mismatch, CUDA error ...).
    #[error("libtorch error: {0}")]
    Torch(String),
    /// A bug in SEDR itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SedrError {
    pub fn input(arg: &str, msg: impl Into<String>) -> Self {
        SedrError::Input { arg: arg.to_string(), msg: msg.into() }
    }

    /// The condition-class suffix used on the R side.
    pub fn kind(&self) -> &'static str {
        match self {
            SedrError::Input { .. } => "input",
            SedrError::Device(_) => "device",
            SedrError::Memory(_) => "memory",
            SedrError::Torch(_) => "torch",
            SedrError::Internal(_) => "internal",
        }
    }
}

impl From<tch::TchError> for SedrError {
    fn from(e: tch::TchError) -> Self {
        SedrError::Torch(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, SedrError>;
