#!/bin/sh
# The clone Job: checks the archives in $CUTOVER_ARCHIVE_DIR against SHA256SUMS, then
# restores each source database into its clone. $CUTOVER_CLONES holds a source and its clone
# on alternating lines. The connection string is in the tools' config file
# $CUTOVER_TOOLS_CONFIG, so it is never on a command line. --drop: a clone is fresh (Pending
# refuses an existing one) unless an online sync (cloneMethod: auto) wrote into it before it
# fell back to restore; the restore replaces what the sync copied.
set -eu

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
    --nsInclude="$src.*" --nsFrom="$src.*" --nsTo="$dst.*" --bypassDocumentValidation --drop </dev/null
done <<LINES
$CUTOVER_CLONES
LINES
