# Sourced by .ci/run: makes sure the container tests can start their own Docker Engine.
#
# The tests (tests/containers/conftest.py) start `dockerd` themselves, on a private
# socket and data root in a temporary directory, and stop it by PID; nothing here
# starts a daemon. This installs the distribution's docker.io when `dockerd` is
# missing (without letting the package start a system daemon), and defines
# `docker_cleanup`, which .ci/run traps on EXIT: it stops, by the PIDs the tests
# recorded, a test daemon an interrupted test run could not stop itself.

if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
  echo "== installing docker.io (the container tests start their own dockerd)"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d exit 101: "no services started by package scripts".
  docker_no_daemons=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    docker_no_daemons=1
  fi
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  if [ -n "$docker_no_daemons" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# The tests append the PID of each dockerd they start to this file.
AIOFLOW_TEST_DOCKERD_PIDS="$(mktemp -t aioflow-dockerd-pids.XXXXXX)"
export AIOFLOW_TEST_DOCKERD_PIDS

docker_cleanup() {
  local pid
  if [ -f "$AIOFLOW_TEST_DOCKERD_PIDS" ]; then
    while read -r pid; do
      # Only a dockerd the tests started and that still runs (a PID is never guessed).
      if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "dockerd" ]; then
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done < "$AIOFLOW_TEST_DOCKERD_PIDS"
    rm -f "$AIOFLOW_TEST_DOCKERD_PIDS"
  fi
}
