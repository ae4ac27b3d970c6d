#!/bin/sh
# Rolling deploy of askr hosts behind a load balancer, one host at a time (docs/multi-host.md):
#
#   ASKR_RELEASE=20261207-1 contrib/rolling-deploy.sh app1 app2 app3
#
# For each host in turn:
#   1. askr drain --wait    readiness answers 503, the balancer takes the host out; returns once
#                           no request has arrived for [admin] drain_quiet and none is in flight
#   2. switch the symlink   $ASKR_APP_DIR/current -> releases/$ASKR_RELEASE (atomic rename)
#   3. askr reload          rolling reload onto the new release; waits for its outcome
#   4. askr undrain         readiness follows the workers again; wait until it says ready
#   5. wait until the balancer sends the host traffic again (ASKR_IN_ROTATION, or ASKR_SETTLE s)
# The first failure stops the deploy, naming the host and the step; that host stays drained (out
# of rotation) and the hosts after it are untouched.
#
# Settings (environment; {host} is replaced by the host's name wherever it appears):
#   ASKR_RELEASE      required: a directory under $ASKR_APP_DIR/releases, or an absolute path
#   ASKR_REMOTE       how to run a command on a host (default: "ssh {host}"; e.g.
#                     "ssh deploy@{host}.example.net" or "ip netns exec {host}")
#   ASKR              the askr command on the hosts (default: askr)
#   ASKR_CONFIG       askr.toml on the hosts (default: /etc/askr/askr.toml)
#   ASKR_APP_DIR      the directory holding current and releases/ (default: /srv/app)
#   ASKR_DRAIN_TIMEOUT, ASKR_RELOAD_TIMEOUT, ASKR_READY_TIMEOUT   seconds (default 120 each)
#   ASKR_IN_ROTATION  a command run here, with {host}, that succeeds once the balancer sends the
#                     host traffic again, e.g. for HAProxy's stats socket:
#                     'echo "show stat" | socat stdio /run/haproxy/admin.sock | grep -q "^askr,{host},.*,UP,"'
#                     (polled every second, up to ASKR_READY_TIMEOUT)
#   ASKR_SETTLE       without ASKR_IN_ROTATION: seconds to wait instead (default 6: HAProxy's
#                     rise 2 x inter 2s in contrib/haproxy.cfg, plus margin)
# Paths and names must not contain spaces (they pass through ssh's remote shell).
set -eu

: "${ASKR_RELEASE:?set ASKR_RELEASE to the release to deploy (a directory under releases/)}"
: "${ASKR_REMOTE:=ssh {host}}"
: "${ASKR:=askr}"
: "${ASKR_CONFIG:=/etc/askr/askr.toml}"
: "${ASKR_APP_DIR:=/srv/app}"
: "${ASKR_DRAIN_TIMEOUT:=120}"
: "${ASKR_RELOAD_TIMEOUT:=120}"
: "${ASKR_READY_TIMEOUT:=120}"
: "${ASKR_IN_ROTATION:=}"
: "${ASKR_SETTLE:=6}"

if [ $# -eq 0 ]; then
    echo "usage: ASKR_RELEASE=NAME $0 HOST..." >&2
    exit 2
fi

say() { printf '%s rolling-deploy: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

# for_host TEXT: TEXT with every {host} replaced by $host
for_host() { printf '%s\n' "$1" | sed "s|{host}|$host|g"; }

# on_host CMD...: run CMD on $host through $ASKR_REMOTE (word-split on purpose: it is a prefix)
on_host() {
    # shellcheck disable=SC2046
    $(for_host "$ASKR_REMOTE") "$@"
}

askr_on_host() {
    # shellcheck disable=SC2046
    on_host $(for_host "$ASKR") "$@" --config "$(for_host "$ASKR_CONFIG")"
}

# poll CMD...: run CMD every second until it succeeds; fail after ASKR_READY_TIMEOUT s
poll() {
    waited=0
    until "$@"; do
        [ "$waited" -lt "$ASKR_READY_TIMEOUT" ] || return 1
        sleep 1
        waited=$((waited + 1))
    done
}

# The host's own state is the top-level "state" of askr status --json (one space of indent;
# its workers' states are nested deeper).
host_ready() {
    askr_on_host status --json 2>/dev/null | grep -q '^ "state": "ready"'
}

wait_in_rotation() {
    if [ -z "$ASKR_IN_ROTATION" ]; then
        sleep "$ASKR_SETTLE"
        return 0
    fi
    poll sh -c "$(for_host "$ASKR_IN_ROTATION")"
}

case "$ASKR_RELEASE" in
    /*) release=$ASKR_RELEASE ;;
    *) release=releases/$ASKR_RELEASE ;;
esac

for host in "$@"; do
    app_dir=$(for_host "$ASKR_APP_DIR")
    case "$release" in
        /*) release_path=$release ;;
        *) release_path=$app_dir/$release ;;
    esac

    say "$host: draining"
    askr_on_host drain --wait --timeout "$ASKR_DRAIN_TIMEOUT" \
        || fail "$host: askr drain --wait did not finish (is the host reachable? is the balancer probing /api/health/ready?); if the drain reached $host it stays drained (askr undrain puts it back); the hosts after it are untouched"

    on_host test -d "$release_path" \
        || fail "$host: no release at $release_path; $host is drained: run askr undrain there to put it back"
    say "$host: current -> $release"
    on_host ln -sfn "$release" "$app_dir/current.next" \
        && on_host mv -T "$app_dir/current.next" "$app_dir/current" \
        || fail "$host: could not switch $app_dir/current; $host is drained"

    say "$host: reloading"
    askr_on_host reload --timeout "$ASKR_RELOAD_TIMEOUT" \
        || fail "$host: the reload did not complete (askr status shows why; askr rolls back to the running code when the new code cannot boot); $host is drained and current points at $release"

    say "$host: undraining"
    askr_on_host undrain || fail "$host: askr undrain failed"
    poll host_ready || fail "$host: not ready ${ASKR_READY_TIMEOUT} s after undrain (askr status shows why)"
    wait_in_rotation || fail "$host: ready, but the balancer has not put it back within ${ASKR_READY_TIMEOUT} s"
    say "$host: done, serving $release"
done
say "all $# hosts on $ASKR_RELEASE"
