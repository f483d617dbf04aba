//! The KeyStore implementation, written once and expanded for each sqlx backend.
//!
//! SQL is written with Postgres placeholders (`$1`); each backend's `sql()` rewrites them
//! for its dialect. Writes go to `writer()` and reads to `reader()` (the same pool on
//! Postgres; a single-connection writer pool and a read pool on SQLite).

/// The revoking `UPDATE` (`$3`, `$4`: the owner's tenant and user, or both `NULL` for
/// any), returning the row and, as `clients_hex`, its clients in connect order as
/// comma-separated hex (`$clients`: the dialect's aggregate over `authorization_clients`
/// of `authorizations.id`), so a revocation is one round trip.
macro_rules! revoke_authorization_sql {
    ($clients:literal) => {
        concat!(
            "UPDATE authorizations SET revoked_at = $1, version = version + 1 ",
            "WHERE id = $2 AND revoked_at IS NULL ",
            "AND ($3 IS NULL OR (tenant_id = $3 AND user_id = $4)) RETURNING *, ",
            $clients,
            " AS clients_hex"
        )
    };
}
pub(crate) use revoke_authorization_sql;

macro_rules! impl_key_store {
    ($store:ty, $db:ty) => {
        $crate::sql_teams::impl_team_queries!($store, $db);

        impl $store {
            /// Inserts audit rows; a row with a spool id that is already stored is skipped.
            pub(crate) async fn insert_audit(
                &self,
                rows: &[(Option<uuid::Uuid>, $crate::audit_spool::AuditValues)],
            ) -> keycast_core::Result<()> {
                let subject = about("audit record", "audit record");
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO audit_log (at, tenant_id, user_id, key_id, authorization_id, method, \
                     event_kind, event_id, outcome, detail, spool_id) ",
                );
                qb.push_values(rows, |mut b, (spool_id, v)| {
                    b.push_bind(v.at)
                        .push_bind(v.tenant_id)
                        .push_bind(v.user_id)
                        .push_bind(v.key_id)
                        .push_bind(v.authorization_id)
                        .push_bind(v.method.clone())
                        .push_bind(v.event_kind)
                        .push_bind(v.event_id.clone())
                        .push_bind(v.outcome.clone())
                        .push_bind(v.detail.clone())
                        .push_bind(*spool_id);
                });
                qb.push(" ON CONFLICT (spool_id) DO NOTHING");
                qb.build()
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, subject))?;
                Ok(())
            }

            /// Moves spooled audit records into the database until none wait or it fails.
            async fn drain_audit_spool(&self, spool: &$crate::audit_spool::AuditSpool) -> keycast_core::Result<()> {
                while spool.pending() {
                    let lines = spool.batch().await?;
                    for chunk in lines.chunks($crate::audit_spool::INSERT_CHUNK) {
                        let rows: Vec<_> = chunk.iter().map(|l| (Some(l.id), l.values.clone())).collect();
                        self.insert_audit(&rows).await?;
                    }
                    spool.batch_stored(lines.len()).await?;
                    if !lines.is_empty() {
                        tracing::info!(count = lines.len(), "spooled audit records stored in the database");
                    }
                }
                Ok(())
            }

            /// The drain task: every `every`, or at once when woken, moves what waits in the
            /// spool; stops when `stop` is notified.
            fn spawn_drain(&self, spool: $crate::audit_spool::AuditSpool, every: std::time::Duration) {
                let store = self.clone();
                let signals = self.drain_signals().clone();
                tokio::spawn(async move {
                    let mut failing = false;
                    loop {
                        tokio::select! {
                            () = signals.stop.notified() => return,
                            () = signals.wake.notified() => {}
                            () = tokio::time::sleep(every) => {}
                        }
                        if !spool.pending() {
                            continue;
                        }
                        match store.drain_audit_spool(&spool).await {
                            Ok(()) => failing = false,
                            Err(e) if !failing => {
                                failing = true;
                                tracing::warn!(error = %e, "cannot move spooled audit records yet; retrying");
                            }
                            Err(_) => {}
                        }
                    }
                });
            }

            fn wake_drain(&self) {
                self.drain_signals().wake.notify_one();
            }

            /// Attaches a spool for audit records the database cannot take (see
            /// [`crate::AuditSpool`]) and starts its drain task, which first moves what an
            /// earlier run left there. Call inside a Tokio runtime.
            pub fn with_audit_spool(mut self, spool: $crate::audit_spool::AuditSpool) -> Self {
                self.spawn_drain(spool.clone(), $crate::audit_spool::DRAIN_EVERY);
                self.spool = Some(spool);
                self.wake_drain();
                self
            }

            pub(crate) fn audit_spool(&self) -> Option<&$crate::audit_spool::AuditSpool> {
                self.spool.as_ref()
            }

            fn drain_signals(&self) -> &std::sync::Arc<$crate::audit_spool::DrainSignals> {
                &self.drain
            }
        }

        #[async_trait::async_trait]
        impl keycast_core::KeyStore for $store {
            async fn create_tenant(&self, t: &keycast_core::Tenant) -> keycast_core::Result<()> {
                let sql = Self::sql("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)");
                sqlx::query(&sql)
                    .bind(t.id.as_uuid())
                    .bind(t.name.as_str())
                    .bind($crate::rows::ts(t.created_at)?)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("tenant", "tenant")))?;
                Ok(())
            }

            async fn get_tenant(&self, id: keycast_core::TenantId) -> keycast_core::Result<keycast_core::Tenant> {
                let sql = Self::sql("SELECT * FROM tenants WHERE id = $1");
                sqlx::query_as::<_, $crate::rows::TenantRow>(&sql)
                    .bind(id.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("tenant", "tenant")))?
                    .try_into()
            }

            async fn find_tenant(&self, name: &keycast_core::TenantName) -> keycast_core::Result<keycast_core::Tenant> {
                let sql = Self::sql("SELECT * FROM tenants WHERE name = $1");
                sqlx::query_as::<_, $crate::rows::TenantRow>(&sql)
                    .bind(name.as_str())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("tenant", "tenant")))?
                    .try_into()
            }

            async fn list_tenants(&self) -> keycast_core::Result<Vec<keycast_core::Tenant>> {
                let sql = Self::sql("SELECT * FROM tenants ORDER BY name");
                sqlx::query_as::<_, $crate::rows::TenantRow>(&sql)
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("tenant", "tenant")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn add_tenant_host(
                &self,
                host: &keycast_core::TenantHost,
                tenant: keycast_core::TenantId,
            ) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO tenant_hosts (host, tenant_id, created_at) VALUES ($1, $2, $3)",
                );
                sqlx::query(&sql)
                    .bind(host.as_str())
                    .bind(tenant.as_uuid())
                    .bind($crate::rows::ts(keycast_core::nostr::Timestamp::now())?)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("tenant host", "tenant")))?;
                Ok(())
            }

            async fn remove_tenant_host(&self, host: &keycast_core::TenantHost) -> keycast_core::Result<bool> {
                let sql = Self::sql("DELETE FROM tenant_hosts WHERE host = $1");
                let done = sqlx::query(&sql)
                    .bind(host.as_str())
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("tenant host", "tenant")))?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_tenant_hosts(
                &self,
            ) -> keycast_core::Result<Vec<(keycast_core::TenantHost, keycast_core::TenantId)>> {
                let sql = Self::sql("SELECT host, tenant_id FROM tenant_hosts ORDER BY host");
                sqlx::query_as::<_, (String, uuid::Uuid)>(&sql)
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("tenant host", "tenant")))?
                    .into_iter()
                    .map(|(host, tenant)| {
                        let host = keycast_core::TenantHost::parse(&host)
                            .map_err(|_| keycast_core::Error::Corrupt("stored tenant host is invalid".into()))?;
                        Ok((host, keycast_core::TenantId::from_uuid(tenant)))
                    })
                    .collect()
            }

            async fn create_user(&self, u: &keycast_core::User) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO users (id, tenant_id, username, password_hash, email, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                );
                sqlx::query(&sql)
                    .bind(u.id.as_uuid())
                    .bind(u.tenant_id.as_uuid())
                    .bind(u.username.as_str())
                    .bind(u.password_hash.as_ref().map(|h| h.as_str()))
                    .bind(u.email.as_ref().map(|e| e.as_str()))
                    .bind($crate::rows::ts(u.created_at)?)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("user", "tenant")))?;
                Ok(())
            }

            async fn get_user(&self, id: keycast_core::UserId) -> keycast_core::Result<keycast_core::User> {
                let sql = Self::sql("SELECT * FROM users WHERE id = $1");
                sqlx::query_as::<_, $crate::rows::UserRow>(&sql)
                    .bind(id.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("user", "user")))?
                    .try_into()
            }

            async fn delete_user(&self, id: keycast_core::UserId) -> keycast_core::Result<()> {
                let sql = Self::sql("DELETE FROM users WHERE id = $1");
                let done = sqlx::query(&sql)
                    .bind(id.as_uuid())
                    .execute(self.writer())
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(db)
                            if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
                        {
                            keycast_core::Error::Conflict("the user still owns records".into())
                        }
                        e => db_error(e, about("user", "user")),
                    })?;
                if done.rows_affected() == 0 {
                    return Err(keycast_core::Error::NotFound { what: "user" });
                }
                Ok(())
            }

            async fn find_user(
                &self,
                tenant: keycast_core::TenantId,
                username: &keycast_core::Username,
            ) -> keycast_core::Result<keycast_core::User> {
                let sql = Self::sql("SELECT * FROM users WHERE tenant_id = $1 AND username = $2");
                sqlx::query_as::<_, $crate::rows::UserRow>(&sql)
                    .bind(tenant.as_uuid())
                    .bind(username.as_str())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("user", "user")))?
                    .try_into()
            }

            async fn find_user_by_email(
                &self,
                tenant: keycast_core::TenantId,
                email: &keycast_core::Email,
            ) -> keycast_core::Result<keycast_core::User> {
                let sql = Self::sql("SELECT * FROM users WHERE tenant_id = $1 AND email = $2");
                sqlx::query_as::<_, $crate::rows::UserRow>(&sql)
                    .bind(tenant.as_uuid())
                    .bind(email.as_str())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("user", "user")))?
                    .try_into()
            }

            async fn insert_session(&self, s: &keycast_core::Session) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO sessions (digest, tenant_id, user_id, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                );
                sqlx::query(&sql)
                    .bind(s.digest.as_bytes().as_slice())
                    .bind(s.tenant_id.as_uuid())
                    .bind(s.user_id.as_uuid())
                    .bind($crate::rows::ts(s.expires_at)?)
                    .bind($crate::rows::ts(s.created_at)?)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("session", "user")))?;
                Ok(())
            }

            async fn find_session(
                &self,
                digest: &keycast_core::SecretDigest,
            ) -> keycast_core::Result<keycast_core::Session> {
                let sql = Self::sql("SELECT * FROM sessions WHERE digest = $1");
                sqlx::query_as::<_, $crate::rows::SessionRow>(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("session", "session")))?
                    .try_into()
            }

            async fn delete_session(&self, digest: &keycast_core::SecretDigest) -> keycast_core::Result<bool> {
                let sql = Self::sql("DELETE FROM sessions WHERE digest = $1");
                let n = sqlx::query(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("session", "session")))?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn replace_password(
                &self,
                user: keycast_core::UserId,
                hash: &keycast_core::PasswordHash,
                revoke_apps_at: Option<keycast_core::nostr::Timestamp>,
            ) -> keycast_core::Result<keycast_core::PasswordReplaced> {
                let fail = |e| db_error(e, about("user", "user"));
                let mut tx = self.writer().begin().await.map_err(fail)?;
                let set = Self::sql("UPDATE users SET password_hash = $1 WHERE id = $2");
                let n = sqlx::query(&set)
                    .bind(hash.as_str())
                    .bind(user.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "user" });
                }
                let end = Self::sql("DELETE FROM sessions WHERE user_id = $1");
                let ended = sqlx::query(&end)
                    .bind(user.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected();
                let mut outcome = keycast_core::PasswordReplaced::default();
                outcome.sessions_ended = ended;
                if let Some(at) = revoke_apps_at {
                    // The version bump puts each in the change feed (trigger).
                    let revoke = Self::sql(
                        "UPDATE authorizations SET revoked_at = $1, version = version + 1 \
                         WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
                    );
                    let ids: Vec<(uuid::Uuid,)> = sqlx::query_as(&revoke)
                        .bind($crate::rows::ts(at)?)
                        .bind(user.as_uuid())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(|e| db_error(e, about("authorization", "user")))?;
                    outcome.revoked = ids
                        .into_iter()
                        .map(|(id,)| keycast_core::AuthorizationId::from_uuid(id))
                        .collect();
                }
                tx.commit().await.map_err(fail)?;
                Ok(outcome)
            }

            async fn mark_email_verified(
                &self,
                user: keycast_core::UserId,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2",
                );
                let n = sqlx::query(&sql)
                    .bind($crate::rows::ts(at)?)
                    .bind(user.as_uuid())
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("user", "user")))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "user" });
                }
                Ok(())
            }

            async fn email_verified_at(
                &self,
                user: keycast_core::UserId,
            ) -> keycast_core::Result<Option<keycast_core::nostr::Timestamp>> {
                let sql = Self::sql("SELECT email_verified_at FROM users WHERE id = $1");
                let (at,): (Option<i64>,) = sqlx::query_as(&sql)
                    .bind(user.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("user", "user")))?;
                at.map($crate::rows::from_ts).transpose()
            }

            async fn insert_email_token(&self, t: &keycast_core::EmailToken) -> keycast_core::Result<()> {
                let fail = |e| db_error(e, about("email token", "user"));
                let mut tx = self.writer().begin().await.map_err(fail)?;
                // Touching the user's row first serialises concurrent issues for one user
                // on Postgres (SQLite has one writer), so exactly one code stays live.
                let lock = Self::sql("UPDATE users SET email_verified_at = email_verified_at WHERE id = $1");
                let found = sqlx::query(&lock)
                    .bind(t.user_id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected();
                if found == 0 {
                    return Err(keycast_core::Error::NotFound { what: "user" });
                }
                let sql = Self::sql(
                    "INSERT INTO email_tokens (digest, tenant_id, user_id, purpose, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                );
                sqlx::query(&sql)
                    .bind(t.digest.as_bytes().as_slice())
                    .bind(t.tenant_id.as_uuid())
                    .bind(t.user_id.as_uuid())
                    .bind(t.purpose.as_str())
                    .bind($crate::rows::ts(t.expires_at)?)
                    .bind($crate::rows::ts(t.created_at)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                let older = Self::sql(
                    "DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2 AND digest <> $3",
                );
                sqlx::query(&older)
                    .bind(t.user_id.as_uuid())
                    .bind(t.purpose.as_str())
                    .bind(t.digest.as_bytes().as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Ok(())
            }

            async fn consume_email_token(
                &self,
                digest: &keycast_core::SecretDigest,
                purpose: keycast_core::EmailPurpose,
                now: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<keycast_core::EmailToken> {
                // DELETE … RETURNING is the single-use gate: one statement, one winner.
                let sql = Self::sql(
                    "DELETE FROM email_tokens WHERE digest = $1 AND purpose = $2 RETURNING *",
                );
                let token: keycast_core::EmailToken =
                    sqlx::query_as::<_, $crate::rows::EmailTokenRow>(&sql)
                        .bind(digest.as_bytes().as_slice())
                        .bind(purpose.as_str())
                        .fetch_one(self.writer())
                        .await
                        .map_err(|e| db_error(e, about("email token", "email token")))?
                        .try_into()?;
                if now >= token.expires_at {
                    return Err(keycast_core::Error::Expired);
                }
                Ok(token)
            }

            async fn rename_key(
                &self,
                id: keycast_core::KeyId,
                name: &keycast_core::Label,
            ) -> keycast_core::Result<keycast_core::StoredKey> {
                let sql = Self::sql("UPDATE keys SET name = $1 WHERE id = $2");
                let n = sqlx::query(&sql)
                    .bind(name.as_str())
                    .bind(id.as_uuid())
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("key", "key")))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "key" });
                }
                self.get_key(id).await
            }

            async fn delete_key(&self, id: keycast_core::KeyId) -> keycast_core::Result<keycast_core::StoredKey> {
                let subject = about("key", "key");
                let fail = |e| db_error(e, subject);
                let mut tx = self.writer().begin().await.map_err(fail)?;
                // The version bump fires the change-feed trigger, so every instance hears
                // of each authorization before its row disappears.
                let revoke = Self::sql(
                    "UPDATE authorizations SET revoked_at = COALESCE(revoked_at, $1), version = version + 1 \
                     WHERE key_id = $2 OR bunker_key_id = $2",
                );
                sqlx::query(&revoke)
                    .bind($crate::rows::ts(keycast_core::nostr::Timestamp::now())?)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                // Dependents first (foreign keys); authorization_clients cascades.
                for dependents in [
                    Self::sql(
                        "DELETE FROM api_tokens WHERE authorization_id IN \
                         (SELECT id FROM authorizations WHERE key_id = $1 OR bunker_key_id = $1)",
                    ),
                    Self::sql(
                        "DELETE FROM oauth_codes WHERE authorization_id IN \
                         (SELECT id FROM authorizations WHERE key_id = $1 OR bunker_key_id = $1)",
                    ),
                ] {
                    sqlx::query(&dependents)
                        .bind(id.as_uuid())
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                let authorizations = Self::sql(
                    "DELETE FROM authorizations WHERE key_id = $1 OR bunker_key_id = $1 RETURNING bunker_key_id",
                );
                let bunkers: Vec<(uuid::Uuid,)> = sqlx::query_as(&authorizations)
                    .bind(id.as_uuid())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(fail)?;
                let delete_key = Self::sql("DELETE FROM keys WHERE id = $1");
                for (bunker,) in bunkers.iter().filter(|(b,)| b != id.as_uuid()) {
                    sqlx::query(&delete_key)
                        .bind(bunker)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                let take = Self::sql("DELETE FROM keys WHERE id = $1 RETURNING *");
                let row = sqlx::query_as::<_, $crate::rows::KeyRow>(&take)
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| match fail(e) {
                        // Only a foreign key can refuse: an authorization committed meanwhile.
                        keycast_core::Error::NotFound { .. } => keycast_core::Error::Conflict(
                            "the key got a new authorization while being deleted; retry".into(),
                        ),
                        other => other,
                    })?;
                let Some(row) = row else {
                    tx.rollback().await.map_err(fail)?;
                    return Err(keycast_core::Error::NotFound { what: "key" });
                };
                let key: keycast_core::StoredKey = row.try_into()?;
                tx.commit().await.map_err(fail)?;
                Ok(key)
            }

            async fn insert_key(&self, k: &keycast_core::StoredKey) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO keys (id, tenant_id, owner_id, kind, pubkey, name, format_version, \
                     kek_provider, kek_key_id, kek_version, wrapped_dek, nonce, ciphertext, created_at, team_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                );
                let env = &k.envelope;
                sqlx::query(&sql)
                    .bind(k.id.as_uuid())
                    .bind(k.tenant_id.as_uuid())
                    .bind(k.owner.map(|o| *o.as_uuid()))
                    .bind(k.kind.as_str())
                    .bind(k.pubkey.to_bytes().to_vec())
                    .bind(k.name.as_str())
                    .bind(i64::from(env.format_version))
                    .bind(env.wrapped_dek.kek.provider.as_str())
                    .bind(env.wrapped_dek.kek.key_id.as_str())
                    .bind(i64::from(env.wrapped_dek.kek.version))
                    .bind(env.wrapped_dek.blob.as_slice())
                    .bind(env.nonce.as_slice())
                    .bind(env.ciphertext.as_slice())
                    .bind($crate::rows::ts(k.created_at)?)
                    .bind(k.team.map(|t| *t.as_uuid()))
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("key", "tenant, owner or team")))?;
                Ok(())
            }

            async fn get_key(&self, id: keycast_core::KeyId) -> keycast_core::Result<keycast_core::StoredKey> {
                let sql = Self::sql("SELECT * FROM keys WHERE id = $1");
                sqlx::query_as::<_, $crate::rows::KeyRow>(&sql)
                    .bind(id.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("key", "key")))?
                    .try_into()
            }

            async fn list_keys(
                &self,
                tenant: keycast_core::TenantId,
                owner: Option<keycast_core::UserId>,
            ) -> keycast_core::Result<Vec<keycast_core::StoredKey>> {
                // Only the filters given (see `list_audit`).
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT * FROM keys WHERE tenant_id = ");
                qb.push_bind(*tenant.as_uuid());
                if let Some(owner) = owner {
                    qb.push(" AND owner_id = ").push_bind(*owner.as_uuid());
                }
                qb.push(" ORDER BY created_at, id");
                qb.build_query_as::<$crate::rows::KeyRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("key", "key")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn keys_not_wrapped_by(
                &self,
                current: &keycast_core::KekRef,
                after: Option<keycast_core::KeyId>,
                limit: u32,
            ) -> keycast_core::Result<Vec<keycast_core::StoredKey>> {
                // The cursor only when given (see `list_audit`): with `($4 IS NULL OR id >
                // $4)` SQLite walks the primary key from the start for every page.
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT * FROM keys WHERE NOT (kek_provider = ",
                );
                qb.push_bind(current.provider.as_str())
                    .push(" AND kek_key_id = ")
                    .push_bind(current.key_id.as_str())
                    .push(" AND kek_version = ")
                    .push_bind(i64::from(current.version))
                    .push(")");
                if let Some(after) = after {
                    qb.push(" AND id > ").push_bind(*after.as_uuid());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                qb.build_query_as::<$crate::rows::KeyRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("key", "key")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn master_keys_in_use(
                &self,
            ) -> keycast_core::Result<Vec<(keycast_core::KekRef, u64)>> {
                let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT kek_provider, kek_key_id, kek_version, COUNT(*) FROM keys \
                     GROUP BY kek_provider, kek_key_id, kek_version",
                )
                .fetch_all(self.reader())
                .await
                .map_err(|e| db_error(e, about("key", "key")))?;
                rows.into_iter()
                    .map(|(provider, key_id, version, count)| {
                        let version = u32::try_from(version).map_err(|_| {
                            keycast_core::Error::Corrupt(format!("kek_version {version}"))
                        })?;
                        Ok((
                            keycast_core::KekRef {
                                provider,
                                key_id,
                                version,
                            },
                            u64::try_from(count).unwrap_or(0),
                        ))
                    })
                    .collect()
            }

            async fn replace_wrapped_dek(
                &self,
                id: keycast_core::KeyId,
                expected: &keycast_core::KekRef,
                new: &keycast_core::Wrapped,
            ) -> keycast_core::Result<bool> {
                let sql = Self::sql(
                    "UPDATE keys SET kek_provider = $1, kek_key_id = $2, kek_version = $3, wrapped_dek = $4 \
                     WHERE id = $5 AND kek_provider = $6 AND kek_key_id = $7 AND kek_version = $8",
                );
                let replaced = sqlx::query(&sql)
                    .bind(new.kek.provider.as_str())
                    .bind(new.kek.key_id.as_str())
                    .bind(i64::from(new.kek.version))
                    .bind(new.blob.as_slice())
                    .bind(id.as_uuid())
                    .bind(expected.provider.as_str())
                    .bind(expected.key_id.as_str())
                    .bind(i64::from(expected.version))
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("key", "key")))?
                    .rows_affected()
                    == 1;
                if !replaced {
                    // Tell a lost compare-and-set from a missing key.
                    self.get_key(id).await?;
                }
                Ok(replaced)
            }

            async fn replace_key_secret(
                &self,
                k: &keycast_core::StoredKey,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<Vec<keycast_core::AuthorizationId>> {
                self.keys_replace_secret(k, at).await
            }

            async fn create_team(&self, t: &keycast_core::Team, admin: keycast_core::UserId) -> keycast_core::Result<()> {
                self.teams_create(t, admin).await
            }

            async fn get_team(&self, id: keycast_core::TeamId) -> keycast_core::Result<keycast_core::Team> {
                self.teams_get(id).await
            }

            async fn list_teams(
                &self,
                user: keycast_core::UserId,
            ) -> keycast_core::Result<Vec<(keycast_core::Team, keycast_core::TeamRole)>> {
                self.teams_of(user).await
            }

            async fn team_role(
                &self,
                team: keycast_core::TeamId,
                user: keycast_core::UserId,
            ) -> keycast_core::Result<Option<keycast_core::TeamRole>> {
                self.teams_role(team, user).await
            }

            async fn list_team_members(&self, team: keycast_core::TeamId) -> keycast_core::Result<Vec<keycast_core::TeamMember>> {
                self.teams_members(team).await
            }

            async fn set_team_member(
                &self,
                team: keycast_core::TeamId,
                user: keycast_core::UserId,
                role: keycast_core::TeamRole,
            ) -> keycast_core::Result<keycast_core::TeamMember> {
                self.teams_set_member(team, user, role).await
            }

            async fn remove_team_member(
                &self,
                team: keycast_core::TeamId,
                user: keycast_core::UserId,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<Vec<keycast_core::AuthorizationId>> {
                self.teams_remove_member(team, user, at).await
            }

            async fn list_team_keys(&self, team: keycast_core::TeamId) -> keycast_core::Result<Vec<keycast_core::StoredKey>> {
                self.teams_keys(team).await
            }

            async fn list_team_policies(&self, team: keycast_core::TeamId) -> keycast_core::Result<Vec<keycast_core::Policy>> {
                self.teams_policies(team).await
            }

            async fn list_team_authorizations(
                &self,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<Vec<keycast_core::Authorization>> {
                self.teams_authorizations(team).await
            }

            async fn insert_policy(&self, p: &keycast_core::Policy) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO policies (id, tenant_id, name, permissions, version, owner_id, team_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                );
                sqlx::query(&sql)
                    .bind(p.id.as_uuid())
                    .bind(p.tenant_id.as_uuid())
                    .bind(p.name.as_str())
                    .bind($crate::rows::permissions_json(&p.permissions)?)
                    .bind($crate::rows::count(p.version, "policy version")?)
                    .bind(p.owner.map(|o| *o.as_uuid()))
                    .bind(p.team.map(|t| *t.as_uuid()))
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("policy", "tenant, owner or team")))?;
                Ok(())
            }

            async fn list_policies(
                &self,
                tenant: keycast_core::TenantId,
                owner: Option<keycast_core::UserId>,
            ) -> keycast_core::Result<Vec<keycast_core::Policy>> {
                // Only the filters given (see `list_audit`).
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("SELECT * FROM policies WHERE tenant_id = ");
                qb.push_bind(*tenant.as_uuid());
                if let Some(owner) = owner {
                    qb.push(" AND owner_id = ").push_bind(*owner.as_uuid());
                }
                qb.push(" ORDER BY id");
                qb.build_query_as::<$crate::rows::PolicyRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("policy", "policy")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn delete_policy(&self, id: keycast_core::PolicyId) -> keycast_core::Result<()> {
                let subject = about("policy", "policy");
                let sql = Self::sql(
                    "DELETE FROM policies WHERE id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM authorizations WHERE policy_id = $1)",
                );
                let deleted = sqlx::query(&sql)
                    .bind(id.as_uuid())
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected();
                if deleted == 1 {
                    return Ok(());
                }
                self.get_policy(id).await?;
                Err(keycast_core::Error::Conflict("the policy is used by authorizations".into()))
            }

            async fn get_policy(&self, id: keycast_core::PolicyId) -> keycast_core::Result<keycast_core::Policy> {
                let sql = Self::sql("SELECT * FROM policies WHERE id = $1");
                sqlx::query_as::<_, $crate::rows::PolicyRow>(&sql)
                    .bind(id.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("policy", "policy")))?
                    .try_into()
            }

            async fn update_policy(&self, p: &keycast_core::Policy) -> keycast_core::Result<keycast_core::Policy> {
                let sql = Self::sql(
                    "UPDATE policies SET name = $1, permissions = $2, version = version + 1 \
                     WHERE id = $3 AND version = $4 AND tenant_id = $5",
                );
                let updated = sqlx::query(&sql)
                    .bind(p.name.as_str())
                    .bind($crate::rows::permissions_json(&p.permissions)?)
                    .bind(p.id.as_uuid())
                    .bind($crate::rows::count(p.version, "policy version")?)
                    .bind(p.tenant_id.as_uuid())
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("policy", "policy")))?
                    .rows_affected();
                let stored = self.get_policy(p.id).await?;
                if updated == 0 {
                    return Err(keycast_core::Error::Conflict("policy was changed concurrently".into()));
                }
                Ok(stored)
            }

            async fn insert_authorization(&self, a: &keycast_core::Authorization) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO authorizations (id, tenant_id, user_id, key_id, bunker_key_id, bunker_pubkey, \
                     connect_secret, relays, policy_id, label, expires_at, revoked_at, uses, version, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                );
                let subject = about("authorization", "tenant, user, key or policy");
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                sqlx::query(&sql)
                    .bind(a.id.as_uuid())
                    .bind(a.tenant_id.as_uuid())
                    .bind(a.user_id.as_uuid())
                    .bind(a.key_id.as_uuid())
                    .bind(a.bunker_key_id.as_uuid())
                    .bind(a.bunker_pubkey.to_bytes().to_vec())
                    .bind(a.connect_secret.map(|d| d.as_bytes().to_vec()))
                    .bind($crate::rows::relays_json(&a.relays))
                    .bind(a.policy_id.as_uuid())
                    .bind(a.label.as_str())
                    .bind($crate::rows::opt_ts(a.expires_at)?)
                    .bind($crate::rows::opt_ts(a.revoked_at)?)
                    .bind($crate::rows::count(a.uses, "use count")?)
                    .bind($crate::rows::count(a.version, "authorization version")?)
                    .bind($crate::rows::ts(a.created_at)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?;
                let add = Self::sql(
                    "INSERT INTO authorization_clients (authorization_id, client_pubkey, connected_at) \
                     VALUES ($1, $2, $3)",
                );
                for client in &a.client_pubkeys {
                    sqlx::query(&add)
                        .bind(a.id.as_uuid())
                        .bind(client.to_bytes().to_vec())
                        .bind($crate::rows::ts(a.created_at)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db_error(e, subject))?;
                }
                tx.commit().await.map_err(|e| db_error(e, subject))
            }

            async fn get_authorization(
                &self,
                id: keycast_core::AuthorizationId,
            ) -> keycast_core::Result<keycast_core::Authorization> {
                // One query: the clients come left-joined, one row each, in connect order.
                use $crate::rows::AuthorizationClientRow as Row;
                let sql = Self::sql(
                    "SELECT a.*, c.client_pubkey FROM authorizations a \
                     LEFT JOIN authorization_clients c ON c.authorization_id = a.id \
                     WHERE a.id = $1 ORDER BY c.seq",
                );
                let rows = sqlx::query_as::<_, Row>(&sql)
                    .bind(id.as_uuid())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                Row::collect(rows)
            }

            async fn find_authorization_by_bunker(
                &self,
                bunker: &keycast_core::nostr::PublicKey,
            ) -> keycast_core::Result<keycast_core::Authorization> {
                use $crate::rows::AuthorizationClientRow as Row;
                let sql = Self::sql(
                    "SELECT a.*, c.client_pubkey FROM authorizations a \
                     LEFT JOIN authorization_clients c ON c.authorization_id = a.id \
                     WHERE a.bunker_pubkey = $1 ORDER BY c.seq",
                );
                let rows = sqlx::query_as::<_, Row>(&sql)
                    .bind(bunker.to_bytes().to_vec())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                Row::collect(rows)
            }

            async fn list_authorizations(
                &self,
                tenant: keycast_core::TenantId,
                user: Option<keycast_core::UserId>,
            ) -> keycast_core::Result<Vec<keycast_core::Authorization>> {
                // Only the filters given (see `list_audit`).
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT * FROM authorizations WHERE tenant_id = ",
                );
                qb.push_bind(*tenant.as_uuid());
                if let Some(user) = user {
                    qb.push(" AND user_id = ").push_bind(*user.as_uuid());
                }
                qb.push(" ORDER BY created_at, id");
                let rows = qb
                    .build_query_as::<$crate::rows::AuthorizationRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                self.with_clients(rows).await
            }

            async fn list_active_authorizations(
                &self,
                now: keycast_core::nostr::Timestamp,
                after: Option<keycast_core::AuthorizationId>,
                limit: u32,
            ) -> keycast_core::Result<Vec<keycast_core::Authorization>> {
                // Pages walk the primary key in order. `+revoked_at` keeps SQLite off the
                // (revoked_at, expires_at) index, which would sort every active row again
                // for each page; an `OR` on the cursor would do the same.
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT * FROM authorizations WHERE +revoked_at IS NULL \
                     AND (expires_at IS NULL OR expires_at > ",
                );
                qb.push_bind($crate::rows::ts(now)?).push(")");
                if let Some(after) = after {
                    qb.push(" AND id > ").push_bind(*after.as_uuid());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                let rows = qb
                    .build_query_as::<$crate::rows::AuthorizationRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                self.with_clients(rows).await
            }

            async fn revoke_authorization(
                &self,
                id: keycast_core::AuthorizationId,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<keycast_core::Authorization> {
                self.revoke(id, at, None).await
            }

            async fn revoke_authorization_of(
                &self,
                tenant: keycast_core::TenantId,
                user: keycast_core::UserId,
                id: keycast_core::AuthorizationId,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<keycast_core::Authorization> {
                self.revoke(id, at, Some((tenant, user))).await
            }

            async fn redeem_connect_secret(
                &self,
                id: keycast_core::AuthorizationId,
                secret: &keycast_core::SecretDigest,
                client: keycast_core::nostr::PublicKey,
            ) -> keycast_core::Result<keycast_core::Authorization> {
                let subject = about("authorization", "authorization");
                let client_bytes = client.to_bytes().to_vec();
                let connected = Self::sql(
                    "SELECT authorization_id, client_pubkey FROM authorization_clients \
                     WHERE authorization_id = $1 AND client_pubkey = $2",
                );
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                let already = sqlx::query(&connected)
                    .bind(id.as_uuid())
                    .bind(client_bytes.as_slice())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .is_some();
                if !already {
                    // Clearing the secret is the single-use gate: one statement, one winner.
                    let take = Self::sql(
                        "UPDATE authorizations SET connect_secret = NULL, version = version + 1 \
                         WHERE id = $1 AND connect_secret = $2",
                    );
                    let won = sqlx::query(&take)
                        .bind(id.as_uuid())
                        .bind(secret.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db_error(e, subject))?
                        .rows_affected()
                        == 1;
                    if won {
                        let add = Self::sql(
                            "INSERT INTO authorization_clients (authorization_id, client_pubkey, connected_at) \
                             VALUES ($1, $2, $3)",
                        );
                        sqlx::query(&add)
                            .bind(id.as_uuid())
                            .bind(client_bytes.as_slice())
                            .bind($crate::rows::ts(keycast_core::nostr::Timestamp::now())?)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| db_error(e, subject))?;
                    } else {
                        // Lost: unknown authorization, wrong or used secret, or this same
                        // client connected concurrently (then it is an idempotent success).
                        tx.rollback().await.map_err(|e| db_error(e, subject))?;
                        let now = self.get_authorization(id).await?;
                        if now.has_client(&client) {
                            return Ok(now);
                        }
                        return Err(keycast_core::Error::Conflict(
                            "connect secret is wrong or already used".into(),
                        ));
                    }
                }
                tx.commit().await.map_err(|e| db_error(e, subject))?;
                self.get_authorization(id).await
            }

            async fn remove_client(
                &self,
                id: keycast_core::AuthorizationId,
                client: &keycast_core::nostr::PublicKey,
            ) -> keycast_core::Result<bool> {
                let subject = about("authorization", "authorization");
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                let bump = Self::sql("UPDATE authorizations SET version = version + 1 WHERE id = $1");
                let exists = sqlx::query(&bump)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected()
                    == 1;
                if !exists {
                    return Err(keycast_core::Error::NotFound { what: "authorization" });
                }
                let delete = Self::sql(
                    "DELETE FROM authorization_clients WHERE authorization_id = $1 AND client_pubkey = $2",
                );
                let removed = sqlx::query(&delete)
                    .bind(id.as_uuid())
                    .bind(client.to_bytes().to_vec())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected()
                    > 0;
                if removed {
                    tx.commit().await.map_err(|e| db_error(e, subject))?;
                } else {
                    // Nothing changed: undo the version bump.
                    tx.rollback().await.map_err(|e| db_error(e, subject))?;
                }
                Ok(removed)
            }

            async fn try_consume_use(&self, id: keycast_core::AuthorizationId, max: u64) -> keycast_core::Result<bool> {
                let subject = about("authorization", "authorization");
                let sql = Self::sql("UPDATE authorizations SET uses = uses + 1 WHERE id = $1 AND uses < $2");
                let max = i64::try_from(max).unwrap_or(i64::MAX);
                let took = sqlx::query(&sql)
                    .bind(id.as_uuid())
                    .bind(max)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected()
                    == 1;
                if !took {
                    // Tell an exhausted counter from a missing authorization.
                    self.get_authorization(id).await?;
                }
                Ok(took)
            }

            async fn insert_token(&self, t: &keycast_core::ApiToken) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO api_tokens (digest, tenant_id, authorization_id, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                );
                sqlx::query(&sql)
                    .bind(t.digest.as_bytes().as_slice())
                    .bind(t.tenant_id.as_uuid())
                    .bind(t.authorization_id.as_uuid())
                    .bind($crate::rows::opt_ts(t.expires_at)?)
                    .bind($crate::rows::ts(t.created_at)?)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("token", "authorization")))?;
                Ok(())
            }

            async fn find_token(&self, digest: &keycast_core::SecretDigest) -> keycast_core::Result<keycast_core::ApiToken> {
                let sql = Self::sql("SELECT * FROM api_tokens WHERE digest = $1");
                sqlx::query_as::<_, $crate::rows::TokenRow>(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("token", "token")))?
                    .try_into()
            }

            async fn insert_oauth_code(&self, c: &keycast_core::OAuthCode) -> keycast_core::Result<()> {
                let sql = Self::sql(
                    "INSERT INTO oauth_codes (digest, tenant_id, user_id, authorization_id, client_id, \
                     redirect_uri, code_challenge, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                );
                sqlx::query(&sql)
                    .bind(c.digest.as_bytes().as_slice())
                    .bind(c.tenant_id.as_uuid())
                    .bind(c.user_id.as_uuid())
                    .bind(c.authorization_id.as_uuid())
                    .bind(c.client_id.as_str())
                    .bind(c.redirect_uri.as_str())
                    .bind(c.code_challenge.as_str())
                    .bind($crate::rows::ts(c.expires_at)?)
                    .bind($crate::rows::ts(c.created_at)?)
                    .execute(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("oauth code", "authorization")))?;
                Ok(())
            }

            async fn consume_oauth_code(
                &self,
                digest: &keycast_core::SecretDigest,
                now: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<keycast_core::OAuthCode> {
                // DELETE … RETURNING is the single-use gate: one statement, one winner.
                let sql = Self::sql("DELETE FROM oauth_codes WHERE digest = $1 RETURNING *");
                let code: keycast_core::OAuthCode = sqlx::query_as::<_, $crate::rows::OAuthCodeRow>(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_one(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("oauth code", "oauth code")))?
                    .try_into()?;
                if now >= code.expires_at {
                    return Err(keycast_core::Error::Expired);
                }
                Ok(code)
            }

            async fn append_audit(&self, records: &[keycast_core::AuditRecord]) -> keycast_core::Result<()> {
                if records.is_empty() {
                    return Ok(());
                }
                let Some(spool) = self.audit_spool() else {
                    return self.insert_audit(&$crate::audit_spool::AuditValues::direct(records)?).await;
                };
                // While anything waits in the spool the database is taken to be down: the
                // drain task alone probes it, so no caller waits on it again.
                if !spool.pending() {
                    match self.insert_audit(&$crate::audit_spool::AuditValues::direct(records)?).await {
                        Err(keycast_core::Error::Unavailable(why)) => {
                            tracing::warn!(reason = %why, count = records.len(), "database unavailable: audit records go to the local spool");
                        }
                        other => return other,
                    }
                }
                spool.append(records).await?;
                self.wake_drain();
                Ok(())
            }

            async fn changes_since(
                &self,
                after: u64,
                limit: u32,
            ) -> keycast_core::Result<Vec<keycast_core::Change>> {
                let sql = Self::sql(
                    "SELECT seq, entity, entity_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                );
                sqlx::query_as::<_, $crate::rows::ChangeRow>(&sql)
                    .bind(i64::try_from(after).unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("change", "change")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn latest_change(&self) -> keycast_core::Result<u64> {
                let sql = Self::sql("SELECT MAX(seq) FROM changes");
                let (max,): (Option<i64>,) = sqlx::query_as(&sql)
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("change", "change")))?;
                Ok(max.map_or(0, |m| u64::try_from(m).unwrap_or(0)))
            }

            async fn authorization_activity(
                &self,
                id: keycast_core::AuthorizationId,
            ) -> keycast_core::Result<keycast_core::Activity> {
                let sql = Self::sql(
                    "SELECT MAX(at) AS last_at, \
                     COALESCE(SUM(CASE WHEN method = 'sign_event' AND outcome = 'allowed' THEN 1 ELSE 0 END), 0) AS signatures \
                     FROM audit_log WHERE authorization_id = $1",
                );
                let (last_at, signatures): (Option<i64>, i64) = sqlx::query_as(&sql)
                    .bind(id.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("audit record", "authorization")))?;
                $crate::rows::activity(last_at, signatures)
            }

            async fn list_audit(
                &self,
                f: &keycast_core::AuditFilter,
            ) -> keycast_core::Result<Vec<keycast_core::AuditRecord>> {
                // Only the filters given: `($2 IS NULL OR key_id = $2)` keeps SQLite off
                // the key and authorization indexes, so one user's list read every row of
                // the tenant (all of them, with one tenant).
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit_log WHERE tenant_id = ");
                qb.push_bind(*f.tenant_id.as_uuid());
                if let Some(key) = f.key_id {
                    qb.push(" AND key_id = ").push_bind(*key.as_uuid());
                }
                if let Some(authorization) = f.authorization_id {
                    qb.push(" AND authorization_id = ")
                        .push_bind(*authorization.as_uuid());
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(f.limit));
                qb.build_query_as::<$crate::rows::AuditRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("audit record", "audit record")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }
        }

        impl $store {
            /// Revokes `id` (only if it is `owner`'s, when given) in one statement: the row
            /// and its clients come back from the write (each store's
            /// `REVOKE_AUTHORIZATION`). Only one already revoked, another's or missing is
            /// read again.
            async fn revoke(
                &self,
                id: keycast_core::AuthorizationId,
                at: keycast_core::nostr::Timestamp,
                owner: Option<(keycast_core::TenantId, keycast_core::UserId)>,
            ) -> keycast_core::Result<keycast_core::Authorization> {
                let sql = Self::sql(Self::REVOKE_AUTHORIZATION);
                let row = sqlx::query_as::<_, $crate::rows::AuthorizationClientsRow>(&sql)
                    .bind($crate::rows::ts(at)?)
                    .bind(id.as_uuid())
                    .bind(owner.map(|(t, _)| *t.as_uuid()))
                    .bind(owner.map(|(_, u)| *u.as_uuid()))
                    .fetch_optional(self.writer())
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                if let Some(row) = row {
                    return row.into_domain();
                }
                let a = keycast_core::KeyStore::get_authorization(self, id).await?;
                match owner {
                    Some((t, u)) if a.tenant_id != t || a.user_id != u => {
                        Err(keycast_core::Error::NotFound {
                            what: "authorization",
                        })
                    }
                    _ => Ok(a),
                }
            }

            /// Attaches connected clients to authorization rows with one extra query.
            async fn with_clients(
                &self,
                rows: Vec<$crate::rows::AuthorizationRow>,
            ) -> keycast_core::Result<Vec<keycast_core::Authorization>> {
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                // One connection for every chunk: sqlx pings each connection given back.
                let mut conn = self
                    .reader()
                    .acquire()
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                // Chunked so the bind count stays far below every driver's limit.
                let mut clients: Vec<$crate::rows::ClientRow> = Vec::new();
                for chunk in rows.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT authorization_id, client_pubkey FROM authorization_clients \
                         WHERE authorization_id IN (",
                    );
                    let mut ids = qb.separated(", ");
                    for r in chunk {
                        ids.push_bind(r.id);
                    }
                    qb.push(") ORDER BY seq");
                    clients.extend(
                        qb.build_query_as::<$crate::rows::ClientRow>()
                            .fetch_all(&mut *conn)
                            .await
                            .map_err(|e| db_error(e, about("authorization", "authorization")))?,
                    );
                }
                rows.into_iter().map(|r| r.into_domain(&clients)).collect()
            }
        }
    };
}

pub(crate) use impl_key_store;
