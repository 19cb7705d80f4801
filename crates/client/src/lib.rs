//! The Rust client for perdure (being written).
