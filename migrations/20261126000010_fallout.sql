-- A critical communication that failed for good raises fallout once: the relay writes the
-- signal with the outbox event it publishes; the fallout loop applies the rules to it.
CREATE TABLE fallout_signal (
    communication_id  uuid PRIMARY KEY REFERENCES communication_record (communication_id),
    tenant_id         text NOT NULL,
    event             jsonb NOT NULL,
    status            text NOT NULL DEFAULT 'PENDING',
    tries             integer NOT NULL DEFAULT 0,
    next_try_at       timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    alert_ids         uuid[],
    created_at        timestamptz NOT NULL DEFAULT now(),
    raised_at         timestamptz
);
CREATE INDEX fallout_signal_pending ON fallout_signal (next_try_at) WHERE status = 'PENDING';
