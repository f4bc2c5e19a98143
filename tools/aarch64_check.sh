#!/usr/bin/env bash
# Run the edge runtime on the shipped model on 64-bit Arm, emulated: the path a Raspberry Pi OS (64-bit)
# user takes (Debian bookworm arm64, a venv with only the edge extra, aarch64 wheels from PyPI), and check
# that it gives the same detections as this machine on the committed test clips.
#
#   sudo tools/aarch64_check.sh            # WORK=/var/tmp/kws-arm64 by default; the arm64 root is reused
#
# Needs root (debootstrap, chroot), Debian's qemu-user-static, binfmt-support and debootstrap (installed if
# missing), the Debian mirror and PyPI. First run: about 1 GB of disk, most of the time in debootstrap.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/kws-arm64}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
ARM_ROOT="$WORK/root"
started=$(date +%s)

command -v debootstrap >/dev/null && [ -e /usr/bin/qemu-aarch64-static ] ||
    apt-get install -y qemu-user-static binfmt-support debootstrap
# the kernel must hand arm64 programs to qemu
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

if [ ! -x "$ARM_ROOT/usr/bin/python3" ]; then
    mkdir -p "$WORK"
    debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,libsndfile1,ca-certificates "$SUITE" "$ARM_ROOT" "$MIRROR"
fi
cp /etc/resolv.conf "$ARM_ROOT/etc/resolv.conf"
# pip in the arm64 root trusts what this machine trusts (a proxy's own CA, as on many CI machines)
cp /etc/ssl/certs/ca-certificates.crt "$ARM_ROOT/etc/ssl/certs/ca-certificates.crt"

# the project, as a user would clone it (no runs, no venvs)
rm -rf "$ARM_ROOT/opt/kws" && mkdir -p "$ARM_ROOT/opt/kws"
tar -C "$ROOT" --exclude=./runs --exclude='./.venv*' --exclude=./.git -cf - pyproject.toml README.md edge kws models \
    tests/data/clips | tar -C "$ARM_ROOT/opt/kws" -xf -

echo "== arm64: $(chroot "$ARM_ROOT" uname -m), $(chroot "$ARM_ROOT" python3 --version)"
chroot "$ARM_ROOT" /bin/sh -c 'cd /opt/kws && { [ -x /opt/venv/bin/python ] || python3 -m venv /opt/venv; } &&
    export PIP_FIND_LINKS= &&
    /opt/venv/bin/pip install --quiet ".[edge]" &&
    /opt/venv/bin/pip list 2>/dev/null | grep -iE "^(onnxruntime|numpy|soundfile|soxr|sounddevice|torch|torchaudio|librosa) "'

listen_all() {  # $1: python command prefix; prints one line per clip: file, then its detections as JSON
    for clip in tests/data/clips/*.flac; do
        printf '%s ' "$(basename "$clip")"
        $1 -m edge.listen --wav "$clip" --json | tr '\n' ' '
        echo
    done
}
( cd "$ROOT" && listen_all "$PYTHON" ) > "$WORK/x86.txt"
chroot "$ARM_ROOT" /bin/sh -c "cd /opt/kws && $(declare -f listen_all); listen_all /opt/venv/bin/python" > "$WORK/arm64.txt"

echo "== detections (x86 | arm64)"
paste -d'|' "$WORK/x86.txt" "$WORK/arm64.txt"
echo "== took $(( $(date +%s) - started )) s; $(du -sh "$WORK" | cut -f1) in $WORK"
if cmp -s "$WORK/x86.txt" "$WORK/arm64.txt"; then
    echo "IDENTICAL: arm64 gives the same detections as x86"
else
    echo "DIFFERENT: see above"; exit 1
fi
