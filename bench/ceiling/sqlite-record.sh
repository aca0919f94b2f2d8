#!/usr/bin/env bash
# Prints a sqlite3 script: N record-a-referral transactions in a tight loop (the same SQL as
# pg-record.sql, values inlined; its duplicate check uses the indexes), with the pragmas Vouch
# sets on its connections.
# Usage: sqlite-record.sh N CODES_FILE
set -euo pipefail
n=$1 codes=$2
echo "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
echo ".output /dev/null"
awk -v n="$n" -v seed="$RANDOM" 'NF { gsub("-", "", $0); c[++k] = $0 } END {
  srand(seed)
  for (i = 1; i <= n; i++) {
    code = c[int(rand() * k) + 1]; id = "ceil-" seed "-" i
    print "BEGIN IMMEDIATE;"
    print "SELECT id, ambassador_id FROM referral_codes WHERE normalized = '\''" code "'\'';"
    print "SELECT min(id) FROM (SELECT id FROM referrals WHERE email_key = '\''" id "'\'' AND status NOT IN ('\''cancelled'\'', '\''rejected'\'') UNION ALL SELECT id FROM referrals WHERE phone_key = '\''none'\'' AND status NOT IN ('\''cancelled'\'', '\''rejected'\'')) AS live WHERE id <> '\'''\'';"
    print "INSERT INTO referrals (id, ambassador_id, code_id, submitted_code, status, source, client_first_name, client_last_name, client_email, notes, email_key, share_name_with_ambassador, registered_at, updated_at) SELECT '\''" id "'\'', ambassador_id, id, '\''CODE'\'', '\''registered'\'', '\''staff'\'', '\''Load'\'', '\''Test'\'', '\''ceil@load.example'\'', '\''bench-ceiling'\'', '\''" id "'\'', 1, strftime('\''%Y-%m-%d %H:%M:%f'\''), strftime('\''%Y-%m-%d %H:%M:%f'\'') FROM referral_codes WHERE normalized = '\''" code "'\'';"
    print "INSERT INTO audit_events (id, occurred_at, actor_type, actor_id, actor_role, action, entity_type, entity_id, after_status, details) VALUES ('\''" id "-a'\'', strftime('\''%Y-%m-%d %H:%M:%f'\''), '\''api_key'\'', '\''bench'\'', '\''staff'\'', '\''bench.ceiling'\'', '\''referral'\'', '\''" id "'\'', '\''registered'\'', '\''{}'\'');"
    print "INSERT INTO email_outbox (id, dedupe_key, template, to_address, payload, status, next_attempt_at, created_at) VALUES ('\''" id "-m'\'', '\''ceiling:" id "'\'', '\''referral_registered'\'', '\''amb@bench.example'\'', '\''{}'\'', '\''queued'\'', '\''2999-01-01 00:00:00'\'', strftime('\''%Y-%m-%d %H:%M:%f'\'')) ON CONFLICT (dedupe_key) DO NOTHING;"
    print "COMMIT;"
  }
}' "$codes"
