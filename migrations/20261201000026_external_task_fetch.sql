-- How often each external task was fetched since herald last reported it (complete, failure,
-- BPMN error) or found it gone: shared by every herald node of the engine, so that a task whose
-- lock is lost again and again (the handler outlives its lock, its extensions fail, a herald
-- stops mid-task) ends in an incident after the topic's `[incident] lock_losses` instead of
-- being fetched for ever. A row lives while a task is unreported; rows of tasks that vanished
-- unreported (cancelled while no herald held them) are pruned after a week.
CREATE TABLE external_task_fetch (
    -- the engine's external task id
    task_id text PRIMARY KEY,
    topic text NOT NULL,
    -- fetches since the last report, the latest included; a task given back at shutdown
    -- counts one less
    fetches integer NOT NULL CHECK (fetches >= 0),
    first_fetched_at timestamptz NOT NULL DEFAULT now(),
    last_fetched_at timestamptz NOT NULL DEFAULT now(),
    -- the workerId of the latest fetch
    last_worker_id text NOT NULL
);

CREATE INDEX external_task_fetch_last_fetched ON external_task_fetch (last_fetched_at);
