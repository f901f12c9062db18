//! Reads event type and delivery id from headers or JSON pointers.
