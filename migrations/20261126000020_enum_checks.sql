-- The closed sets of herald's vocabulary as CHECK constraints: a status, channel, type, category,
-- failure class, event type or decision outcome that herald's enums do not know cannot be
-- written. Generated from the enums (src/ledger/model.rs, checked_columns): a unit test holds
-- this file and the enums together. Added NOT VALID here (a short lock, no scan: new rows are
-- checked from now on); the next migration validates the existing rows, under a lock that does
-- not block writes.

ALTER TABLE communication_record ADD CONSTRAINT communication_record_status_check CHECK (status IN ('REQUESTED', 'SUPPRESSED', 'QUEUED', 'SENDING', 'SENT', 'DELIVERED', 'BOUNCED', 'OPENED', 'CLICKED', 'FAILED_RETRYABLE', 'FAILED_FINAL')) NOT VALID;
ALTER TABLE communication_record ADD CONSTRAINT communication_record_channel_check CHECK (channel IN ('EMAIL', 'WEBHOOK', 'IN_APP')) NOT VALID;
ALTER TABLE communication_record ADD CONSTRAINT communication_record_communication_type_check CHECK (communication_type IN ('APPROVAL_TASK_ASSIGNED', 'APPROVAL_REMINDER', 'QUOTE_PROPOSAL_DELIVERY', 'QUOTE_EXPIRY_WARNING', 'QUOTE_ACCEPTED_CONFIRMATION', 'ORDER_CONFIRMATION', 'FULFILLMENT_UPDATE', 'FALLOUT_ALERT', 'SLA_ESCALATION', 'EXTERNAL_WEBHOOK', 'INTERNAL_DIGEST')) NOT VALID;
ALTER TABLE communication_record ADD CONSTRAINT communication_record_message_category_check CHECK (message_category IN ('TRANSACTIONAL', 'OPERATIONAL', 'MARKETING')) NOT VALID;
ALTER TABLE communication_record ADD CONSTRAINT communication_record_recipient_type_check CHECK (recipient_type IN ('CONTACT', 'ADDRESS', 'USER', 'GROUP', 'WEBHOOK_SUBSCRIPTION')) NOT VALID;
ALTER TABLE communication_delivery_attempt ADD CONSTRAINT communication_delivery_attempt_status_check CHECK (status IN ('IN_PROGRESS', 'ACCEPTED', 'FAILED_RETRYABLE', 'FAILED_FINAL', 'ABANDONED')) NOT VALID;
ALTER TABLE communication_delivery_attempt ADD CONSTRAINT communication_delivery_attempt_failure_class_check CHECK (failure_class IN ('PROVIDER_UNAVAILABLE', 'TIMEOUT', 'RATE_LIMITED', 'TEMPORARY_REJECTION', 'INVALID_RECIPIENT', 'PERMANENT_REJECTION', 'CONFIGURATION', 'ENDPOINT_DISABLED')) NOT VALID;
ALTER TABLE communication_outbox ADD CONSTRAINT communication_outbox_status_check CHECK (status IN ('PENDING', 'PUBLISHED')) NOT VALID;
ALTER TABLE communication_outbox ADD CONSTRAINT communication_outbox_event_type_check CHECK (event_type IN ('CommunicationRequested', 'CommunicationSuppressed', 'CommunicationQueued', 'CommunicationSent', 'CommunicationFailed', 'CommunicationBounced', 'CommunicationDelivered', 'CommunicationOpened', 'CommunicationClicked')) NOT VALID;
ALTER TABLE camunda_correlation ADD CONSTRAINT camunda_correlation_status_check CHECK (status IN ('PENDING', 'CORRELATED', 'FAILED')) NOT VALID;
ALTER TABLE fallout_signal ADD CONSTRAINT fallout_signal_status_check CHECK (status IN ('PENDING', 'RAISED', 'FAILED')) NOT VALID;
ALTER TABLE communication_decision ADD CONSTRAINT communication_decision_outcome_check CHECK (outcome IN ('ALLOW', 'SUPPRESS', 'DELAY', 'FAIL', 'DIGEST')) NOT VALID;
ALTER TABLE webhook_subscription ADD CONSTRAINT webhook_subscription_status_check CHECK (status IN ('ACTIVE', 'DISABLED')) NOT VALID;
ALTER TABLE inbox_notification ADD CONSTRAINT inbox_notification_communication_type_check CHECK (communication_type IN ('APPROVAL_TASK_ASSIGNED', 'APPROVAL_REMINDER', 'QUOTE_PROPOSAL_DELIVERY', 'QUOTE_EXPIRY_WARNING', 'QUOTE_ACCEPTED_CONFIRMATION', 'ORDER_CONFIRMATION', 'FULFILLMENT_UPDATE', 'FALLOUT_ALERT', 'SLA_ESCALATION', 'EXTERNAL_WEBHOOK', 'INTERNAL_DIGEST')) NOT VALID;
