-- The market of a contact (`DE`, `CH`): template resolution prefers a version for it over the
-- version for all markets.
ALTER TABLE contact ADD COLUMN market text;
