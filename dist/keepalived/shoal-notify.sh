#!/bin/sh
# dist/keepalived/shoal-notify.sh - keepalived's notify hook: one log line
# per transition ("INSTANCE" NAME STATE PRIORITY), to syslog (journald) and
# to stderr (keepalived --log-console shows it).
# Install: /etc/keepalived/shoal-notify.sh, mode 0755, owned by root.
msg="vrrp $1 $2: now $3 (priority ${4:-?})"
logger -t shoal-vrrp -- "$msg" 2>/dev/null
echo "shoal-vrrp: $msg" >&2
exit 0
