-- An endpoint's rate limit across the fleet (GCRA): the earliest time the next message may go.
-- Each sender reserves its slot with one atomic update; a message whose slot is near waits
-- for it, one whose slot is far is retried later.
ALTER TABLE webhook_subscription ADD COLUMN rate_next_at timestamptz;
ALTER TABLE webhook_subscription ADD CONSTRAINT webhook_subscription_rate_positive
    CHECK (rate_limit_per_s IS NULL OR rate_limit_per_s > 0);

-- Senders keep the endpoints they read for a while; a change that matters to a sender (where,
-- how signed, whether active, how fast, the circuit, the first failure of a run) tells them at
-- once, with the subscription's id.
CREATE FUNCTION herald_subscription_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_subscription', NEW.subscription_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_subscription_changed AFTER UPDATE ON webhook_subscription FOR EACH ROW
    WHEN (OLD.endpoint_url IS DISTINCT FROM NEW.endpoint_url
          OR OLD.secret IS DISTINCT FROM NEW.secret
          OR OLD.previous_secret IS DISTINCT FROM NEW.previous_secret
          OR OLD.previous_secret_until IS DISTINCT FROM NEW.previous_secret_until
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.rate_limit_per_s IS DISTINCT FROM NEW.rate_limit_per_s
          OR OLD.circuit_open_until IS DISTINCT FROM NEW.circuit_open_until
          OR (OLD.consecutive_failures = 0 AND NEW.consecutive_failures > 0))
    EXECUTE FUNCTION herald_subscription_changed();
