#!/usr/bin/env bash
# Install edge.listen as a systemd service on a Raspberry Pi (64-bit Pi OS) or any Debian machine:
#
#   sudo tools/install_service.sh                       # default microphone
#   sudo tools/install_service.sh --device 2 --threshold 0.85
#
# Creates the system user "kws" (group audio), a venv in /opt/kws-edge with only the edge extra (no
# PyTorch), a copy of models/, /etc/default/kws-listen holding the extra edge.listen arguments given here,
# and the unit tools/kws-listen.service; then enables and starts it. Run it again to update.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/kws-edge
[ "$(id -u)" -eq 0 ] || { echo "install_service.sh: run it as root (sudo)" >&2; exit 2; }

dpkg -s python3-venv libportaudio2 >/dev/null 2>&1 || apt-get install -y python3-venv libportaudio2
id kws >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin kws
usermod -a -G audio kws

install -d "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade "$ROOT[edge]"
rm -rf "$PREFIX/models.new" && cp -r "$ROOT/models" "$PREFIX/models.new"
rm -rf "$PREFIX/models" && mv "$PREFIX/models.new" "$PREFIX/models"
# the service must not be able to change its own code or model
chown -R root:root "$PREFIX" && chmod -R go-w "$PREFIX"

printf 'KWS_ARGS="%s"\n' "$*" > /etc/default/kws-listen
install -m 0644 "$ROOT/tools/kws-listen.service" /etc/systemd/system/kws-listen.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable kws-listen
    systemctl restart kws-listen
    echo "kws-listen is running; detections: journalctl -u kws-listen -o cat -f"
else
    echo "installed; systemd is not running here, so start it on the device: systemctl enable --now kws-listen"
fi
