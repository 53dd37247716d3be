-- Which rule (topic or event rule, with its version) asked for a communication, and the
-- delivery priority it gave it.
ALTER TABLE communication_record ADD COLUMN rule_ref text;
ALTER TABLE delivery_job ADD COLUMN priority integer NOT NULL DEFAULT 50;
DROP INDEX delivery_job_due;
CREATE INDEX delivery_job_due ON delivery_job (priority DESC, due_at) WHERE NOT done;
