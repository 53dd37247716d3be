-- API credentials per tenant (issue 14): only the SHA-256 of a key is kept. A platform key has
-- no tenant and acts for the tenant a request names in its Herald-Tenant header.
CREATE TABLE api_key (
    key_id       uuid PRIMARY KEY,
    tenant_id    text,
    platform     boolean NOT NULL DEFAULT false,
    name         text NOT NULL,
    scopes       text[] NOT NULL,
    -- The visible start of the key (environment and a few characters), to tell keys apart.
    hint         text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_key_tenant_or_platform CHECK (platform = (tenant_id IS NULL)),
    CONSTRAINT api_key_scopes CHECK (
        cardinality(scopes) > 0
        AND scopes <@ ARRAY['send', 'read', 'operate', 'admin']::text[]),
    CONSTRAINT api_key_hash_length CHECK (octet_length(secret_hash) = 32)
);
CREATE INDEX api_key_by_tenant ON api_key (tenant_id, created_at);

-- Every state-changing call of an authenticated caller, append-only.
CREATE TABLE api_audit (
    audit_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    credential_kind text NOT NULL CHECK (credential_kind IN ('API_KEY', 'JWT')),
    key_id          uuid,
    subject         text,
    tenant_id       text,
    platform        boolean NOT NULL,
    method          text NOT NULL,
    route           text NOT NULL,
    target_id       text,
    idempotency_key text,
    status          integer NOT NULL,
    CONSTRAINT api_audit_credential CHECK (
        (credential_kind = 'API_KEY' AND key_id IS NOT NULL)
        OR (credential_kind = 'JWT' AND subject IS NOT NULL))
);
CREATE INDEX api_audit_by_tenant ON api_audit (tenant_id, at);

CREATE FUNCTION api_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api_audit is append-only';
END;
$$;
CREATE TRIGGER api_audit_no_change BEFORE UPDATE OR DELETE ON api_audit
    FOR EACH ROW EXECUTE FUNCTION api_audit_append_only();
CREATE TRIGGER api_audit_no_truncate BEFORE TRUNCATE ON api_audit
    FOR EACH STATEMENT EXECUTE FUNCTION api_audit_append_only();
