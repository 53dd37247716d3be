-- The history list of a tenant, newest first, in keyset pages (src/ledger/listing.rs).
CREATE INDEX communication_record_history
    ON communication_record (tenant_id, created_at DESC, communication_id DESC);
-- A record's resends (and replays), shown in its history.
CREATE INDEX communication_record_resend_of
    ON communication_record (resend_of) WHERE resend_of IS NOT NULL;
