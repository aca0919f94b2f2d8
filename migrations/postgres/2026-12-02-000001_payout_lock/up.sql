-- A payout batch locked for payment: draft → processing → paid (or cancelled, with a reason).
-- Once a batch is processing, its file is out with the payment provider: its lines never
-- change again except a line marked failed, and mark-paid settles exactly those lines.
ALTER TABLE payouts DROP CONSTRAINT payouts_status_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_status_check
    CHECK (status IN ('draft', 'processing', 'paid', 'cancelled'));

-- The program version the batch was built with: a refund that shrinks a draft line checks
-- that version's minimum payout, not the rules in force later.
ALTER TABLE payouts ADD COLUMN program_version_id TEXT REFERENCES program_versions (id);
UPDATE payouts SET program_version_id = COALESCE(
    (SELECT pv.id FROM program_versions pv WHERE pv.effective_from <= payouts.created_at
     ORDER BY pv.version DESC LIMIT 1),
    (SELECT pv.id FROM program_versions pv ORDER BY pv.version ASC LIMIT 1));
ALTER TABLE payouts ALTER COLUMN program_version_id SET NOT NULL;

-- When finance locked it for payment (explicitly, by downloading the PayPal file, or by
-- marking a draft paid). Batches paid before this migration count as locked when paid.
ALTER TABLE payouts ADD COLUMN locked_at TIMESTAMP;
UPDATE payouts SET locked_at = paid_at WHERE status = 'paid';
ALTER TABLE payouts ADD CONSTRAINT payouts_locked_check
    CHECK (status NOT IN ('processing', 'paid') OR locked_at IS NOT NULL);

-- Why a batch was cancelled; required once it had been locked ("the file was never uploaded").
ALTER TABLE payouts ADD COLUMN cancel_reason TEXT;
ALTER TABLE payouts ADD CONSTRAINT payouts_cancel_reason_check
    CHECK (status <> 'cancelled' OR locked_at IS NULL OR cancel_reason IS NOT NULL);
