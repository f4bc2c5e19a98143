#!/usr/bin/env bash
# Install edge.listen as a systemd service on a Raspberry Pi (64-bit Pi OS) or any Debian machine:
#
#   sudo tools/install_service.sh                       # default microphone
#   sudo tools/install_service.sh --device 2 --threshold 0.85 --on-detect "/home/pi/bin/lights toggle"
#   sudo tools/install_service.sh --mqtt-url mqtt://homeassistant.local:1883
#   sudo tools/install_service.sh --wyoming --uri tcp://0.0.0.0:10400 --zeroconf   # edge.serve instead
#
# Creates the system user "kws" (group audio), a venv in /opt/kws-edge with only the edge extra (no
# PyTorch), a copy of models/, /etc/SERVICE.args holding the extra arguments given here (one per line,
# read as @/etc/SERVICE.args, so spaces and quotes arrive as given), and the unit tools/SERVICE.service,
# where SERVICE is kws-listen (edge.listen on the microphone) or, with --wyoming first, kws-serve
# (edge.serve for Home Assistant); then enables and starts it. kws-listen has no network unless its
# arguments name an MQTT broker. Run it again to update.
set -euo pipefail

# check_args ARG...: one argument per line can carry anything but a line break
check_args() {
    local arg
    for arg in "$@"; do
        case $arg in *$'\n'*)
            echo "install_service.sh: an argument holds a line break, which the service cannot pass: $arg" >&2
            return 2;;
        esac
    done
}

# write_args FILE ARG...: the arguments one per line, written to a temporary name and renamed
write_args() {
    local file=$1
    shift
    check_args "$@" || return
    if [ $# -gt 0 ]; then printf '%s\n' "$@" > "$file.tmp"; else : > "$file.tmp"; fi
    chmod 0644 "$file.tmp" && mv "$file.tmp" "$file"
}

[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0  # sourced (by the tests): the functions only

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/kws-edge
[ "$(id -u)" -eq 0 ] || { echo "install_service.sh: run it as root (sudo)" >&2; exit 2; }
SERVICE=kws-listen
if [ "${1:-}" = "--wyoming" ]; then SERVICE=kws-serve; shift; fi
check_args "$@" || exit 2  # before anything is installed

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

write_args "/etc/$SERVICE.args" "$@"
rm -f /etc/default/kws-listen  # where versions before the arguments file kept them
install -m 0644 "$ROOT/tools/$SERVICE.service" "/etc/systemd/system/$SERVICE.service"
dropin=/etc/systemd/system/kws-listen.service.d
if [ "$SERVICE" = kws-listen ] && printf '%s\n' "$@" | grep -q '^--mqtt-url'; then
    install -d "$dropin"  # MQTT needs the network that the unit otherwise denies
    printf '[Service]\nIPAddressDeny=\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n' > "$dropin/mqtt.conf"
elif [ "$SERVICE" = kws-listen ]; then
    rm -f "$dropin/mqtt.conf"
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "$SERVICE"
    systemctl restart "$SERVICE"
    echo "$SERVICE is running; its log: journalctl -u $SERVICE -o cat -f"
else
    echo "installed; systemd is not running here, so start it on the device: systemctl enable --now $SERVICE"
fi
