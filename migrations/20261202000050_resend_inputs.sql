-- What a resend needs of a communication whose delivery job ended: the job erases its render
-- payload and raw address at a final state, and writes them here in the same transaction,
-- sealed together with the keyring (AES-256-GCM, under the key key_id names; `herald keys
-- rotate` moves them to the current key), kept until kept_until (`delivery.resend_window`
-- after the end), then deleted by the delivery's sweep. No plaintext of either lands here.
CREATE TABLE resend_input (
    communication_id uuid PRIMARY KEY REFERENCES communication_record (communication_id),
    key_id           text NOT NULL,
    nonce            bytea NOT NULL,
    ciphertext       bytea NOT NULL,
    kept_until       timestamptz NOT NULL
);

-- The sweep deletes the expired rows in batches, oldest first.
CREATE INDEX resend_input_kept_until ON resend_input (kept_until);
