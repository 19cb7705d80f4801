//! perdure's Jepsen-style fault-testing harness (library half): histories, checkers, the seeded
//! fault schedule, the SVG plot, and the machinery that runs real node processes and cuts the
//! network between them. The `perdure-chaos` binary drives a run; see `chaos-tests/README.md`.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod net;
pub mod powerfs;
pub mod schedule;
pub mod svg;
