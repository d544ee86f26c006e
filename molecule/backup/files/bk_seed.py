#!/usr/bin/python3
"""Seed the backup scenario's stand-in media: nested directories, names with spaces and non-ASCII
letters, sizes from empty to 1.5 MiB of random (incompressible) bytes, a private file, a symlink,
and a cache directory that must stay out of the backup. Test-only."""

from __future__ import annotations

import os
import random
import sys

media = sys.argv[1]
rng = random.Random(20261122)  # noqa: S311 - reproducible test data
os.makedirs(os.path.join(media, "cache", "remote"), exist_ok=True)
for i in range(60):
    sub = os.path.join(media, "media_attachments", "files", f"{i // 20:03d}", f"{i % 7:03d}")
    os.makedirs(sub, exist_ok=True)
    name = ["original.jpg", "small image.png", "vidéo ünïcode.mp4"][i % 3]
    size = [0, 17, 4096, 65_537, 1_500_000][i % 5]
    with open(os.path.join(sub, f"{i}-{name}"), "wb") as f:
        f.write(rng.randbytes(size))
os.makedirs(os.path.join(media, "accounts", "avatars"), exist_ok=True)
with open(os.path.join(media, "accounts", "avatars", "private.key"), "wb") as f:
    f.write(rng.randbytes(256))
os.chmod(os.path.join(media, "accounts", "avatars", "private.key"), 0o600)
link = os.path.join(media, "accounts", "latest")
if not os.path.lexists(link):
    os.symlink("avatars/private.key", link)
for i in range(10):
    with open(os.path.join(media, "cache", "remote", f"cached-{i}.bin"), "wb") as f:
        f.write(rng.randbytes(200_000))
