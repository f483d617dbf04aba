//! Authorizer implementations and the permission rules they share.

pub mod allow_all;
pub mod approvals;
mod event_summary;
pub mod policy;
pub mod rules;
