#!/bin/sh
# Fill in alertmanager.yml's ${VARIABLES} from the environment, then run Alertmanager on the result
# (it reads no variables itself). A value may hold any character but a single quote or a newline.
set -eu
awk '{
  out = ""; line = $0
  while (match(line, /\$\{[A-Z_]+\}/)) {
    out = out substr(line, 1, RSTART - 1) ENVIRON[substr(line, RSTART + 2, RLENGTH - 3)]
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}' "${1:-/etc/alertmanager/alertmanager.yml}" > /tmp/alertmanager.yml
[ "${RENDER_ONLY:-}" = 1 ] && exec cat /tmp/alertmanager.yml
exec /bin/alertmanager --config.file=/tmp/alertmanager.yml --storage.path=/alertmanager
