-- Digests: items of a low-priority rule, collected per recipient and window, go out as one
-- message at the window's end. Each item is added once (by its idempotency key).
CREATE TABLE digest_item (
    digest_id         uuid NOT NULL REFERENCES communication_record (communication_id),
    item_key          text NOT NULL,
    line              text NOT NULL,
    added_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest_id, item_key)
);
-- An item belongs to one digest, whatever the retries.
CREATE UNIQUE INDEX digest_item_once ON digest_item (item_key);
