-- A foreign artifact is no longer told apart from a missing one: the index that looked an id up
-- across tenants has nothing left to serve.
DROP INDEX IF EXISTS artifact_id;
