"""The role of the fleet benchmark (bench/fleet.sh, bench/fleet-nix.sh):
FILES files in 100 directories, 100 to 4,000 bytes of text each,
deterministic; with --change, the 1% change (every 100th file gets a line).

    python3 bench/fleet-role.py DIR FILES [--change]
"""
import os
import random
import sys

root, n = sys.argv[1], int(sys.argv[2])
if sys.argv[3:] == ["--change"]:
    for i in range(0, n, 100):
        with open(os.path.join(root, f"d{i % 100:02}", f"f{i:06}.txt"), "a") as f:
            f.write("changed in v2\n")
    sys.exit(0)
rng = random.Random(1)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(100, 4000)
    line = f"file {i} of the role, line of text for the corpus\n"
    with open(os.path.join(d, f"f{i:06}.txt"), "w") as f:
        f.write((line * (size // len(line) + 1))[:size])
