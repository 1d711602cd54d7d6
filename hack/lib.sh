# shellcheck shell=bash
# Shared helpers for hack/dev-env and hack/dev-install. Sourced, never executed.
#
# Conventions: everything user-facing goes to stderr via say/warn/die so that
# `hack/dev-env env` can keep stdout clean for `eval "$(hack/dev-env env)"`.

# ---------------------------------------------------------------- output ----

if [[ -t 2 ]]; then
  _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_yel=$'\e[33m' _c_grn=$'\e[32m' _c_off=$'\e[0m'
else
  _c_bold='' _c_red='' _c_yel='' _c_grn='' _c_off=''
fi

say()  { printf '%s\n' "$*" >&2; }
head1() { printf '%s==> %s%s\n' "$_c_bold" "$*" "$_c_off" >&2; }
ok()   { printf '    %s%s%s\n' "$_c_grn" "$*" "$_c_off" >&2; }
warn() { printf '%sWARNING:%s %s\n' "$_c_yel" "$_c_off" "$*" >&2; }
die()  { printf '%sERROR:%s %s\n' "$_c_red" "$_c_off" "$*" >&2; exit 1; }

# Seconds since the epoch with sub-second precision (bash >= 5 has EPOCHREALTIME).
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
# elapsed START -> "12.3s"
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# show_tail FILE [N]: last N lines of a log, indented, for failure reports.
show_tail() {
  local f=$1 n=${2:-40}
  say "---- last $n lines of $f ----"
  if [[ -f $f ]]; then tail -n "$n" "$f" | sed 's/^/    /' >&2; else say "    (no log)"; fi
  say "----"
}

# ----------------------------------------------------------------- cache ----

# The cache both tools share: hack/dev-install fills it and writes TOOLS_ENV (the resolved
# tool paths); hack/dev-env reads TOOLS_ENV and keeps the last environment's logs in LOG_DIR.
CACHE=${CUTOVER_CACHE:-$HOME/.cache/cutover}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)   # physical: compared with /proc/PID/exe
# shellcheck disable=SC2034 # used by the scripts that source this file
LOG_DIR=$CACHE/logs
# shellcheck disable=SC2034 # used by the scripts that source this file
TOOLS_ENV=$CACHE/tools.env          # resolved tool paths, written by install, read by up

# ------------------------------------------------------------- processes ----

# proc_exe PID: the executable of a live process ("" if gone or a zombie).
# A binary replaced on disk (cargo rebuilding podsim) shows " (deleted)".
proc_exe() {
  local pid=$1 exe state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  printf '%s' "${exe% (deleted)}"
}

# proc_cmdline PID: the command line with NULs turned into spaces.
proc_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# free_ports N: N distinct free TCP ports on 127.0.0.1, space separated.
# All sockets are held open until every port is picked so none repeats.
free_ports() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# port_in_use PORT: true if something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION FN [ARGS...]: poll FN every 0.25 s.
wait_for() {
  local timeout=$1 desc=$2; shift 2
  local deadline
  deadline=$(awk -v t="$(now)" -v d="$timeout" 'BEGIN { printf "%d", t + d }')
  until "$@"; do
    if (( EPOCHSECONDS >= deadline )); then
      say "timed out after ${timeout}s waiting for $desc"
      return 1
    fi
    sleep 0.25
  done
}
