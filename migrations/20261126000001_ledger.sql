-- herald's communication ledger: records, attempts, artifact links, outbox, the delivery queue,
-- the process instances waiting for an outcome and the correlations back into Camunda.

CREATE TABLE communication_record (
    communication_id      uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    communication_type    text NOT NULL,
    message_category      text NOT NULL,
    status                text NOT NULL,
    subject_type          text NOT NULL,
    subject_id            text NOT NULL,
    quote_id              text,
    order_id              text,
    recipient_type        text NOT NULL,
    recipient_ref         text NOT NULL,
    channel               text NOT NULL,
    address_hash          text,
    address_masked        text,
    template_family       text NOT NULL,
    template_version      text NOT NULL,
    rendered_content_hash text,
    idempotency_key       text NOT NULL,
    requested_by          text NOT NULL,
    requested_at          timestamptz NOT NULL,
    sent_at               timestamptz,
    final_at              timestamptz,
    failure_code          text,
    failure_message       text,
    correlation_id        text NOT NULL,
    -- Camunda: where the request came from.
    process_instance_id   text,
    business_key          text,
    activity_id           text,
    topic                 text,
    resend_of             uuid REFERENCES communication_record (communication_id),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    version               integer NOT NULL DEFAULT 0,
    CONSTRAINT communication_record_idempotency UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX communication_record_quote ON communication_record (tenant_id, quote_id);
CREATE INDEX communication_record_status ON communication_record (status, updated_at);

CREATE TABLE communication_delivery_attempt (
    attempt_id            uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    communication_id      uuid NOT NULL REFERENCES communication_record (communication_id),
    attempt_no            integer NOT NULL,
    channel               text NOT NULL,
    provider              text NOT NULL,
    provider_message_id   text,
    status                text NOT NULL,
    failure_class         text,
    request_payload_hash  text,
    response_code         integer,
    response_summary      text,
    claimed_by            text NOT NULL,
    attempted_at          timestamptz NOT NULL,
    completed_at          timestamptz,
    CONSTRAINT communication_delivery_attempt_no UNIQUE (communication_id, attempt_no)
);

CREATE TABLE communication_artifact_link (
    communication_id      uuid NOT NULL REFERENCES communication_record (communication_id),
    artifact_id           text NOT NULL,
    artifact_role         text NOT NULL,
    sent_bytes_hash       text,
    PRIMARY KEY (communication_id, artifact_id)
);

CREATE TABLE communication_outbox (
    outbox_id             uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    aggregate_type        text NOT NULL,
    aggregate_id          uuid NOT NULL,
    event_type            text NOT NULL,
    event_version         integer NOT NULL,
    payload               jsonb NOT NULL,
    headers               jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                text NOT NULL DEFAULT 'PENDING',
    created_at            timestamptz NOT NULL DEFAULT now(),
    published_at          timestamptz
);
CREATE INDEX communication_outbox_pending ON communication_outbox (created_at) WHERE status = 'PENDING';

-- The delivery queue: one row per communication that still has to go out. The raw address and
-- the render payload live only here, and are erased when the communication reaches a final state.
CREATE TABLE delivery_job (
    communication_id      uuid PRIMARY KEY REFERENCES communication_record (communication_id),
    tenant_id             text NOT NULL,
    due_at                timestamptz NOT NULL,
    attempts              integer NOT NULL DEFAULT 0,
    locked_by             text,
    locked_until          timestamptz,
    recipient_address     text,
    render_payload        jsonb,
    locale                text,
    done                  boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_job_due ON delivery_job (due_at) WHERE NOT done;

-- Process instances waiting for the outcome of a communication (one communication may serve
-- several instances: a restarted or duplicated process gets the existing record).
CREATE TABLE communication_waiter (
    communication_id      uuid NOT NULL REFERENCES communication_record (communication_id),
    process_instance_id   text NOT NULL,
    business_key          text,
    task_id               text,
    tenant_id             text NOT NULL,
    registered_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (communication_id, process_instance_id)
);

-- Messages to correlate into Camunda, retried until they land or their deadline passes.
CREATE TABLE camunda_correlation (
    correlation_row_id    uuid PRIMARY KEY,
    communication_id      uuid NOT NULL REFERENCES communication_record (communication_id),
    process_instance_id   text NOT NULL,
    message_name          text NOT NULL,
    tenant_id             text NOT NULL,
    status                text NOT NULL DEFAULT 'PENDING',
    tries                 integer NOT NULL DEFAULT 0,
    next_try_at           timestamptz NOT NULL DEFAULT now(),
    deadline_at           timestamptz NOT NULL,
    locked_until          timestamptz,
    last_error            text,
    correlated_at         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT camunda_correlation_once UNIQUE (communication_id, process_instance_id, message_name)
);
CREATE INDEX camunda_correlation_due ON camunda_correlation (next_try_at) WHERE status = 'PENDING';

-- herald's own contact directory (per tenant).
CREATE TABLE contact (
    tenant_id             text NOT NULL,
    contact_id            text NOT NULL,
    display_name          text NOT NULL,
    email                 text,
    locale                text,
    timezone              text,
    active                boolean NOT NULL DEFAULT true,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id)
);
