#!/usr/bin/env bash
# The one test command (README): set-up, then lint, syntax, unit and
# integration tests beside every molecule scenario. Exits non-zero on any failure and ends
# with a summary line "N passed, N failed, N skipped".
#
#   scripts/test.sh                 everything
#   scripts/test.sh --quick         everything but the molecule scenarios
#   scripts/test.sh -s haproxy -s nfs   only these scenarios (after the checks)
#
# WEBFARM_MOLECULE_JOBS (default 2) scenarios run side by side; each writes its
# log to .cache/test-logs/<scenario>.log.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/bootstrap.sh all || { echo "bootstrap failed"; echo "0 passed, 1 failed"; exit 1; }
# shellcheck source=scripts/env.sh
. scripts/env.sh

QUICK=0
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    -s) shift; ONLY+=("$1") ;;
    *) echo "usage: $0 [--quick] [-s scenario]..." >&2; exit 2 ;;
  esac
  shift
done

LOGS="$REPO/.cache/test-logs"
mkdir -p "$LOGS"
PASSED=0 FAILED=0 SKIPPED=0
FAILURES=()
start_all=$(date +%s)

check() { # check NAME COMMAND...: run a check stage, log it, count it
  local name="$1" log="$LOGS/$1.log" t0 rc
  shift
  t0=$(date +%s)
  "$@" >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    PASSED=$((PASSED + 1)); printf 'PASS  %-28s %4ss\n' "$name" $(( $(date +%s) - t0 ))
  else
    FAILED=$((FAILED + 1)); FAILURES+=("$name")
    printf 'FAIL  %-28s %4ss  (log: %s)\n' "$name" $(( $(date +%s) - t0 )) "$log"
    tail -n 40 "$log" | sed 's/^/      | /'
  fi
}

