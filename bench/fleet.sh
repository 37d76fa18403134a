#!/usr/bin/env bash
# The fleet benchmark of docs/fleet.md: a role of FILES files deployed with
# `sysgen deploy` to HOSTS simulated hosts (scratch roots behind one real
# sshd on loopback), then a 1% change of it deployed again; beside rsync
# of the same trees over the same ssh, with the same parallelism. Prints
# the objects and bytes each moved and the wall times, as Markdown rows.
#
#   FILES=100000 HOSTS=50 PARALLEL=4 SYSGEN=target/release/sysgen bench/fleet.sh
#
# Needs: sshd, ssh, ssh-keygen, rsync, python3; runs as root (sshd, and
# the hosts' files are root's). Everything is under one work directory
# under /var/tmp, removed at the end (KEEP=1 keeps it).
set -euo pipefail

FILES=${FILES:-100000}
HOSTS=${HOSTS:-50}
PARALLEL=${PARALLEL:-4}
SYSGEN=$(realpath "${SYSGEN:-target/release/sysgen}")
WORK=$(mktemp -d /var/tmp/sysgen-fleet-bench.XXXXXX)

cleanup() {
    [ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# sshd on a free loopback port, its own keys.
mkdir -p "$WORK/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/client_key"
cp "$WORK/ssh/client_key.pub" "$WORK/ssh/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/ssh/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/ssh/host_key
AuthorizedKeysFile $WORK/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel ERROR
MaxSessions 200
MaxStartups 200:30:400
EOF
/usr/sbin/sshd -D -e -f "$WORK/ssh/sshd_config" 2>"$WORK/ssh/sshd.log" &
SSHD_PID=$!
SSH_OPTS=(-i "$WORK/ssh/client_key" -o "UserKnownHostsFile=$WORK/ssh/known_hosts"
    -o StrictHostKeyChecking=accept-new -o BatchMode=yes -o LogLevel=ERROR)
for _ in $(seq 50); do
    ssh "${SSH_OPTS[@]}" -p "$PORT" root@127.0.0.1 true 2>/dev/null && break
    sleep 0.2
done

# The role (bench/fleet-role.py): FILES files in 100 directories, 100 to
# 4,000 bytes each, deterministic; its 1% change rewrites every 100th file.
HERE=$(dirname "$(realpath "$0")")
python3 "$HERE/fleet-role.py" "$WORK/cfg/role" "$FILES"
change_one_percent() { python3 "$HERE/fleet-role.py" "$WORK/cfg/role" "$FILES" --change; }

newroot() {
    mkdir -p "$1/etc"
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$1/etc/passwd"
    printf 'root:x:0:\n' > "$1/etc/group"
}

# The deployer, the hosts, the inventory: each host is the role plus a
# file naming it.
newroot "$WORK/deployer"
echo '{ "trees": { "/srv/role": { "source": "role" } } }' > "$WORK/cfg/role.json"
{
    echo "[defaults]"
    echo "ssh = \"ssh://root@127.0.0.1:$PORT\""
    printf 'ssh_options = ['
    printf '"%s", ' "${SSH_OPTS[@]}"
    echo ']'
    echo 'confirm_within = "2m"'
    echo "program = \"$SYSGEN\""
} > "$WORK/cfg/fleet.toml"
for i in $(seq -w 1 "$HOSTS"); do
    newroot "$WORK/hosts/h$i"
    mkdir -p "$WORK/rsync/h$i"
    echo "{ \"include\": [\"role.json\"], \"files\": { \"/etc/hostname\": { \"content\": \"h$i\\n\" } } }" \
        > "$WORK/cfg/h$i.json"
    printf '[hosts.h%s]\nconfig = "h%s.json"\nroot = "%s"\n' "$i" "$i" "$WORK/hosts/h$i" \
        >> "$WORK/cfg/fleet.toml"
done

deploy() {
    local t0
    t0=$(now)
    "$SYSGEN" --root "$WORK/deployer" --json deploy "$WORK/cfg/fleet.toml" \
        --parallel "$PARALLEL" > "$WORK/deploy.json"
    local secs
    secs=$(since "$t0")
    python3 - "$1" "$secs" "$WORK/deploy.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[3]))
bad = [h["host"] for h in d["hosts"] if h["outcome"] not in ("switched", "unchanged")]
assert not bad, f"hosts failed: {bad}: {d}"
objects = sum(h["objects"] for h in d["hosts"])
nbytes = sum(h["bytes"] for h in d["hosts"])
print(f"| sysgen deploy | {sys.argv[1]} | {objects} | {nbytes} | {sys.argv[2]} |")
EOF
}

rsync_all() {
    local t0 secs
    t0=$(now)
    seq -w 1 "$HOSTS" | xargs -P "$PARALLEL" -I{} sh -c \
        "rsync -a --delete --stats -e 'ssh ${SSH_OPTS[*]} -p $PORT' '$WORK/cfg/role/' 'root@127.0.0.1:$WORK/rsync/h{}/' > '$WORK/rsync/h{}.stats'"
    secs=$(since "$t0")
    python3 - "$1" "$secs" "$WORK/rsync" "$HOSTS" <<'EOF'
import re, sys, glob
files = sent = 0
for p in glob.glob(sys.argv[3] + "/*.stats"):
    t = open(p).read()
    files += int(re.search(r"Number of regular files transferred: ([\d,]+)", t).group(1).replace(",", ""))
    sent += int(re.search(r"Total bytes sent: ([\d,]+)", t).group(1).replace(",", ""))
print(f"| rsync -a over ssh | {sys.argv[1]} | {files} | {sent} | {sys.argv[2]} |")
EOF
}

echo "FILES=$FILES HOSTS=$HOSTS PARALLEL=$PARALLEL sysgen=$SYSGEN ($(nproc) cores)"
echo
echo "| tool | deploy | objects (files) moved | bytes moved | wall s |"
echo "|---|---|---|---|---|"
deploy "first (whole role)"
rsync_all "first (whole role)"
change_one_percent
deploy "1% change"
rsync_all "1% change"
if command -v nix >/dev/null; then
    echo "(nix copy of the same role: bench/fleet-nix.sh)"
else
    echo "(nix copy: Nix is not installed on this machine)"
fi
echo
echo "deployer state: $(du -sh "$WORK/deployer/var/lib/sysgen" | cut -f1); one host's state: $(du -sh "$(ls -d "$WORK"/hosts/h* | head -1)/var/lib/sysgen" | cut -f1)"
