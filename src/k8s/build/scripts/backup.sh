#!/bin/sh
# The backup Job: dumps each database named in $CUTOVER_DATABASES (one per line) into
# $CUTOVER_ARCHIVE_DIR/<database>.archive.gz, writes SHA256SUMS (which marks the backup
# complete) and reports {"path","bytes","sha256"} as the Job's result. The connection string
# is in the tools' config file $CUTOVER_TOOLS_CONFIG, so it is never on a command line.
set -eu
# The script's own failure (a tool or a step failing) ends it with exit 97: the operator fails
# the plan. Any other end (killed by a signal: 137/143, pod deleted or evicted) is a disruption
# the operator retries with a new Job, which dumps everything again.
script_exit() {
  rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -gt 128 ] || exit 97
}
trap script_exit EXIT

mkdir -p "$CUTOVER_ARCHIVE_DIR"
cd "$CUTOVER_ARCHIVE_DIR"
# A dump cut short by an earlier attempt is never mistaken for a finished one: no checksums
# until every archive of this attempt is written.
rm -f ./*.partial SHA256SUMS
while IFS= read -r db; do
  [ -n "$db" ] || continue
  echo "dumping $db"
  mongodump --config="$CUTOVER_TOOLS_CONFIG" --db="$db" \
    --archive="$db.archive.gz.partial" --gzip </dev/null
  mv "$db.archive.gz.partial" "$db.archive.gz"
done <<LINES
$CUTOVER_DATABASES
LINES
sha256sum ./*.archive.gz >SHA256SUMS
bytes=$(cat ./*.archive.gz | wc -c | tr -d ' ')
sum=$(sha256sum SHA256SUMS | cut -d' ' -f1)
result=$(printf '{"path":"%s","bytes":%s,"sha256":"%s"}' "$CUTOVER_ARCHIVE_DIR" "$bytes" "$sum")
echo "$result"
echo "$result" >"${CUTOVER_RESULT_FILE:-/dev/termination-log}" 2>/dev/null || true
