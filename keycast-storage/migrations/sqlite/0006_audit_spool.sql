-- Audit records written to a local spool while the database was unreachable carry the id
-- they were spooled under, so moving a spool in twice (a crash between the insert and the
-- spool's removal) stores each record once.

ALTER TABLE audit_log ADD COLUMN spool_id BLOB;
CREATE UNIQUE INDEX audit_by_spool_id ON audit_log (spool_id);
