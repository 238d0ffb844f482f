#!/usr/bin/env bash
# Real recorded music for benchmarks and for the shipped base autoencoder, from Debian's archive (never
# committed). Each set is one Debian package; its licence is the one in /usr/share/doc/PKG/copyright.
#
#   set          package (Debian 12)        what                                                licence
#   nexuiz       nexuiz-music 2.5.2         Nexuiz soundtrack, 18 tracks (rock/industrial/       GPL-2+
#                                           electronic), ogg: evaluation set 1
#   openarena    openarena-088-data 0.8.8   OpenArena 0.8.8 music, 7 tracks, 11 min (rock/       GPL-2+
#                                           metal/electronic), ogg from pak6-patch088.pk3:
#                                           evaluation set 2
#   warzone2100  warzone2100-music 4.3.3    Warzone 2100 soundtracks (original, legacy,          GPL-2+; Legacy and
#                                           aftermath), 30 tracks, 243 min (electronic/          Aftermath also CC-BY-SA-3.0+
#                                           orchestral), opus renamed .ogg: base training only   (albums/*/license.txt)
#   asc          asc-music 1.3              Advanced Strategic Command music, 3 tracks, 18 min    GPL-2+
#                                           (rock), mp3: base training only
#
# The evaluation sets (nexuiz, openarena) are never used to train anything shipped; the base sets
# (warzone2100, asc) are never used to judge. Different composers in every set.
#
# Usage: bash benchmarks/fetch_real_music.sh [SET] [DEST]   (default SET nexuiz, DEST data/real/SET)
#        bash benchmarks/fetch_real_music.sh DEST           (the old form: the Nexuiz set into DEST)
set -euo pipefail
case "${1:-}" in
  nexuiz|openarena|warzone2100|asc) set_name=$1; dest=${2:-data/real/$1} ;;
  *) set_name=nexuiz; dest=${1:-data/real/nexuiz} ;;
esac
if ls "$dest"/*.ogg "$dest"/*.mp3 >/dev/null 2>&1; then echo "$dest"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
get() { (cd "$tmp" && apt-get download "$1" >/dev/null 2>&1) && dpkg -x "$tmp"/"$1"_*.deb "$tmp/x"; }
mkdir -p "$dest"
case $set_name in
  nexuiz)
    get nexuiz-music
    (cd "$tmp" && unzip -q -o x/usr/share/games/nexuiz/data/music.pk3 'sound/cdtracks/*')
    mv "$tmp"/sound/cdtracks/*.ogg "$dest"/ ;;
  openarena)
    get openarena-088-data
    (cd "$tmp" && unzip -q -o x/usr/share/games/openarena/baseoa/pak6-patch088.pk3 'music/*')
    mv "$tmp"/music/*.ogg "$dest"/ ;;
  warzone2100)
    get warzone2100-music
    root="$tmp/x/usr/share/games/warzone2100/music"
    for f in "$root"/*.opus "$root"/albums/*/*.opus; do  # Ogg Opus: the .ogg name lets libsndfile read it
      album=$(basename "$(dirname "$f")"); [ "$album" = music ] && album=menu
      mv "$f" "$dest/${album}_$(basename "$f" .opus).ogg"
    done
    for lic in "$root"/albums/*/license.txt; do cp "$lic" "$dest/LICENSE-$(basename "$(dirname "$lic")").txt"; done ;;
  asc)
    get asc-music
    mv "$tmp"/x/usr/share/games/asc/music/*.mp3 "$dest"/ ;;
esac
echo "$dest"
