#!/bin/sh
# The clone Job: checks the archives in $CUTOVER_ARCHIVE_DIR against SHA256SUMS, then
# restores each source database into its clone. $CUTOVER_CLONES holds a source and its clone
# on alternating lines. The connection string is in the tools' config file
# $CUTOVER_TOOLS_CONFIG, so it is never on a command line. --drop: a clone is fresh (Pending
# refuses an existing one) unless an online sync (cloneMethod: auto) wrote into it before it
# fell back to restore, or an earlier attempt of this Job was disrupted; the restore replaces
# what either left.
set -eu
# The script's own failure ends it with exit 97 (the plan fails); any other end is a
# disruption the operator retries with a new Job. A retry restores each collection again with
# --drop: what an interrupted attempt left in the plan's own clone is replaced, not doubled.
script_exit() {
  rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -gt 128 ] || exit 97
}
trap script_exit EXIT

cd "$CUTOVER_ARCHIVE_DIR"
sha256sum -c SHA256SUMS
while IFS= read -r src; do
  [ -n "$src" ] || continue
  if ! IFS= read -r dst || [ -z "$dst" ]; then
    echo "CUTOVER_CLONES names no clone for $src" >&2
    exit 1
  fi
  echo "restoring $src into $dst"
  mongorestore --config="$CUTOVER_TOOLS_CONFIG" --archive="$src.archive.gz" --gzip \
    --nsInclude="$src.*" --nsFrom="$src.*" --nsTo="$dst.*" --drop --bypassDocumentValidation </dev/null
done <<LINES
$CUTOVER_CLONES
LINES
