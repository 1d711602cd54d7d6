mkdir -p "$CUTOVER_ARCHIVE_DIR"
cd "$CUTOVER_ARCHIVE_DIR"
rm -f ./*.partial
# Word-split the list without globbing.
set -f
for db in $CUTOVER_DATABASES; do
  echo "dumping $db"
  mongodump --uri="$TOOLS_URI" --db="$db" --archive="$db.archive.gz.partial" --gzip
  mv "$db.archive.gz.partial" "$db.archive.gz"
done
set +f
sha256sum ./*.archive.gz > SHA256SUMS
bytes=$(cat ./*.archive.gz | wc -c | tr -d ' ')
sum=$(sha256sum SHA256SUMS | cut -d' ' -f1)
result=$(printf '{"path":"%s","bytes":%s,"sha256":"%s"}' "$CUTOVER_ARCHIVE_DIR" "$bytes" "$sum")
echo "$result"
echo "$result" > "${CUTOVER_RESULT_FILE:-/dev/termination-log}" 2>/dev/null || true
