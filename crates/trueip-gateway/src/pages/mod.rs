//! The gateway's own pages.

pub mod whoami;
