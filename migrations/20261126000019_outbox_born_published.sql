-- Events that no relay subscriber acts on (requested, queued, delivered, opened, clicked) are
-- written already PUBLISHED (published_at = created_at): they cost no second write and no
-- relay read. Only an insert that leaves work for the relay wakes it.
CREATE FUNCTION herald_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE status = 'PENDING') THEN
        PERFORM pg_notify('herald_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER communication_outbox_notify ON communication_outbox;
CREATE TRIGGER communication_outbox_notify AFTER INSERT ON communication_outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify_outbox();
