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
-- SQLite has one writer at a time, so row triggers never contend. WITHOUT ROWID: the table
-- is its primary key's B-tree, so an ambassador's tallies sit side by side in one page (in a
-- rowid table each would be a second lookup, on whichever page it was first written to).
CREATE TABLE ambassador_tallies (
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    tally TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (ambassador_id, tally)
) WITHOUT ROWID;

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

CREATE TRIGGER referrals_tally_insert AFTER INSERT ON referrals
WHEN NEW.ambassador_id IS NOT NULL
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    SELECT NEW.ambassador_id, NEW.status, 1 WHERE true
    UNION ALL
    SELECT NEW.ambassador_id, 'visible:' || NEW.status, 1
    WHERE NEW.source <> 'public_form' OR NEW.treatment_started_at IS NOT NULL
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER referrals_tally_update AFTER UPDATE OF ambassador_id, status, source, treatment_started_at ON referrals
WHEN OLD.ambassador_id IS NOT NEW.ambassador_id OR OLD.status IS NOT NEW.status
    OR OLD.source IS NOT NEW.source
    OR (OLD.treatment_started_at IS NULL) IS NOT (NEW.treatment_started_at IS NULL)
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    SELECT OLD.ambassador_id, OLD.status, -1 WHERE OLD.ambassador_id IS NOT NULL
    UNION ALL
    SELECT OLD.ambassador_id, 'visible:' || OLD.status, -1
    WHERE OLD.ambassador_id IS NOT NULL AND (OLD.source <> 'public_form' OR OLD.treatment_started_at IS NOT NULL)
    UNION ALL
    SELECT NEW.ambassador_id, NEW.status, 1 WHERE NEW.ambassador_id IS NOT NULL
    UNION ALL
    SELECT NEW.ambassador_id, 'visible:' || NEW.status, 1
    WHERE NEW.ambassador_id IS NOT NULL AND (NEW.source <> 'public_form' OR NEW.treatment_started_at IS NOT NULL)
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER referrals_tally_delete AFTER DELETE ON referrals
WHEN OLD.ambassador_id IS NOT NULL
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    SELECT OLD.ambassador_id, OLD.status, -1 WHERE true
    UNION ALL
    SELECT OLD.ambassador_id, 'visible:' || OLD.status, -1
    WHERE OLD.source <> 'public_form' OR OLD.treatment_started_at IS NOT NULL
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER rewards_tally_insert AFTER INSERT ON rewards
WHEN NEW.state <> 'voided'
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    VALUES (NEW.ambassador_id, 'reward:' || NEW.state, NEW.amount_minor)
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER rewards_tally_update AFTER UPDATE OF ambassador_id, state, amount_minor ON rewards
WHEN OLD.ambassador_id IS NOT NEW.ambassador_id OR OLD.state IS NOT NEW.state
    OR OLD.amount_minor IS NOT NEW.amount_minor
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    SELECT OLD.ambassador_id, 'reward:' || OLD.state, -OLD.amount_minor WHERE OLD.state <> 'voided'
    UNION ALL
    SELECT NEW.ambassador_id, 'reward:' || NEW.state, NEW.amount_minor WHERE NEW.state <> 'voided'
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER rewards_tally_delete AFTER DELETE ON rewards
WHEN OLD.state <> 'voided'
BEGIN
    INSERT INTO ambassador_tallies (ambassador_id, tally, n)
    VALUES (OLD.ambassador_id, 'reward:' || OLD.state, -OLD.amount_minor)
    ON CONFLICT (ambassador_id, tally) DO UPDATE SET n = n + excluded.n;
END;
