-- A process instance may wait for the same communication more than once (a model that loops
-- back to the service task): waiters and their correlations are per external task, not per
-- process instance.
UPDATE communication_waiter SET task_id = process_instance_id WHERE task_id IS NULL;
ALTER TABLE communication_waiter ALTER COLUMN task_id SET NOT NULL;
ALTER TABLE communication_waiter DROP CONSTRAINT communication_waiter_pkey;
ALTER TABLE communication_waiter ADD PRIMARY KEY (communication_id, task_id);

ALTER TABLE camunda_correlation ADD COLUMN task_id text;
UPDATE camunda_correlation c SET task_id = COALESCE(
    (SELECT w.task_id FROM communication_waiter w
     WHERE w.communication_id = c.communication_id AND w.process_instance_id = c.process_instance_id LIMIT 1),
    c.process_instance_id);
ALTER TABLE camunda_correlation ALTER COLUMN task_id SET NOT NULL;
ALTER TABLE camunda_correlation DROP CONSTRAINT camunda_correlation_once;
ALTER TABLE camunda_correlation ADD CONSTRAINT camunda_correlation_once UNIQUE (communication_id, task_id, message_name);
