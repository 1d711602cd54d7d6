#!/bin/sh
# The backup retention Job: keeps the newest $CUTOVER_KEEP_LAST complete backups (a
# SHA256SUMS marks one complete) of the application, the one of this plan
# ($CUTOVER_ARCHIVE_DIR) always among them, and deletes the older ones. An incomplete
# directory may be a backup in progress or a failed one kept for inspection: it is left alone
# and reported. Reports {"kept","deleted","incomplete"} as the Job's result.
set -eu

app_dir="$(dirname "$CUTOVER_ARCHIVE_DIR")"
current="$(basename "$CUTOVER_ARCHIVE_DIR")"
cd "$app_dir"
kept=""
deleted=""
incomplete=""
n=0
# ls -t is the portable newest-first order (the image may have a minimal userland); the
# directories are backups named after plans, so they hold no newline.
# shellcheck disable=SC2012
complete=$(ls -1t -- */SHA256SUMS 2>/dev/null | sed 's,/SHA256SUMS$,,')
while IFS= read -r d; do
  [ -n "$d" ] || continue
  if [ "$d" = "$current" ] || [ "$n" -lt "$CUTOVER_KEEP_LAST" ]; then
    kept="$kept,\"$d\""
    n=$((n + 1))
  else
    echo "deleting $app_dir/$d"
    rm -rf -- "./$d"
    deleted="$deleted,\"$d\""
  fi
done <<LINES
$complete
LINES
for d in */; do
  d="${d%/}"
  if [ -d "$d" ] && [ ! -f "$d/SHA256SUMS" ]; then
    incomplete="$incomplete,\"$d\""
  fi
done
result=$(printf '{"kept":[%s],"deleted":[%s],"incomplete":[%s]}' "${kept#,}" "${deleted#,}" "${incomplete#,}")
echo "$result"
echo "$result" >"${CUTOVER_RESULT_FILE:-/dev/termination-log}" 2>/dev/null || true
