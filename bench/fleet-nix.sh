#!/usr/bin/env bash
# The fleet benchmark's Nix side (docs/fleet.md): the same role as
# bench/fleet.sh (bench/fleet-role.py), added to the Nix store and copied
# with `nix copy` into one chroot store per simulated host
# (`local?root=DIR`: a real store each, with its own database, and no ssh,
# which favours Nix), then its 1% change the same way. Prints Markdown rows
# like bench/fleet.sh's: store paths moved, NAR bytes moved, wall time.
#
#   FILES=100000 HOSTS=5 PARALLEL=2 bench/fleet-nix.sh
#
# Needs nix (Debian's nix-bin: runs as root on the local store).
set -euo pipefail

FILES=${FILES:-100000}
HOSTS=${HOSTS:-5}
PARALLEL=${PARALLEL:-4}
HERE=$(dirname "$(realpath "$0")")
WORK=$(mktemp -d /var/tmp/sysgen-fleet-nix.XXXXXX)
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
export NIX_REMOTE=local
NIX=(nix --extra-experimental-features nix-command)

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

copy_all() {
    local path=$1 t0 secs nar
    nar=$("${NIX[@]}" path-info --json "$path" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["narSize"])')
    t0=$(now)
    seq -w 1 "$HOSTS" | xargs -P "$PARALLEL" -I{} \
        "${NIX[@]}" copy --no-check-sigs --to "local?root=$WORK/hosts/h{}" "$path"
    secs=$(since "$t0")
    echo "| nix copy | $2 | $HOSTS | $((nar * HOSTS)) | $secs |"
}

python3 "$HERE/fleet-role.py" "$WORK/role" "$FILES"
echo "FILES=$FILES HOSTS=$HOSTS PARALLEL=$PARALLEL $("${NIX[@]}" --version) ($(nproc) cores)"
echo
echo "| tool | deploy | store paths moved | NAR bytes moved | wall s |"
echo "|---|---|---|---|---|"
v1=$(nix-store --add "$WORK/role")
copy_all "$v1" "first (whole role)"
python3 "$HERE/fleet-role.py" "$WORK/role" "$FILES" --change
v2=$(nix-store --add "$WORK/role")
copy_all "$v2" "1% change"
