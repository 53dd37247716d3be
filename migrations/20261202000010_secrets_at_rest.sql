-- Secrets at rest: every ciphertext records the id of the key it was sealed under (the
-- keyring of HERALD_KEYS__ENCRYPTION; `herald keys rotate` moves it to the current key).

-- Bodies sealed before key ids existed were sealed with HERALD_CONTENT__KEY, the key the ring
-- calls 'content' (the default is that key's id, for rows a herald of the earlier version
-- writes during an upgrade; this version always names the key).
ALTER TABLE communication_content ADD COLUMN key_id text NOT NULL DEFAULT 'content';

-- Webhook signing secrets, sealed (key id, nonce, ciphertext of the whsec_ string). The
-- plaintext columns are read only for rows written before this version, and emptied when
-- herald encrypts them (at start with a key configured, or by `herald keys rotate`).
ALTER TABLE webhook_subscription
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN secret_key_id text,
    ADD COLUMN secret_nonce bytea,
    ADD COLUMN secret_ciphertext bytea,
    ADD COLUMN previous_secret_key_id text,
    ADD COLUMN previous_secret_nonce bytea,
    ADD COLUMN previous_secret_ciphertext bytea,
    ADD CONSTRAINT webhook_subscription_secret_form CHECK (
        (secret IS NULL) <> (secret_ciphertext IS NULL)
        AND (secret_ciphertext IS NULL) = (secret_key_id IS NULL)
        AND (secret_ciphertext IS NULL) = (secret_nonce IS NULL)
        AND NOT (previous_secret IS NOT NULL AND previous_secret_ciphertext IS NOT NULL)
        AND (previous_secret_ciphertext IS NULL) = (previous_secret_key_id IS NULL)
        AND (previous_secret_ciphertext IS NULL) = (previous_secret_nonce IS NULL)
    );

-- In-app notifications of templates that keep bodies encrypted: title and bodies sealed
-- together (title, body_text and body_html are then empty).
ALTER TABLE inbox_notification
    ADD COLUMN body_key_id text,
    ADD COLUMN body_nonce bytea,
    ADD COLUMN body_ciphertext bytea,
    ADD CONSTRAINT inbox_notification_body_form CHECK (
        (body_ciphertext IS NULL) = (body_key_id IS NULL)
        AND (body_ciphertext IS NULL) = (body_nonce IS NULL)
    );

-- Senders hear of a change of the sealed secrets as they heard of the plaintext ones (a
-- rotation, a re-encryption under another key).
DROP TRIGGER webhook_subscription_changed ON webhook_subscription;
CREATE TRIGGER webhook_subscription_changed AFTER UPDATE ON webhook_subscription FOR EACH ROW
    WHEN (OLD.endpoint_url IS DISTINCT FROM NEW.endpoint_url
          OR OLD.secret IS DISTINCT FROM NEW.secret
          OR OLD.secret_ciphertext IS DISTINCT FROM NEW.secret_ciphertext
          OR OLD.previous_secret IS DISTINCT FROM NEW.previous_secret
          OR OLD.previous_secret_ciphertext IS DISTINCT FROM NEW.previous_secret_ciphertext
          OR OLD.previous_secret_until IS DISTINCT FROM NEW.previous_secret_until
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.rate_limit_per_s IS DISTINCT FROM NEW.rate_limit_per_s
          OR OLD.circuit_open_until IS DISTINCT FROM NEW.circuit_open_until
          OR (OLD.consecutive_failures = 0 AND NEW.consecutive_failures > 0))
    EXECUTE FUNCTION herald_subscription_changed();
