-- A claim closes the attempt a sender left open when its lease ran out. Finding it scanned
-- every attempt ever made (milliseconds per claim on a long ledger); the open attempts are a
-- handful, as many as are in flight: a partial index holds just those.
CREATE INDEX communication_delivery_attempt_open ON communication_delivery_attempt (communication_id)
    WHERE status = 'IN_PROGRESS';
