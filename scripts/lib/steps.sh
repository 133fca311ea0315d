# Sourced by the README's commands and the scripts they run: how a step reports itself.
#
# - A command that fails under `set -e` names itself, its exit code and its line before the script
#   exits, so no run of ours ends without a word (bash's ERR trap; set -E carries it into functions).
# - `progress_of WHAT PID LOG PATTERN` prints a line every 10 s while PID runs: how long so far and the
#   last line of LOG matching PATTERN (an extended regex), for steps that take minutes on a first run.
set -E
trap 'steps_status=$?; echo "${0##*/}: failed: \`$BASH_COMMAND\` exited $steps_status (${BASH_SOURCE[0]##*/}:$LINENO); see the lines above" >&2' ERR

progress_of() {
  local what=$1 pid=$2 log=$3 pattern=$4 start=$SECONDS last
  while kill -0 "$pid" 2>/dev/null; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null && sleep 1; done
    kill -0 "$pid" 2>/dev/null || break
    last=$(grep -E "$pattern" "$log" 2>/dev/null | tail -n 1 | cut -c1-100 || true)
    printf '%s: %d s%s\n' "$what" $((SECONDS - start)) "${last:+, $last}" >&2
  done
}
