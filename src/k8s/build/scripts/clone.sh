cd "$CUTOVER_ARCHIVE_DIR"
sha256sum -c SHA256SUMS
set -f
for pair in $CUTOVER_CLONES; do
  src="${pair%%=*}"
  dst="${pair#*=}"
  echo "restoring $src into $dst"
  mongorestore --uri="$TOOLS_URI" --archive="$src.archive.gz" --gzip --nsInclude="$src.*" --nsFrom="$src.*" --nsTo="$dst.*"
done
