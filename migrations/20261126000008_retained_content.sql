-- Message bodies kept for templates whose retention policy says so, encrypted (AES-256-GCM).
CREATE TABLE communication_content (
    communication_id uuid PRIMARY KEY REFERENCES communication_record (communication_id),
    nonce            bytea NOT NULL,
    ciphertext       bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
