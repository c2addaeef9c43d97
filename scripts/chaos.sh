#!/bin/sh
# make chaos: herd's fault scenarios, each a Go test against the real
# binary (or the supervisor with fake processes), bounded in time, on
# loopback, printing one table of what each measured. A scenario that does
# not hold fails the run (exit 1).
#
# Scenarios (the tests named here; add a row by adding a test that logs a
# line starting "chaos: "), in issue 13's order:
#   kill storm                cmd/herd TestKillStormKeepsServing
#                             cluster  TestKillStormNeverEmptiesTheCluster (fake processes)
#   reload storm              cmd/herd TestReloadsUnderLoadDropNothing
#   scale storm               cmd/herd TestScaleUnderLoadDropsNothing
#   upgrade storm             cmd/herd TestUpgradesUnderLoadDropNothingAndPIDFileFollows
#   SIGKILL primary, acked    cmd/herd TestAcknowledgedWritesSurviveSIGKILLOfThePrimary
#   SIGSTOP primary           cmd/herd TestStatusOfAStoppedPrimaryTimesOutInSeconds
#   SIGSTOP worker            cmd/herd TestHungWorkerIsReplaced
#   Redis stopped, restarted  cmd/herd TestRedisGoneAnswers503AndRecovers
#   full disk                 cmd/herd TestFullDiskAnswers507 (mounts a tmpfs: root)
#   5,000 idle connections    cmd/herd TestFiveThousandIdleConnections
#   slowloris                 cmd/herd TestSlowlorisDoesNotStopHealthz
#   descriptor exhaustion     cmd/herd TestDescriptorExhaustionKeepsConnectionsWaiting
#   blocked worker socket     cluster  TestDrainOfAWorkerThatDoesNotReadDoesNotBlockTheLoop
#   every worker fails start  cluster  TestWorkersThatCannotStartStopAFreshPrimary
#   hostile control dir       cmd/herd TestUnusableControlSocketDirectoryDoesNotStopTheServer
#   a worker out of descriptors cmd/herd TestWorkerOutOfDescriptorsIsUnhealthyAndSkipped, TestWorkerOutOfDescriptorsIsRecycledUnderSharedBalance
#   primary gone, a write      cmd/herd TestPrimaryGoneWriteIsNotSentAnd503
#   a real program fails start cmd/herd TestProgramWhoseWorkersCannotStartExits3 (builds examples/hello)
# Each test bounds itself (seconds to about a minute on a loaded machine);
# the whole run takes several minutes under -race.
set -u
GO=${GO:-go}
out=$(mktemp)
trap 'rm -f "$out"' EXIT INT TERM
status=0
run() { # package, test regexp
	if ! "$GO" test -race -count=1 -timeout 20m -v "$1" -run "$2" >>"$out" 2>&1; then
		status=1
	fi
}
run ./cmd/herd/ '^(TestKillStormKeepsServing|TestReloadsUnderLoadDropNothing|TestScaleUnderLoadDropsNothing|TestUpgradesUnderLoadDropNothingAndPIDFileFollows|TestAcknowledgedWritesSurviveSIGKILLOfThePrimary|TestStatusOfAStoppedPrimaryTimesOutInSeconds|TestHungWorkerIsReplaced|TestRedisGoneAnswers503AndRecovers|TestFullDiskAnswers507|TestFiveThousandIdleConnections|TestSlowlorisDoesNotStopHealthz|TestDescriptorExhaustionKeepsConnectionsWaiting|TestUnusableControlSocketDirectoryDoesNotStopTheServer)$'
run ./cmd/herd/ '^(TestWorkerOutOfDescriptorsIsUnhealthyAndSkipped|TestWorkerOutOfDescriptorsIsRecycledUnderSharedBalance|TestPrimaryGoneWriteIsNotSentAnd503|TestProgramWhoseWorkersCannotStartExits3)$'
run ./cluster/ '^(TestKillStormNeverEmptiesTheCluster|TestDrainOfAWorkerThatDoesNotReadDoesNotBlockTheLoop|TestWorkersThatCannotStartStopAFreshPrimary)$'

echo
echo "herd chaos, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| scenario (test) | verdict | measured |"
echo "|---|---|---|"
# One row per test: its verdict and the "chaos: " lines it logged. Tests
# may run in parallel, so a line belongs to the test named by the last
# "=== RUN/CONT/NAME" header before it (a subtest's lines to its parent).
grep -E -- '^(=== (RUN|CONT|NAME) |--- (PASS|FAIL|SKIP):|    [a-z0-9_]+_test\.go:[0-9]+: chaos: )' "$out" | awk '
	/^=== / { cur = $3; sub(/\/.*/, "", cur); next }
	/chaos: / { sub(/.*chaos: /, ""); gsub(/\|/, "/"); m[cur] = (m[cur] == "" ? $0 : m[cur] "; " $0); next }
	/^--- / { v = ($2 == "PASS:" ? "ok" : ($2 == "SKIP:" ? "skipped" : "FAILED")); printf "| %s | %s | %s |\n", $3, v, m[$3]; delete m[$3] }
'
for t in $(grep -o -- '    --- [A-Z]*: TestUnusable[A-Za-z0-9_/-]*' "$out" | awk '{print $2 $3}'); do
	case $t in PASS:*) v=ok ;; *) v=FAILED ;; esac
	printf '| %s | %s | one warning line, the server serves |\n' "${t#*:}" "$v"
done
if [ "$status" -ne 0 ]; then
	echo
	echo "chaos: a scenario failed; its output:" >&2
	grep -v '^\s*{' "$out" | tail -50 >&2
fi
exit $status
