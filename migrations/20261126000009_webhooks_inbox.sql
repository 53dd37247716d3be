-- Webhook subscriptions (per tenant) and the in-app inbox.

CREATE TABLE webhook_subscription (
    subscription_id        text PRIMARY KEY,
    tenant_id              text NOT NULL,
    endpoint_url           text NOT NULL,
    event_types            text[] NOT NULL,
    -- whsec_… signing secrets. During a rotation the previous one stays valid until
    -- previous_secret_until, and messages are signed with both.
    secret                 text NOT NULL,
    previous_secret        text,
    previous_secret_until  timestamptz,
    status                 text NOT NULL DEFAULT 'ACTIVE',
    disabled_reason        text,
    -- At most this many messages a second to the endpoint (NULL: no limit).
    rate_limit_per_s       integer,
    -- The circuit breaker: failures in a row, and until when no request is made.
    consecutive_failures   integer NOT NULL DEFAULT 0,
    circuit_open_until     timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscription_tenant ON webhook_subscription (tenant_id) WHERE status = 'ACTIVE';

-- In-app notifications: one per in-app communication (the communication's id), read or unread.
CREATE TABLE inbox_notification (
    notification_id        uuid PRIMARY KEY REFERENCES communication_record (communication_id),
    tenant_id              text NOT NULL,
    recipient_ref          text NOT NULL,
    communication_type     text NOT NULL,
    title                  text NOT NULL,
    body_text              text NOT NULL,
    body_html              text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    read_at                timestamptz
);
CREATE INDEX inbox_notification_recipient ON inbox_notification (tenant_id, recipient_ref, created_at DESC);
