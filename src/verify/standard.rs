//! Placeholder until the verifier lands.

/// Verifier for this scheme.
#[derive(Debug)]
pub struct StandardVerifier;
