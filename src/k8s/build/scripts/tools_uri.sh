base="${MONGODB_URI%%\?*}"
query=""
case "$MONGODB_URI" in *\?*) query="${MONGODB_URI#*\?}" ;; esac
scheme="${base%%://*}"
rest="${base#*://}"
hosts="${rest%%/*}"
path=""
case "$rest" in */*) path="${rest#*/}" ;; esac
# Only with credentials does the path name the authentication database.
case "$hosts" in
  *@*) if [ -n "$path" ]; then
    case "&$query" in *"&authSource="*) ;; *) query="${query:+$query&}authSource=$path" ;; esac
  fi ;;
esac
TOOLS_URI="$scheme://$hosts/${query:+?$query}"
