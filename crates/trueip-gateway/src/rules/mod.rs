//! The rules of the gateway, as plain functions over a request head: both wire paths
//! (`http::lean` and `http::hyper`) call them, so each rule exists once and the
//! differential test checks the codecs, not two copies of policy.
//!
//! - [`route`]: what answers a request (the admin endpoints, the whoami page, the
//!   upstream), and the header-count limit that comes first;
//! - [`headers`]: which request header lines reach the upstream and which the gateway
//!   writes itself; which response header lines reach the client; upgrades;
//! - [`failure`]: an exchange that failed, as the status, error code and metric the
//!   client and the operator see;
//! - [`limits`]: how header lines are counted.

pub(crate) mod failure;
pub(crate) mod headers;
pub(crate) mod limits;
pub(crate) mod route;

pub(crate) use failure::{Blame, Failure};
pub(crate) use headers::{Facts, Fate, Hygiene};
pub(crate) use route::{Admin, Route, Serves, route};
