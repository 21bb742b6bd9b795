//! The `suanli` command's library side: what the CLI and the integration
//! tests share.
//!
//! - [`hub`]: named models, fetched and sha256-checked into a local cache.

pub mod hub;
