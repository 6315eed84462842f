#!/usr/bin/env bash
# Set up fputrace on a fresh Debian/Ubuntu machine, as root: system packages (the distribution's bcc
# Python module, kernel headers or the generic fallback, perf/bpftrace as peers, QEMU for the lab),
# a venv at ./.venv that sees the system bcc, and the project with its test dependencies.
# Idempotent: a second run only checks. Usage: sudo ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '[setup] %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo ./setup.sh): it installs system packages" >&2; exit 1; }

pkgs=(python3 python3-venv python3-dev gcc python3-bpfcc bpftrace bpftool linux-perf tmux
      qemu-system-x86 busybox-static cpio kmod xz-utils zstd e2fsprogs ca-certificates prometheus
      dmsetup wireguard-tools mdadm btrfs-progs iproute2 make openssl)
# (the lab's guests use the host root: dm-crypt, WireGuard, md raid6 and btrfs need their tools here;
#  make/openssl: the host workloads of tests/vmlab/host.py)
# Exact headers for the running kernel when the distribution has them, else the generic ones
# (fputrace merges the split Debian tree itself and says so in `fputrace doctor`).
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ! -e "/lib/modules/$(uname -r)/build" ] && ! dpkg -s linux-headers-amd64 >/dev/null 2>&1; then
  missing+=("headers")
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
  # prometheus is only a test peer (tests start their own on 127.0.0.1): if this run installed it,
  # stop and disable the distribution's service, which would listen on every interface
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  if [ ! -e "/lib/modules/$(uname -r)/build" ]; then
    apt-get install -y -q --no-install-recommends "linux-headers-$(uname -r)" >/dev/null 2>&1 \
      || apt-get install -y -q --no-install-recommends linux-headers-amd64 >/dev/null
  fi
fi

# The venv must be built on the system interpreter: that is where python3-bpfcc lives.
PY=/usr/bin/python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' >/dev/null 2>&1; then
  log "creating .venv (system site packages visible, for bcc)"
  rm -rf .venv
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c 'import fputrace, pytest, hypothesis, textual, numba' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing fputrace and its test dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch .venv/.installed
fi
log "ready: $(.venv/bin/fputrace --version)"
