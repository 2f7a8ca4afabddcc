#!/usr/bin/env bash
# setup.sh - install what the aws-hop lab and its integration tests need.
#
# Idempotent; run as root on Debian 12 (bookworm) or a close relative:
#   sudo tests/setup.sh
# When every package is already installed it only checks (dpkg -s) and exits,
# which takes a fraction of a second, so CI can call it on every run.
#
# The lab (tests/src/lab) runs real OpenSSH, MariaDB and PostgreSQL inside
# network namespaces; the tests also call the real clients (ssh, psql,
# mariadb). apt-get does not start the packaged daemons on hosts whose
# policy-rc.d forbids it (containers); on a systemd host it does, in the root
# namespace, which is harmless: the lab uses its own addresses and ports.
set -euo pipefail

PACKAGES=(
  iproute2            # ip netns, veth pairs, routes
  openssh-server      # sshd for the bastion and the private instance
  openssh-client      # ssh, ssh-keygen
  mariadb-server      # mariadbd, mariadb-install-db
  mariadb-client      # mariadb (the client)
  postgresql          # initdb, pg_ctl, postgres, psql
  socat               # relays in benchmarks and ad-hoc debugging
  tmux                # the REPL test drives aws-hop through a real terminal
  procps              # ps, pgrep (used when debugging leftovers)
  netcat-openbsd      # nc, ad-hoc probes
  util-linux          # setpriv (run initdb/pg_ctl as postgres), mountpoint
  passwd              # useradd, usermod, userdel
  ca-certificates     # harmless, keeps apt happy on minimal images
  python3-venv        # the venv of the AWS fakes (moto and tests/aws_fakes)
  openssl             # the lab CA and the fakes' TLS certificate
  faketime            # libfaketime: hop_eice runs aws-hop with its clock minutes off
  libssl-dev          # building aws-ssm-bridge (native-tls -> openssl-sys)
  pkg-config          # openssl-sys finds libssl with it
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: must run as root (apt-get install; the lab itself also needs root)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg -s exits 0 for removed-but-configured packages too; check the status line.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" = 0 ]; then
  echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
else
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Sanity check: the binaries the lab runs by absolute path or name.
for b in /usr/sbin/sshd /usr/sbin/mariadbd ssh ssh-keygen mariadb mariadb-install-db psql setpriv ip useradd; do
  command -v "$b" >/dev/null || { echo "setup.sh: $b not found after install" >&2; exit 1; }
done
ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "setup.sh: no PostgreSQL server (initdb) found" >&2; exit 1; }

# The AWS side of the lab (tests/aws_fakes): moto plus our own front, in a venv at a
# fixed path that the lab looks for (tests/src/lab/aws.rs, VENV). Pinned: the fakes rely
# on moto's quirks and on botocore's signer. The venv is rebuilt only when the pins
# change (their list is recorded in the venv), so a second run takes a fraction of a
# second.
VENV=/opt/aws-hop-lab/venv
PINS=(
  'moto[server]==5.2.5'  # EC2, RDS, ELBv2, STS, ec2-instance-connect (stub) emulator
  'boto3==1.44.5'        # seeding moto, and the Python clients of the aws_lab tests
  'botocore==1.44.5'     # SigV4 verification in the fakes (its own signer recomputes)
  'websockets==17.4'     # the fake EICE endpoint and its test client
)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "${PINS[*]}" ]; then
  echo "setup.sh: venv $VENV up to date"
else
  echo "setup.sh: creating $VENV (${PINS[*]})"
  rm -rf "$VENV"
  # Debian's python3, not whatever python3 comes first in PATH (pyenv shims).
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  echo "${PINS[*]}" > "$VENV/.pins"
fi
"$VENV/bin/python" -c 'import moto, boto3, botocore, websockets' \
  || { echo "setup.sh: $VENV is broken; remove it and run again" >&2; exit 1; }
echo "setup.sh: ready"
