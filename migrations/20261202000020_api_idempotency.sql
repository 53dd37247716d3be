-- The HTTP Idempotency-Key of the API's POST commands (draft-ietf-httpapi-idempotency-key-header;
-- src/api/idempotency.rs): per tenant and key, the fingerprint of the first request and, once it
-- ran, its response, replayed byte for byte to a retry. A row is IN_FLIGHT while its request runs
-- (the herald that runs it renews `lease_until`; a herald that crashed mid-way stops renewing, and
-- after the lease a retry with the same fingerprint takes the key over) and DONE with the
-- response. A request that failed with a 5xx (or was refused before it ran) leaves no row. Rows
-- past `expires_at` count as unknown: the key may be used again, and they are purged.
CREATE TABLE api_idempotency (
    tenant_id text NOT NULL,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- SHA-256 of the method, the path with its query and the body bytes
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 32),
    state text NOT NULL CHECK (state IN ('IN_FLIGHT', 'DONE')),
    -- the claim of the request running now (IN_FLIGHT): only it stores or releases the row
    claim_id uuid,
    lease_until timestamptz,
    -- the stored response (DONE)
    response_status smallint CHECK (response_status BETWEEN 100 AND 599),
    response_content_type text,
    response_body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key),
    CONSTRAINT api_idempotency_state_parts CHECK (
        (state = 'IN_FLIGHT' AND claim_id IS NOT NULL AND lease_until IS NOT NULL
            AND response_status IS NULL AND response_body IS NULL)
        OR (state = 'DONE' AND claim_id IS NULL AND lease_until IS NULL
            AND response_status IS NOT NULL AND response_body IS NOT NULL)
    ),
    CHECK (expires_at > created_at)
);

CREATE INDEX api_idempotency_expires ON api_idempotency (expires_at);
