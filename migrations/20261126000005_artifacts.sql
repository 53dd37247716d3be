-- The artifact registry (documents herald may link or attach), fed by DocumentArtifactAvailable
-- events and the API; and the attachments of a delivery job.
CREATE TABLE artifact (
    tenant_id        text NOT NULL,
    artifact_id      text NOT NULL,
    subject_type     text NOT NULL,
    subject_id       text NOT NULL,
    artifact_type    text NOT NULL,
    status           text NOT NULL,
    content_hash     text,
    storage_location text NOT NULL,
    size_bytes       bigint,
    media_type       text NOT NULL DEFAULT 'application/pdf',
    file_name        text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, artifact_id)
);
CREATE INDEX artifact_subject ON artifact (tenant_id, subject_type, subject_id, artifact_type);
-- A foreign artifact is told apart from a missing one by its id alone.
CREATE INDEX artifact_id ON artifact (artifact_id);

ALTER TABLE delivery_job ADD COLUMN attachments jsonb NOT NULL DEFAULT '[]'::jsonb;
