-- A stored answer may carry a secret (a webhook subscription's signing secret, shown once): with
-- a keyring configured, herald keeps the answer sealed, under the key that response_key_id
-- names (response_body then holds the ciphertext).
ALTER TABLE api_idempotency ADD COLUMN response_key_id text;
ALTER TABLE api_idempotency ADD COLUMN response_nonce bytea;
ALTER TABLE api_idempotency ADD CONSTRAINT api_idempotency_sealed_whole
    CHECK ((response_key_id IS NULL) = (response_nonce IS NULL));
