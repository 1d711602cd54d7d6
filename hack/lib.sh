# shellcheck shell=bash
# Shared helpers for hack/dev-env. Sourced, never executed.
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

# ----------------------------------------------------------------- steps ----

# [STEP_OPTIONAL=1] step NAME "description" CHECK_FN RUN_FN
#
# Runs RUN_FN with all output in $LOG_DIR/install-NAME.log unless CHECK_FN
# already succeeds (then the step is "cached"). After RUN_FN, CHECK_FN must
# succeed, so a step cannot "pass" without producing what it promised.
# A failed step exits the script, unless STEP_OPTIONAL=1: then it is reported,
# appended to FAILED_OPTIONAL, and the script goes on.
#
# Never call `step` inside if/while/||/&&: in such a context bash ignores
# `set -e` in everything it runs — even in a subshell that says `set -e` — so a
# failing command in the middle of RUN_FN would go unnoticed.
FAILED_OPTIONAL=()
step() {
  local name=$1 desc=$2 check=$3 run=$4 optional=${STEP_OPTIONAL:-0}
  local log="$LOG_DIR/install-$name.log" t0 rc
  t0=$(now)
  if "$check" >/dev/null 2>&1; then
    printf '==> %-14s %s: %scached%s (%s)\n' "[$name]" "$desc" "$_c_grn" "$_c_off" "$(elapsed "$t0")" >&2
    return 0
  fi
  printf '==> %-14s %s ... (log: %s)\n' "[$name]" "$desc" "$log" >&2
  local errexit=0; [[ $- == *e* ]] && errexit=1
  set +e
  # 8>&- 9>&-: helpers that daemonize (wineserver) must not keep our lock fds.
  ( set -euo pipefail; "$run" ) >"$log" 2>&1 </dev/null 8>&- 9>&-
  rc=$?
  (( errexit )) && set -e
  if (( rc == 0 )) && ! "$check" >>"$log" 2>&1; then
    echo "step finished but its result check ($check) failed" >>"$log"
    rc=99
  fi
  if (( rc != 0 )); then
    printf '%sFAILED%s step [%s] (%s) after %s, exit %s\n' "$_c_red" "$_c_off" "$name" "$desc" "$(elapsed "$t0")" "$rc" >&2
    show_tail "$log" 40
    if (( optional )); then FAILED_OPTIONAL+=("$name"); return 0; fi
    exit "$rc"
  fi
  ok "[$name] done in $(elapsed "$t0")"
}

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
