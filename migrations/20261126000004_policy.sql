-- Preferences, consent and suppression, and the decisions taken for each communication.

CREATE TABLE tenant_policy (
    tenant_id              text PRIMARY KEY,
    communications_enabled boolean NOT NULL DEFAULT true,
    quiet_start            time,
    quiet_end              time,
    timezone               text NOT NULL DEFAULT 'UTC',
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Per recipient x message category x channel: opted in (consent) or out.
CREATE TABLE recipient_preference (
    tenant_id      text NOT NULL,
    recipient_ref  text NOT NULL,
    category       text NOT NULL,
    channel        text NOT NULL,
    opted_in       boolean NOT NULL,
    source         text NOT NULL DEFAULT 'api',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, recipient_ref, category, channel)
);

-- Addresses never to send to again (hard bounces, complaints), by hash; tenant '*' is global.
CREATE TABLE suppression_entry (
    tenant_id      text NOT NULL,
    address_hash   text NOT NULL,
    reason         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, address_hash)
);

CREATE TABLE blocked_domain (
    tenant_id      text NOT NULL,
    domain         text NOT NULL,
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, domain)
);

-- Maintenance freezes: deliveries requested during a window are held until it ends.
CREATE TABLE maintenance_window (
    window_id      uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    reason         text
);

ALTER TABLE contact ADD COLUMN quiet_start time;
ALTER TABLE contact ADD COLUMN quiet_end time;

CREATE TABLE communication_decision (
    decision_id      uuid PRIMARY KEY,
    communication_id uuid NOT NULL REFERENCES communication_record (communication_id),
    check_name       text NOT NULL,
    outcome          text NOT NULL,
    reason_code      text NOT NULL,
    detail           text NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX communication_decision_comm ON communication_decision (communication_id);
