-- The provider callbacks that change state (Postmark's feedback, under its basic credentials) are
-- audited too: credential kind PROVIDER, the provider's name as the subject.
ALTER TABLE api_audit DROP CONSTRAINT api_audit_credential_kind_check;
ALTER TABLE api_audit DROP CONSTRAINT api_audit_credential;
ALTER TABLE api_audit ADD CONSTRAINT api_audit_credential_kinds CHECK (
    (credential_kind = 'API_KEY' AND key_id IS NOT NULL)
    OR (credential_kind IN ('JWT', 'PROVIDER') AND subject IS NOT NULL));
