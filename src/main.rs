//! The `hookrelay` binary: command line, logging, exit codes; wires the parts.

fn main() {}
