-- The host names each tenant is served at (the HTTP Host header without its port). A host
-- belongs to one tenant; a tenant may have several.

CREATE TABLE tenant_hosts (
    host       TEXT    NOT NULL PRIMARY KEY CHECK (length(host) BETWEEN 1 AND 255),
    tenant_id  BLOB    NOT NULL REFERENCES tenants (id),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX tenant_hosts_by_tenant ON tenant_hosts (tenant_id);
