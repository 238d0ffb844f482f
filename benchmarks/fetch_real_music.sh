#!/usr/bin/env bash
# Real recorded music for benchmarks, from Debian's archive (never committed):
# the Nexuiz soundtrack (GPL-2+), 18 rock/industrial/electronic tracks as ogg.
# Usage: bash benchmarks/fetch_real_music.sh [DEST]   (default: data/real/nexuiz)
set -euo pipefail
dest=${1:-data/real/nexuiz}
if ls "$dest"/*.ogg >/dev/null 2>&1; then echo "$dest"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download nexuiz-music >/dev/null)
dpkg -x "$tmp"/nexuiz-music_*.deb "$tmp/x"
mkdir -p "$dest"
(cd "$tmp" && unzip -q -o x/usr/share/games/nexuiz/data/music.pk3 'sound/cdtracks/*')
mv "$tmp"/sound/cdtracks/*.ogg "$dest"/
echo "$dest"
