-- Wake-ups raised by the database itself: one NOTIFY per statement that adds rows a loop waits
-- for (PostgreSQL folds identical notifications of a transaction into one). No writer can
-- forget it, and it costs no round trip.
CREATE FUNCTION herald_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER delivery_job_notify AFTER INSERT ON delivery_job
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify('herald_delivery');
CREATE TRIGGER communication_outbox_notify AFTER INSERT ON communication_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify('herald_outbox');
CREATE TRIGGER camunda_correlation_notify AFTER INSERT ON camunda_correlation
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify('herald_correlation');
CREATE TRIGGER fallout_signal_notify AFTER INSERT ON fallout_signal
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify('herald_fallout');
