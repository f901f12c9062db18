//! Placeholder.
use std::path::Path;

use super::Config;

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
#[error("config error")]
pub struct ConfigError;

pub(super) fn load(_path: &Path) -> Result<Config, ConfigError> {
    todo!()
}

pub(super) fn parse(_text: &str, _origin: &str) -> Result<Config, ConfigError> {
    todo!()
}
