#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and Mosquitto answer on 127.0.0.1: start them, or
# install them from Debian's packages first. Exits non-zero, loudly, if one
# still cannot be reached: the test suite never skips for a missing service.
set -u

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
installed=0
install() {
  if [ "$installed" -eq 0 ]; then as_root apt-get update -qq || true; installed=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
wait_port() { for _ in $(seq 1 50); do listening "$1" && return 0; sleep 0.2; done; return 1; }

start_postgresql() {
  command -v pg_ctlcluster >/dev/null || install postgresql
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$version" ] || { echo "services: no PostgreSQL cluster under /etc/postgresql" >&2; return 1; }
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  # Tests connect as postgres without a password from 127.0.0.1.
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
}

start_redis() {
  command -v redis-server >/dev/null || install redis-server
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

start_mosquitto() {
  command -v mosquitto >/dev/null || install mosquitto mosquitto-clients
  as_root mkdir -p /run/mosquitto /var/lib/mosquitto /var/log/mosquitto
  as_root chown mosquitto: /run/mosquitto /var/lib/mosquitto /var/log/mosquitto 2>/dev/null || true
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
}

status=0
for entry in "PostgreSQL 5432 start_postgresql" "Redis 6379 start_redis" "Mosquitto 1883 start_mosquitto"; do
  set -- $entry
  if ! listening "$2"; then
    echo "services: $1 is not answering on 127.0.0.1:$2; starting it" >&2
    "$3" || true
    if ! wait_port "$2"; then
      echo "services: ERROR: $1 is still unreachable on 127.0.0.1:$2" >&2
      status=1
    fi
  fi
done
# Tools the tests call directly.
command -v mosquitto_pub >/dev/null || install mosquitto-clients
exit $status
