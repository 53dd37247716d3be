-- Provider feedback on sent email: bounces, complaints, unsubscribes, deliveries, opens, clicks.
CREATE TABLE communication_feedback (
    feedback_id       text PRIMARY KEY,          -- the provider's event id: applied once
    communication_id  uuid REFERENCES communication_record (communication_id),  -- NULL: unmatched, kept for operators
    tenant_id         text,
    source            text NOT NULL,             -- 'herald' (documented form) or 'postmark'
    kind              text NOT NULL,
    occurred_at       timestamptz NOT NULL,
    detail            text,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX communication_feedback_comm ON communication_feedback (communication_id);

ALTER TABLE communication_delivery_attempt ADD COLUMN feedback text;
ALTER TABLE communication_delivery_attempt ADD COLUMN feedback_at timestamptz;
