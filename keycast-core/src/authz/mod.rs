//! Authorizer implementations and the permission rules they share.

pub(crate) mod allow_all;
pub(crate) mod approvals;
mod event_summary;
pub(crate) mod policy;
pub(crate) mod rules;
