#!/bin/sh
# Installs the system tools the native build and the tests need, if missing:
# a C/C++ toolchain, cmake, awk (the shim's wrappers are generated from their
# list), binutils' nm (a test reads the shim's exported symbols), util-linux's
# ipcs and unshare (the tests read the kernel's IPC state, in namespaces of
# their own), libcjson-dev (appshot-checkpoint's image JSON) and iproute2's ip (to bring up the loopback of the tests' network
# namespace), zsh (the completion tests run the zsh script in zsh), and the
# third-party programs the transparency tests run under the shim: PHP's
# command line with its sysvsem/sysvshm/sysvmsg extensions, Apache, PostgreSQL,
# redis, stress-ng and strace (test/tracer.test.ts: a tracer under the shim), and Go (golang-go: test/static.test.ts builds a Go HTTP
# server, a program that makes its own system calls). Their packages start no service here (no init system
# runs them). Runs as the first step of `npm install`.
set -e
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v awk >/dev/null 2>&1 || missing="$missing mawk"
command -v nm >/dev/null 2>&1 || missing="$missing binutils"
{ command -v ipcs && command -v unshare; } >/dev/null 2>&1 || missing="$missing util-linux"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -f /usr/include/cjson/cJSON.h ] || missing="$missing libcjson-dev"
command -v zsh >/dev/null 2>&1 || missing="$missing zsh"
command -v php >/dev/null 2>&1 || missing="$missing php-cli"
command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || missing="$missing apache2"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$missing postgresql"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v stress-ng >/dev/null 2>&1 || missing="$missing stress-ng"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
command -v go >/dev/null 2>&1 || [ -x /usr/lib/go/bin/go ] || missing="$missing golang-go"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "appshot: missing system packages:$missing; install them (Debian: apt-get install$missing) and run npm install again" >&2
  exit 1
fi
echo "appshot: installing system packages:$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
