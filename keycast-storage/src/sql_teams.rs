//! Team queries and key replacement, expanded into each sqlx backend by
//! [`crate::sql_store`] (which delegates the `KeyStore` methods here).
//!
//! Membership changes first touch the team row (`UPDATE teams SET name = name`): on
//! Postgres that row lock serialises concurrent changes to one team, so two admins
//! demoting each other cannot leave it without one; SQLite has a single writer anyway.

macro_rules! impl_team_queries {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn lock_team(
                tx: &mut sqlx::Transaction<'_, $db>,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<()> {
                let sql = Self::sql("UPDATE teams SET name = name WHERE id = $1");
                let n = sqlx::query(&sql)
                    .bind(team.as_uuid())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| db_error(e, about("team", "team")))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "team" });
                }
                Ok(())
            }

            /// The ids a revoking `UPDATE … RETURNING id` gave back.
            fn revoked_ids(
                rows: Result<Vec<(uuid::Uuid,)>, sqlx::Error>,
            ) -> keycast_core::Result<Vec<keycast_core::AuthorizationId>> {
                Ok(rows
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?
                    .into_iter()
                    .map(|(id,)| keycast_core::AuthorizationId::from_uuid(id))
                    .collect())
            }

            async fn admins_left(
                tx: &mut sqlx::Transaction<'_, $db>,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<bool> {
                let sql = Self::sql(
                    "SELECT COUNT(*) FROM team_members WHERE team_id = $1 AND role = 'admin'",
                );
                let (n,): (i64,) = sqlx::query_as(&sql)
                    .bind(team.as_uuid())
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(|e| db_error(e, about("team member", "team")))?;
                Ok(n > 0)
            }

            async fn teams_create(
                &self,
                t: &keycast_core::Team,
                admin: keycast_core::UserId,
            ) -> keycast_core::Result<()> {
                let subject = about("team", "tenant");
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                let sql = Self::sql(
                    "INSERT INTO teams (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)",
                );
                sqlx::query(&sql)
                    .bind(t.id.as_uuid())
                    .bind(t.tenant_id.as_uuid())
                    .bind(t.name.as_str())
                    .bind($crate::rows::ts(t.created_at)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?;
                let sql = Self::sql(
                    "INSERT INTO team_members (team_id, user_id, role, added_at) \
                     SELECT $1, id, 'admin', $2 FROM users WHERE id = $3 AND tenant_id = $4",
                );
                let n = sqlx::query(&sql)
                    .bind(t.id.as_uuid())
                    .bind($crate::rows::ts(t.created_at)?)
                    .bind(admin.as_uuid())
                    .bind(t.tenant_id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, about("team member", "team or user")))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "user" });
                }
                tx.commit().await.map_err(|e| db_error(e, subject))?;
                Ok(())
            }

            async fn teams_get(&self, id: keycast_core::TeamId) -> keycast_core::Result<keycast_core::Team> {
                let sql = Self::sql("SELECT * FROM teams WHERE id = $1");
                sqlx::query_as::<_, $crate::rows::TeamRow>(&sql)
                    .bind(id.as_uuid())
                    .fetch_one(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("team", "team")))?
                    .try_into()
            }

            async fn teams_of(
                &self,
                user: keycast_core::UserId,
            ) -> keycast_core::Result<Vec<(keycast_core::Team, keycast_core::TeamRole)>> {
                let sql = Self::sql(
                    "SELECT t.id, t.tenant_id, t.name, t.created_at, m.role FROM teams t \
                     JOIN team_members m ON m.team_id = t.id WHERE m.user_id = $1 ORDER BY t.name, t.id",
                );
                sqlx::query_as::<_, $crate::rows::TeamWithRoleRow>(&sql)
                    .bind(user.as_uuid())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("team", "team")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn teams_role(
                &self,
                team: keycast_core::TeamId,
                user: keycast_core::UserId,
            ) -> keycast_core::Result<Option<keycast_core::TeamRole>> {
                let sql = Self::sql("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2");
                let role: Option<(String,)> = sqlx::query_as(&sql)
                    .bind(team.as_uuid())
                    .bind(user.as_uuid())
                    .fetch_optional(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("team member", "team")))?;
                role.map(|(r,)| {
                    keycast_core::TeamRole::parse(&r)
                        .map_err(|_| keycast_core::Error::Corrupt("stored team role is invalid".into()))
                })
                .transpose()
            }

            async fn teams_members(
                &self,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<Vec<keycast_core::TeamMember>> {
                let sql = Self::sql(
                    "SELECT * FROM team_members WHERE team_id = $1 ORDER BY added_at, user_id",
                );
                sqlx::query_as::<_, $crate::rows::TeamMemberRow>(&sql)
                    .bind(team.as_uuid())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("team member", "team")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn teams_set_member(
                &self,
                team: keycast_core::TeamId,
                user: keycast_core::UserId,
                role: keycast_core::TeamRole,
            ) -> keycast_core::Result<keycast_core::TeamMember> {
                let subject = about("team member", "team or user");
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                Self::lock_team(&mut tx, team).await?;
                let sql = Self::sql(
                    "INSERT INTO team_members (team_id, user_id, role, added_at) \
                     SELECT t.id, u.id, $3, $4 FROM teams t JOIN users u ON u.tenant_id = t.tenant_id \
                     WHERE t.id = $1 AND u.id = $2 \
                     ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
                );
                let n = sqlx::query(&sql)
                    .bind(team.as_uuid())
                    .bind(user.as_uuid())
                    .bind(role.as_str())
                    .bind($crate::rows::ts(keycast_core::nostr::Timestamp::now())?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "user" });
                }
                if !Self::admins_left(&mut tx, team).await? {
                    return Err(keycast_core::Error::Conflict("a team needs at least one admin".into()));
                }
                let sql = Self::sql("SELECT * FROM team_members WHERE team_id = $1 AND user_id = $2");
                let member: keycast_core::TeamMember = sqlx::query_as::<_, $crate::rows::TeamMemberRow>(&sql)
                    .bind(team.as_uuid())
                    .bind(user.as_uuid())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .try_into()?;
                tx.commit().await.map_err(|e| db_error(e, subject))?;
                Ok(member)
            }

            async fn teams_remove_member(
                &self,
                team: keycast_core::TeamId,
                user: keycast_core::UserId,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<Vec<keycast_core::AuthorizationId>> {
                let subject = about("team member", "team");
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                Self::lock_team(&mut tx, team).await?;
                let sql = Self::sql("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2");
                let n = sqlx::query(&sql)
                    .bind(team.as_uuid())
                    .bind(user.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "team member" });
                }
                if !Self::admins_left(&mut tx, team).await? {
                    return Err(keycast_core::Error::Conflict("a team needs at least one admin".into()));
                }
                // The version bump puts each one in the change feed.
                let sql = Self::sql(
                    "UPDATE authorizations SET revoked_at = $1, version = version + 1 \
                     WHERE user_id = $2 AND revoked_at IS NULL \
                     AND key_id IN (SELECT id FROM keys WHERE team_id = $3) RETURNING id",
                );
                let revoked = Self::revoked_ids(
                    sqlx::query_as(&sql)
                        .bind($crate::rows::ts(at)?)
                        .bind(user.as_uuid())
                        .bind(team.as_uuid())
                        .fetch_all(&mut *tx)
                        .await,
                )?;
                tx.commit().await.map_err(|e| db_error(e, subject))?;
                Ok(revoked)
            }

            async fn teams_keys(
                &self,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<Vec<keycast_core::StoredKey>> {
                let sql = Self::sql("SELECT * FROM keys WHERE team_id = $1 ORDER BY created_at, id");
                sqlx::query_as::<_, $crate::rows::KeyRow>(&sql)
                    .bind(team.as_uuid())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("key", "key")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn teams_policies(
                &self,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<Vec<keycast_core::Policy>> {
                let sql = Self::sql("SELECT * FROM policies WHERE team_id = $1 ORDER BY id");
                sqlx::query_as::<_, $crate::rows::PolicyRow>(&sql)
                    .bind(team.as_uuid())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("policy", "policy")))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn teams_authorizations(
                &self,
                team: keycast_core::TeamId,
            ) -> keycast_core::Result<Vec<keycast_core::Authorization>> {
                let sql = Self::sql(
                    "SELECT a.* FROM authorizations a JOIN keys k ON k.id = a.key_id \
                     WHERE k.team_id = $1 ORDER BY a.created_at, a.id",
                );
                let rows = sqlx::query_as::<_, $crate::rows::AuthorizationRow>(&sql)
                    .bind(team.as_uuid())
                    .fetch_all(self.reader())
                    .await
                    .map_err(|e| db_error(e, about("authorization", "authorization")))?;
                self.with_clients(rows).await
            }

            async fn keys_replace_secret(
                &self,
                k: &keycast_core::StoredKey,
                at: keycast_core::nostr::Timestamp,
            ) -> keycast_core::Result<Vec<keycast_core::AuthorizationId>> {
                let subject = about("key", "key");
                let mut tx = self.writer().begin().await.map_err(|e| db_error(e, subject))?;
                let env = &k.envelope;
                let sql = Self::sql(
                    "UPDATE keys SET pubkey = $1, format_version = $2, kek_provider = $3, kek_key_id = $4, \
                     kek_version = $5, wrapped_dek = $6, nonce = $7, ciphertext = $8 \
                     WHERE id = $9 AND tenant_id = $10 AND kind = 'user'",
                );
                let n = sqlx::query(&sql)
                    .bind(k.pubkey.to_bytes().to_vec())
                    .bind(i64::from(env.format_version))
                    .bind(env.wrapped_dek.kek.provider.as_str())
                    .bind(env.wrapped_dek.kek.key_id.as_str())
                    .bind(i64::from(env.wrapped_dek.kek.version))
                    .bind(env.wrapped_dek.blob.as_slice())
                    .bind(env.nonce.as_slice())
                    .bind(env.ciphertext.as_slice())
                    .bind(k.id.as_uuid())
                    .bind(k.tenant_id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(e, subject))?
                    .rows_affected();
                if n == 0 {
                    return Err(keycast_core::Error::NotFound { what: "key" });
                }
                let sql = Self::sql(
                    "UPDATE authorizations SET revoked_at = $1, version = version + 1 \
                     WHERE key_id = $2 AND revoked_at IS NULL RETURNING id",
                );
                let revoked = Self::revoked_ids(
                    sqlx::query_as(&sql)
                        .bind($crate::rows::ts(at)?)
                        .bind(k.id.as_uuid())
                        .fetch_all(&mut *tx)
                        .await,
                )?;
                tx.commit().await.map_err(|e| db_error(e, subject))?;
                Ok(revoked)
            }
        }
    };
}

pub(crate) use impl_team_queries;
