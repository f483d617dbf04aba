-- E-mail flows: when an account proved its address, and the single-use tokens mailed to it
-- (stored by SHA-256 digest, like every other bearer secret).

ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

CREATE TABLE email_tokens (
    digest     BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(digest) = 32),
    tenant_id  UUID   NOT NULL REFERENCES tenants (id),
    user_id    UUID   NOT NULL REFERENCES users (id),
    purpose    TEXT   NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'confirm_export')),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);
