//! hookrelay receives signed webhooks, stores every accepted event durably in redb, and fans
//! it out to the sinks its routes name, each at its own rate, with a durable retry queue.
//!
//! The data flows one way; read the modules in this order:
//!
//! 1. [`config`]: the TOML file, validated into a typed [`config::Config`].
//! 2. [`ingress`]: the HTTP server: routing `/hooks/{source}`, limits, status codes.
//! 3. [`verify`]: one verifier per signature scheme.
//! 4. [`route`]: which sinks an event goes to.
//! 5. [`store`]: redb; the event and its queue entries in one fsync'd group commit.
//! 6. [`dispatch`]: one worker per sink: rate limit, deliver, retry or dead-letter.
//! 7. [`sinks`]: one file per kind of destination.

pub mod config;
pub mod dispatch;
pub mod ingress;
pub mod route;
pub mod sinks;
pub mod store;
pub mod verify;
