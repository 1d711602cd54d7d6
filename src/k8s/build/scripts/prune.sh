app_dir="$(dirname "$CUTOVER_ARCHIVE_DIR")"
current="$(basename "$CUTOVER_ARCHIVE_DIR")"
cd "$app_dir"
kept=""
deleted=""
incomplete=""
n=0
for d in $(ls -1t */SHA256SUMS 2>/dev/null | sed 's,/SHA256SUMS$,,'); do
  if [ "$d" = "$current" ] || [ "$n" -lt "$CUTOVER_KEEP_LAST" ]; then
    kept="$kept,\"$d\""
    n=$((n + 1))
  else
    echo "deleting $app_dir/$d"
    rm -rf -- "./$d"
    deleted="$deleted,\"$d\""
  fi
done
for d in */; do
  d="${d%/}"
  [ -d "$d" ] && [ ! -f "$d/SHA256SUMS" ] && incomplete="$incomplete,\"$d\""
done
result=$(printf '{"kept":[%s],"deleted":[%s],"incomplete":[%s]}' "${kept#,}" "${deleted#,}" "${incomplete#,}")
echo "$result"
echo "$result" > "${CUTOVER_RESULT_FILE:-/dev/termination-log}" 2>/dev/null || true
