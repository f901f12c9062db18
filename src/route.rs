//! Routing: which sinks an event goes to, from its source and event type. Pure: compiled
//! once from the config, no I/O.
