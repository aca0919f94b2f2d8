#!/usr/bin/env bash
# Prints a sqlite3 script: N single indexed reads (an ambassador by id) in a tight loop, the
# SQLite counterpart of `pgbench -S`. Usage: sqlite-read.sh N IDS_FILE
set -euo pipefail
n=$1 ids=$2
echo "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
echo ".output /dev/null"
awk -v n="$n" 'NF { a[++k] = $0 } END { for (i = 1; i <= n; i++) print "SELECT * FROM ambassadors WHERE id = '\''" a[(i % k) + 1] "'\'';" }' "$ids"
