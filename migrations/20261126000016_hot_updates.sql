-- A communication's status changes twice per send (SENDING, then its outcome). The index on
-- (status, updated_at) served no query and made every such change rewrite all of the record's
-- indexes; without it, and with room left on each page, those changes are HOT updates.
DROP INDEX communication_record_status;
ALTER TABLE communication_record SET (fillfactor = 85);
ALTER TABLE delivery_job SET (fillfactor = 80);

-- Dedupe windows, rate limits and alert groups look for a recipient's recent communications:
-- an index, not a scan of the whole ledger.
CREATE INDEX communication_record_recipient ON communication_record (tenant_id, recipient_ref, requested_at);
