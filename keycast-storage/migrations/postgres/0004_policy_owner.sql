-- Policies made by an account over HTTP belong to it; operators' policies have no owner.

ALTER TABLE policies ADD COLUMN owner_id UUID REFERENCES users (id);
CREATE INDEX policies_by_owner ON policies (tenant_id, owner_id);
