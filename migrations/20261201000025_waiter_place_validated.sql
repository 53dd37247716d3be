-- Validates the constraint the previous migration added NOT VALID (no write lock held).
ALTER TABLE camunda_correlation VALIDATE CONSTRAINT camunda_correlation_status_check;
