-- Business events applied once per eventId, with the communications they led to.
CREATE TABLE inbound_event (
    tenant_id         text NOT NULL,
    event_id          text NOT NULL,
    event_type        text NOT NULL,
    occurred_at       timestamptz NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    communication_ids uuid[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, event_id)
);
-- The dedupe window looks for recent communications of a recipient about a subject.
CREATE INDEX communication_record_recent ON communication_record (tenant_id, recipient_ref, communication_type, subject_id, requested_at);