syntax_check_all() {
  local pb rc=0
  for pb in site.yml playbooks/*.yml; do
    [ -f "$pb" ] || continue
    ansible-playbook --syntax-check -i inventories/lab/hosts.yml "$pb" || rc=1
    ansible-playbook --syntax-check -i inventories/production.example/hosts.yml "$pb" || rc=1
  done
  return $rc
}

collection_build() {
  local tmp; tmp="$(mktemp -d)"
  ansible-galaxy collection build --force --output-path "$tmp" . &&
  ansible-galaxy collection install --force -p "$tmp/installed" "$tmp"/colo-webfarm-*.tar.gz &&
  ANSIBLE_COLLECTIONS_PATH="$tmp/installed" ansible-doc -t filter colo.webfarm.members >/dev/null &&
  ANSIBLE_COLLECTIONS_PATH="$tmp/installed" ansible -i localhost, -c local localhost -m debug \
    -a "msg={{ 'web1.example.com' | colo.webfarm.route_id }}" | grep -q web1-example-com &&
  ANSIBLE_COLLECTIONS_PATH="$tmp/installed" ansible-doc -t role colo.webfarm.common >/dev/null
  local rc=$?
  rm -rf "$tmp"
  return $rc
}

filter_docs() {
  local f rc=0
  for f in plugins/filter/*.yml; do
    ansible-doc -t filter "colo.webfarm.$(basename "$f" .yml)" >/dev/null || { echo "no doc: $f"; rc=1; }
  done
  return $rc
}

pytest_suite() {
  local rc
  pytest -q -p no:cacheprovider tests/unit tests/integration "$@"
  rc=$?
  [ $rc -eq 5 ] && return 0 # no tests collected is not a failure of the suite
  return $rc
}

all_checks() {
  check yamllint            yamllint --strict .
  check ansible-lint        ansible-lint --profile production --strict
  check syntax-check        syntax_check_all
  check filter-docs         filter_docs
  check collection-build    collection_build
  check pytest              pytest_suite
  grep -E '^[0-9]+ passed|passed' "$LOGS/pytest.log" | tail -n 1 | sed 's/^/      pytest: /'
}

# With scenarios to run, the checks take one of the scenario slots (below):
# they run beside the first scenario instead of before every scenario (they
# need no containers), and never more than WEBFARM_MOLECULE_JOBS things run at
# once. --quick runs them here.
checks_job() { # in a subshell: the checks, their output and counts to files
  PASSED=0 FAILED=0 FAILURES=()
  all_checks >"$LOGS/checks.out" 2>&1
  printf '%s %s %s\n' "$PASSED" "$FAILED" "${FAILURES[*]}" >"$LOGS/checks.counts"
}
if [ $QUICK -eq 1 ]; then
  all_checks
fi

# ------------------------------------------------------------------ molecule --
run_scenario() { # in a subshell: exit code 0 pass, 1 fail, 3 skipped
  local s="$1" log="$LOGS/molecule-$1.log"
  if [ -x "molecule/$s/skip-unless" ] && ! "molecule/$s/skip-unless" >"$log" 2>&1; then
    return 3
  fi
  local rc=0
  # the shared test_sequence does not destroy first (.config/molecule/config.yml):
  # only when an aborted run left this scenario's containers or created-state
  if [ -n "$(docker ps -aq --filter "name=^$s-")" ] ||
     grep -qs '^created: true' "$HOME"/.ansible/tmp/molecule.*."$s"/state.yml; then
    molecule destroy -s "$s" >>"$log" 2>&1 || rc=$?
  fi
  [ $rc -eq 0 ] && { molecule test -s "$s" >>"$log" 2>&1 || rc=$?; }
  # molecule's destroy keeps named volumes; scenarios name theirs molecule-<scenario>-*
  docker volume ls -q --filter "name=molecule-$s-" | xargs -r docker volume rm >/dev/null 2>&1 || true
  return $rc
}

if [ $QUICK -eq 0 ]; then
  mapfile -t SCENARIOS < <(
    if [ ${#ONLY[@]} -gt 0 ]; then printf '%s\n' "${ONLY[@]}"
    else
      # longest first (this machine's last run, else molecule/durations.txt)
      # so the tail of the run is short
      for d in molecule/*/molecule.yml; do
        s="$(basename "$(dirname "$d")")"
        secs="$(cat "$LOGS/molecule-$s.seconds" 2>/dev/null ||
                awk -v s="$s" '$1 == s { print $2 }' molecule/durations.txt)"
        printf '%s %s\n' "${secs:-9999}" "$s"
      done | sort -rn | cut -d' ' -f2
    fi)
  # One base image per Debian release the chosen scenarios name (README,
  # Platforms): ${WEBFARM_BASE_IMAGE:-...} follows WEBFARM_DEBIAN (built by the
  # bootstrap above), ${WEBFARM_IMAGE_TRIXIE:-...} is Debian 13. Docker keeps
  # them: only the first run (or a change of scripts/image) builds.
  mapfile -t RELEASES < <(
    for s in "${SCENARIOS[@]}"; do
      grep -ho '\${WEBFARM_[A-Z_]*:-colo-webfarm/debian:[a-z]*}' "molecule/$s/molecule.yml" 2>/dev/null
    done | sed -e 's/^\${WEBFARM_BASE_IMAGE:-.*$/@lab/' -e 's/^.*debian:\([a-z]*\)}$/\1/' |
      sed "s/^@lab\$/$WEBFARM_DEBIAN/" | sort -u)
  if [ ${#RELEASES[@]} -gt 0 ]; then
    check "base-images" bash scripts/bootstrap.sh image "${RELEASES[@]}"
  fi
  JOBS="${WEBFARM_MOLECULE_JOBS:-2}"
  declare -A PID_OF=() T0=()
  finish() { # finish SCENARIO RC
    local s="$1" rc="$2" secs=$(( $(date +%s) - T0[$1] ))
    if [ "$s" = "_checks" ]; then # the checks job: its lines and counts
      local p f names
      cat "$LOGS/checks.out"
      read -r p f names <"$LOGS/checks.counts" || { p=0 f=1 names="checks"; }
      PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
      # shellcheck disable=SC2206 # the names have no spaces
      [ -n "$names" ] && FAILURES+=($names)
      return
    fi
    case $rc in
      0) PASSED=$((PASSED + 1)); echo "$secs" > "$LOGS/molecule-$s.seconds"
         printf 'PASS  %-28s %4ss\n' "molecule:$s" "$secs" ;;
      3) SKIPPED=$((SKIPPED + 1)); printf 'SKIP  %-28s       %s\n' "molecule:$s" "$(tail -n 1 "$LOGS/molecule-$s.log")" ;;
      *) FAILED=$((FAILED + 1)); FAILURES+=("molecule:$s")
         printf 'FAIL  %-28s %4ss  (log: %s)\n' "molecule:$s" "$secs" "$LOGS/molecule-$s.log"
         grep -E 'fatal:|FAILED|Error|ERROR|assert' "$LOGS/molecule-$s.log" | tail -n 30 | sed 's/^/      | /' ;;
    esac
  }
  reap_one() { # wait for any running scenario and record it
    local done_pid rc k
    wait -n -p done_pid; rc=$?
    for k in "${!PID_OF[@]}"; do
      if [ "${PID_OF[$k]}" = "$done_pid" ]; then finish "$k" "$rc"; unset "PID_OF[$k]"; fi
    done
  }
  T0[_checks]=$(date +%s)
  checks_job &
  PID_OF[_checks]=$!
  for s in "${SCENARIOS[@]}"; do
    while [ "${#PID_OF[@]}" -ge "$JOBS" ]; do reap_one; done
    T0[$s]=$(date +%s)
    run_scenario "$s" &
    PID_OF[$s]=$!
  done
  while [ "${#PID_OF[@]}" -gt 0 ]; do reap_one; done
fi

echo "total time: $(( $(date +%s) - start_all ))s"
[ ${#FAILURES[@]} -gt 0 ] && echo "failed: ${FAILURES[*]}"
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
