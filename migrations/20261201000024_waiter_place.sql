-- Where herald's task ran (its process definition, element and activity instance), so that the
-- relay delivers the outcome to the execution that waits after that task: one branch of a
-- multi-instance subprocess, one of two parallel sends. Rows from before have none and are
-- correlated by process instance as before.
ALTER TABLE communication_waiter
    ADD COLUMN process_definition_id text,
    ADD COLUMN activity_id text,
    ADD COLUMN activity_instance_id text;

-- UNWAITED: the process went on without the message (a timer on the wait fired, the instance
-- ended) and never will wait for it: recorded, not retried. Added NOT VALID and validated by
-- the next migration, so that the table stays writable meanwhile.
ALTER TABLE camunda_correlation DROP CONSTRAINT camunda_correlation_status_check;
ALTER TABLE camunda_correlation ADD CONSTRAINT camunda_correlation_status_check CHECK (status IN ('PENDING', 'CORRELATED', 'FAILED', 'UNWAITED')) NOT VALID;
