#!/bin/sh
# Starts Mosquitto on the files `vitrina-provision broker-init` made on the admin's machine.
#
# Those files belong to whoever made them there (root, or the admin's own user) and are
# mounted read-only: Mosquitto 2 reads its certificate and key only after it has dropped
# to its own user (uid 1883 in the eclipse-mosquitto image), and the dynamic-security
# plugin rewrites its file on every change. So, as root and before the broker starts,
# this copies what the broker reads into a directory of its own, owned by that user, and
# seeds the logins file into the data volume once: from then on the logins and roles that
# `lock-down`, `add-orchestrator` and `enrol-gateway` make live in the volume, and the
# admin's files are never chowned or written.
#
# The paths can be moved (VITRINA_BROKER_*) so that the script is checked outside the
# container too.
set -eu

source_dir=${VITRINA_BROKER_FILES:-/vitrina/broker}
secrets_dir=${VITRINA_BROKER_SECRETS:-/mosquitto/secrets}
data_dir=${VITRINA_BROKER_DATA:-/mosquitto/data}
user=${VITRINA_BROKER_USER:-mosquitto}
group=${VITRINA_BROKER_GROUP:-mosquitto}

for name in ca.crt server.crt server.key dynamic-security.json; do
  if [ ! -r "$source_dir/$name" ]; then
    echo "start-broker: $source_dir/$name is missing: run vitrina-provision broker-init" \
      "first (docker/README.md)" >&2
    exit 1
  fi
done

# The certificate and key, fresh from the admin's files at every start (a reissued
# certificate is taken by a restart).
mkdir -p "$secrets_dir"
for name in ca.crt server.crt server.key; do
  cp "$source_dir/$name" "$secrets_dir/$name"
done
chown -R "$user:$group" "$secrets_dir"
chmod 0700 "$secrets_dir"
chmod 0644 "$secrets_dir/ca.crt" "$secrets_dir/server.crt"
chmod 0600 "$secrets_dir/server.key"

# The logins: seeded once, then the broker's own.
mkdir -p "$data_dir"
if [ ! -e "$data_dir/dynamic-security.json" ]; then
  cp "$source_dir/dynamic-security.json" "$data_dir/dynamic-security.json"
fi
chmod 0600 "$data_dir/dynamic-security.json"
chown -R "$user:$group" "$data_dir"

exec "$@"
