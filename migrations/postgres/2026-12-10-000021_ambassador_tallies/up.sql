-- Running totals per ambassador, so the ambassador detail, /v1/me and the portal read a few
-- rows whatever the ambassador's history (they counted and summed every referral and reward
-- on each request). One row per (ambassador, tally):
--   '<status>'          referrals in that status (the staff's view);
--   'visible:<status>'  those the ambassador sees (not a share-link submission before the
--                       friend's first session: `referrals::ambassador_visible`);
--   'reward:<state>'    the sum of amount_minor of rewards in that state (voided ones are not
--                       kept: nothing reads them).
-- Kept by triggers in the same transaction as the change, so every write path (the API,
-- imports, the CLI, a seeder, SQL by hand) keeps them true and a rollback takes them back.
--
-- Locks: a tally row is locked from the change until commit. Referral changes and single
-- reward inserts touch one ambassador's rows; a statement that moves many rewards at once (a
-- payout batch, marking it paid) updates the tallies once per statement, netted, in
-- (ambassador, tally) order. A reward insert's trigger runs after its foreign-key check has
-- taken the ambassador's row (FOR KEY SHARE), and the batch locks its ambassadors (FOR UPDATE)
-- before it moves rewards, so whoever holds an ambassador's reward tallies already holds the
-- ambassador: a batch and a completion cannot wait on each other in a cycle. (Marking a batch
-- paid with a clawback, racing a new batch for the same ambassador, can: PostgreSQL aborts one
-- of them whole, and the request answers 503 to be retried.)
CREATE TABLE ambassador_tallies (
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    tally TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (ambassador_id, tally)
);

INSERT INTO ambassador_tallies (ambassador_id, tally, n)
SELECT ambassador_id, status, count(*) FROM referrals
WHERE ambassador_id IS NOT NULL GROUP BY ambassador_id, status
UNION ALL
SELECT ambassador_id, 'visible:' || status, count(*) FROM referrals
WHERE ambassador_id IS NOT NULL AND (source <> 'public_form' OR treatment_started_at IS NOT NULL)
GROUP BY ambassador_id, status
UNION ALL
SELECT ambassador_id, 'reward:' || state, sum(amount_minor) FROM rewards
WHERE state <> 'voided' GROUP BY ambassador_id, state;

-- A referral inserted, changed or deleted: -1 on what it was, +1 on what it is, netted.
CREATE FUNCTION referrals_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    SELECT c.ambassador_id, c.tally, sum(c.d)::bigint
    FROM (VALUES
        (OLD.ambassador_id, OLD.status, -1),
        (OLD.ambassador_id, CASE WHEN OLD.source <> 'public_form' OR OLD.treatment_started_at IS NOT NULL
                                 THEN 'visible:' || OLD.status END, -1),
        (NEW.ambassador_id, NEW.status, 1),
        (NEW.ambassador_id, CASE WHEN NEW.source <> 'public_form' OR NEW.treatment_started_at IS NOT NULL
                                 THEN 'visible:' || NEW.status END, 1)
    ) AS c (ambassador_id, tally, d)
    WHERE c.ambassador_id IS NOT NULL AND c.tally IS NOT NULL
    GROUP BY c.ambassador_id, c.tally
    HAVING sum(c.d) <> 0
    ORDER BY c.ambassador_id, c.tally
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = ambassador_tallies.n + excluded.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER referrals_tally_insert AFTER INSERT ON referrals
FOR EACH ROW WHEN (NEW.ambassador_id IS NOT NULL) EXECUTE FUNCTION referrals_tally();
CREATE TRIGGER referrals_tally_update AFTER UPDATE OF ambassador_id, status, source, treatment_started_at ON referrals
FOR EACH ROW WHEN (OLD.ambassador_id IS DISTINCT FROM NEW.ambassador_id OR OLD.status IS DISTINCT FROM NEW.status
    OR OLD.source IS DISTINCT FROM NEW.source
    OR (OLD.treatment_started_at IS NULL) IS DISTINCT FROM (NEW.treatment_started_at IS NULL))
EXECUTE FUNCTION referrals_tally();
CREATE TRIGGER referrals_tally_delete AFTER DELETE ON referrals
FOR EACH ROW WHEN (OLD.ambassador_id IS NOT NULL) EXECUTE FUNCTION referrals_tally();

-- Rewards inserted or deleted one at a time (an earned reward, a clawback, an adjustment).
CREATE FUNCTION rewards_tally_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ambassador_tallies (ambassador_id, tally, n)
        VALUES (NEW.ambassador_id, 'reward:' || NEW.state, NEW.amount_minor)
        ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = ambassador_tallies.n + excluded.n;
    ELSE
        INSERT INTO ambassador_tallies (ambassador_id, tally, n)
        VALUES (OLD.ambassador_id, 'reward:' || OLD.state, -OLD.amount_minor)
        ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = ambassador_tallies.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER rewards_tally_insert AFTER INSERT ON rewards
FOR EACH ROW WHEN (NEW.state <> 'voided') EXECUTE FUNCTION rewards_tally_row();
CREATE TRIGGER rewards_tally_delete AFTER DELETE ON rewards
FOR EACH ROW WHEN (OLD.state <> 'voided') EXECUTE FUNCTION rewards_tally_row();

-- Rewards updated: once per statement over every row it changed (a batch moves 100,000 at
-- once), netted per ambassador and state.
CREATE FUNCTION rewards_tally_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    SELECT c.ambassador_id, c.tally, sum(c.d)::bigint
    FROM (
        SELECT ambassador_id, 'reward:' || state AS tally, -amount_minor AS d FROM old_rows WHERE state <> 'voided'
        UNION ALL
        SELECT ambassador_id, 'reward:' || state, amount_minor FROM new_rows WHERE state <> 'voided'
    ) AS c
    GROUP BY c.ambassador_id, c.tally
    HAVING sum(c.d) <> 0
    ORDER BY c.ambassador_id, c.tally
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = ambassador_tallies.n + excluded.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER rewards_tally_update AFTER UPDATE ON rewards
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION rewards_tally_update();
