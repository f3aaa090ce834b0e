//! The rules both wire paths apply, as plain functions over a request head.

pub mod headers;
pub mod limits;
