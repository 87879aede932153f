#!/bin/sh
# npm test. Other programs on this host use SysV IPC and ports while the
# suite runs, and so may another `npm test`: the suite runs in IPC and
# network namespaces of its own wherever the kernel allows them (as root, or
# through a user namespace), where every object it sees is its own. Where it
# cannot, it runs on the host and touches only what it made (see
# test/global-setup.ts). Arguments go to vitest.
set -e
if [ -z "$APPSHOT_TEST_NS" ]; then
  # npm, which started this script, stays in the host's namespaces: the
  # tests that look at the host look through it.
  APPSHOT_TEST_HOST_PID=$PPID
  export APPSHOT_TEST_HOST_PID
  if [ "$(id -u)" = 0 ] && unshare --ipc --net true 2>/dev/null; then
    APPSHOT_TEST_NS=private exec unshare --ipc --net sh "$0" "$@"
  elif unshare --user --map-root-user --ipc --net true 2>/dev/null; then
    APPSHOT_TEST_NS=private exec unshare --user --map-root-user --ipc --net sh "$0" "$@"
  fi
  echo "appshot tests: no private IPC and network namespace here (not root, no user namespaces): running on the host's; the suite touches only what it made" >&2
  APPSHOT_TEST_NS=shared
  export APPSHOT_TEST_NS
fi
if [ "$APPSHOT_TEST_NS" = private ]; then
  export APPSHOT_TEST_NS
  # A new network namespace starts with its loopback down.
  ip link set lo up
fi
exec npx vitest run "$@"
