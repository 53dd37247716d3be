-- One task, several recipients: a parent communication (the id the process gets) with one
-- child record per recipient. The parent has no delivery job; its outcome follows its children.
ALTER TABLE communication_record ADD COLUMN parent_id uuid REFERENCES communication_record (communication_id);
ALTER TABLE communication_record ADD COLUMN is_parent boolean NOT NULL DEFAULT false;
CREATE INDEX communication_record_parent ON communication_record (parent_id) WHERE parent_id IS NOT NULL;
-- Reminders count per user task (the ordinal of a reminder).
ALTER TABLE communication_record ADD COLUMN about_task_id text;
CREATE INDEX communication_record_about_task ON communication_record (about_task_id) WHERE about_task_id IS NOT NULL;
