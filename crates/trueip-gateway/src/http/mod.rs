//! The two wire paths: the lean HTTP/1.1 codec and hyper's.

pub mod body;
pub mod hyper;
pub mod lean;
