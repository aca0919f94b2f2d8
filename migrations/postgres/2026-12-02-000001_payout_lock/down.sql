ALTER TABLE payouts DROP CONSTRAINT payouts_cancel_reason_check;
ALTER TABLE payouts DROP COLUMN cancel_reason;
ALTER TABLE payouts DROP CONSTRAINT payouts_locked_check;
ALTER TABLE payouts DROP COLUMN locked_at;
ALTER TABLE payouts DROP COLUMN program_version_id;
-- A locked batch goes back to being a draft (fails if that makes two drafts: settle one first).
UPDATE payouts SET status = 'draft' WHERE status = 'processing';
ALTER TABLE payouts DROP CONSTRAINT payouts_status_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_status_check CHECK (status IN ('draft', 'paid', 'cancelled'));
