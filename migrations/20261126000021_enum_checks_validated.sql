-- Validates the CHECK constraints of 20261126000020_enum_checks.sql against the rows written
-- before them. VALIDATE CONSTRAINT takes a SHARE UPDATE EXCLUSIVE lock: reads and writes go on
-- while each table is scanned. A row with a value the enums do not know fails this migration
-- with the constraint's name: fix or remove that row, then start herald again.

ALTER TABLE communication_record VALIDATE CONSTRAINT communication_record_status_check;
ALTER TABLE communication_record VALIDATE CONSTRAINT communication_record_channel_check;
ALTER TABLE communication_record VALIDATE CONSTRAINT communication_record_communication_type_check;
ALTER TABLE communication_record VALIDATE CONSTRAINT communication_record_message_category_check;
ALTER TABLE communication_record VALIDATE CONSTRAINT communication_record_recipient_type_check;
ALTER TABLE communication_delivery_attempt VALIDATE CONSTRAINT communication_delivery_attempt_status_check;
ALTER TABLE communication_delivery_attempt VALIDATE CONSTRAINT communication_delivery_attempt_failure_class_check;
ALTER TABLE communication_outbox VALIDATE CONSTRAINT communication_outbox_status_check;
ALTER TABLE communication_outbox VALIDATE CONSTRAINT communication_outbox_event_type_check;
ALTER TABLE camunda_correlation VALIDATE CONSTRAINT camunda_correlation_status_check;
ALTER TABLE fallout_signal VALIDATE CONSTRAINT fallout_signal_status_check;
ALTER TABLE communication_decision VALIDATE CONSTRAINT communication_decision_outcome_check;
ALTER TABLE webhook_subscription VALIDATE CONSTRAINT webhook_subscription_status_check;
ALTER TABLE inbox_notification VALIDATE CONSTRAINT inbox_notification_communication_type_check;
