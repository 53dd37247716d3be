-- Alerts grouped by their root cause (a rule's `aggregate.by`): the first of a group in a window
-- goes out at once, the rest in one summary at the window's end.
ALTER TABLE communication_record ADD COLUMN group_key text;
CREATE INDEX communication_record_group ON communication_record (tenant_id, recipient_ref, rule_ref, group_key, requested_at)
    WHERE group_key IS NOT NULL;
