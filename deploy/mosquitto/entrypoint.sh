#!/bin/sh
# Start Mosquitto with dynamic security (dynamic-security.conf). On the first start,
# create the plugin's file with the admin account from MOSQUITTO_ADMIN_USER and
# MOSQUITTO_ADMIN_PASSWORD; then `hub broker sync` adds the bridge and the devices.
set -eu
file=/mosquitto/data/dynamic-security.json
if [ ! -f "$file" ]; then
  : "${MOSQUITTO_ADMIN_USER:?set MOSQUITTO_ADMIN_USER (the hub's MQTT_ADMIN_URL user)}"
  : "${MOSQUITTO_ADMIN_PASSWORD:?set MOSQUITTO_ADMIN_PASSWORD}"
  mosquitto_ctrl dynsec init "$file" "$MOSQUITTO_ADMIN_USER" "$MOSQUITTO_ADMIN_PASSWORD"
  chown mosquitto:mosquitto "$file" 2>/dev/null || true
fi
exec mosquitto -c /mosquitto/config/mosquitto.conf
