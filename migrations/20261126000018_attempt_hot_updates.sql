-- Ending an attempt changed a column of a partial index's predicate (status, in
-- communication_delivery_attempt_open), so every end wrote a new tuple and new entries in the
-- table's two unique indexes. A claim finds the attempt a lost lease left open through the
-- (communication_id, attempt_no) index instead (the earlier attempts of the re-claimed job),
-- and pages keep room: an attempt's end is a HOT update, as a record's status change is.
DROP INDEX communication_delivery_attempt_open;
ALTER TABLE communication_delivery_attempt SET (fillfactor = 70);
