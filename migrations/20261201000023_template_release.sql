-- The template releases a deployment has loaded, anchored outside the repository: `herald run`
-- inserts every release of templates/approved.lock it has not seen yet and records every
-- withdrawal, and refuses to start when the lock disagrees with a release anchored here (another
-- content hash or approver, a withdrawal changed, or gone while the release is still in the
-- lock). A lock rewritten with every link recomputed passes its own chain; it does not pass this
-- table.
CREATE TABLE template_release (
    -- family:version
    id text PRIMARY KEY,
    -- the sha256 (hex) of the version released, as the lock records it
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    approved_by text NOT NULL,
    -- when a herald first loaded the release
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    -- the withdrawal, as the lock records it (all three, or none)
    withdrawn_reason text,
    withdrawn_by text,
    withdrawn_at timestamptz,
    CONSTRAINT template_release_withdrawal_whole CHECK (
        (withdrawn_reason IS NULL) = (withdrawn_by IS NULL)
        AND (withdrawn_by IS NULL) = (withdrawn_at IS NULL)
    )
);
