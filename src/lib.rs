//! shadowroute: an OpenAI-compatible router that routes by modality, shadows candidates and replaces degraded leaders.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout))]

pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod control;
pub mod decide;
pub mod demo;
pub mod evaluate;
pub mod metrics;
pub mod proxy;
pub mod raw_headers;
pub(crate) mod rng;
pub mod router;
pub mod server;
pub mod shadow;
pub mod sim;
pub mod state;
pub mod status;
pub mod store;
