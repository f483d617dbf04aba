//! keycast-server's integration tests in one binary (`cargo test -p keycast-server --test it`); each
//! module was a test file of its own, and its tests are named `<module>::<test>`.

mod abuse;
mod accounts;
mod approvals;
mod authorizations;
mod cli;
mod cluster;
mod cluster_invalidation;
mod cluster_login_limits;
mod cluster_membership;
mod cluster_router;
mod common;
mod connect;
mod email_flows;
mod faults;
mod http;
mod keys;
mod log_secrets;
mod nip98;
mod oauth;
mod oauth_browser;
mod openapi;
mod policies;
mod replace_key;
mod rotation;
mod rpc;
mod serve;
mod teams;
mod tenants;
mod web_ui;
mod web_ui_teams;
