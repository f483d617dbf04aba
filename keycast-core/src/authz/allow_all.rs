//! The authorizer that allows everything.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::request::Request;
use crate::traits::authorizer::{AuthContext, Authorizer, Decision};

/// Allows every request. Revocation and expiry of authorizations are still enforced by the
/// engine itself; this only skips policies. For tests, benchmarks and trusted embeddings.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    async fn authorize(&self, _ctx: &AuthContext<'_>, _request: &Request) -> Result<Decision> {
        Ok(Decision::Allow)
    }

    fn authorize_now(
        &self,
        _ctx: &AuthContext<'_>,
        _request: &Request,
    ) -> Option<Result<Decision>> {
        Some(Ok(Decision::Allow))
    }
}
