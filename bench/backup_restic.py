"""Benchmark: nightly backups with restic on >= 1 GiB of data, and a restore onto a fresh host.

Targets (issue: backups): an incremental backup with nothing changed takes <= 10 % of the first
backup's time; also measured: an incremental with 1 % of the media changed, and the restore of the
latest snapshots onto a fresh host (PostgreSQL installed there by the restore, then the data alone).
Run as root after scripts/setup, with no `bk-b*` lab hosts up:
    .venv/bin/python bench/backup_restic.py [--media-mib 1024] [--rows 800000] [--repeat 3]
        [--no-restore] [--keep]
Results: bench/README.md and docs/backup.md.

What runs is what a user runs: `fedictl init` writes an inventory for two lab hosts (bk-bsrc: the
app's data, PostgreSQL and the sftp repository, reached as backups.bench.test; bk-bdst: fresh),
playbooks/database.yml and playbooks/backup.yml deploy, then each backup is
`systemctl start fedictl-backup.service` on bk-bsrc (the unit the nightly timer starts), and the
restore is `fedictl backup restore --app mastodon --to bk-bdst`. A backup's time is the unit's own
run, from systemd's ExecMainStartTimestamp to ExecMainExitTimestamp; the wall time seen from
here (which adds ~1 s of `fedictl lab ssh` per call) is printed beside it. The incremental with
nothing changed runs `--repeat` times and its median counts; the load average of this machine is
printed with every figure. The data is random (incompressible, like photos and video): media
files of 64 KiB to 4 MiB in a tree like Mastodon's, and a statuses table with `--rows` rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
FEDICTL = str(VENV_BIN / "fedictl")
PLAYBOOK = str(VENV_BIN / "ansible-playbook")
SRC, DST = "bk-bsrc", "bk-bdst"
REPO_HOST = "backups.bench.test"
MEDIA = "/srv/bench/media"
DB, OWNER = "bench_social", "bench_owner"

MAKE_MEDIA = r"""
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
rng = random.Random(7)
sizes = [64 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20]
n = done = 0
while done < total:
    d = os.path.join(root, "media_attachments", "files", f"{n // 1000:03d}", f"{n // 50 % 20:03d}")
    os.makedirs(d, exist_ok=True)
    size = min(rng.choice(sizes), total - done)
    with open(os.path.join(d, f"{n:06d}.jpg"), "wb") as f:
        f.write(os.urandom(size))
    n += 1; done += size
print(n)
"""

CHANGE_MEDIA = r"""
import os, sys
root, share = sys.argv[1], float(sys.argv[2])
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
total = sum(os.path.getsize(p) for p in files)
changed = 0
for p in files[:: max(1, int(1 / share))]:
    if changed >= total * share:
        break
    size = os.path.getsize(p)
    with open(p, "wb") as f:
        f.write(os.urandom(size))
    changed += size
print(changed, total)
"""

SEED_SQL = """
CREATE TABLE IF NOT EXISTS statuses (id bigserial PRIMARY KEY, account_id bigint, text text,
  created_at timestamptz, data jsonb);
INSERT INTO statuses (account_id, text, created_at, data)
SELECT g % 5000, md5(g::text) || ' ' || repeat(md5((g * 7)::text), 3),
       now() - g * interval '1 minute', jsonb_build_object('n', g, 'lang', 'en')
FROM generate_series(1, {rows}) AS g;
"""


def run(argv: list[str], env: dict[str, str] | None = None, input_text: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env,
                          input=input_text, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed ({proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")  # fmt: skip
    return proc.stdout


def ssh(host: str, command: str, input_text: str | None = None) -> str:
    return run([FEDICTL, "lab", "ssh", host, "--", command], input_text=input_text)


def timed(label: str, func: Callable[..., object], *args: object) -> float:
    start = time.monotonic()
    func(*args)
    took = time.monotonic() - start
    print(f"{label}: {took:.1f} s", file=sys.stderr, flush=True)
    return took


def status() -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(ssh(SRC, "cat /var/lib/fedictl/backup/status.json"))["apps"][
        "mastodon"
    ]
    return entry


UNIT_TIME = (
    "systemctl start fedictl-backup.service && systemctl show --value"
    " -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic fedictl-backup.service"
)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def backup_now(label: str) -> dict[str, Any]:
    """One backup by the nightly unit: its own run time, the wall time from here, the load."""
    before = load()
    start = time.monotonic()
    started, exited = (int(v) for v in ssh(SRC, UNIT_TIME).split())
    wall = time.monotonic() - start
    entry = status()
    assert entry["last_error"] is None, entry
    took = (exited - started) / 1e6
    print(f"{label}: {took:.1f} s (wall {wall:.1f} s, load {before}-{load()})", file=sys.stderr,
          flush=True)  # fmt: skip
    return {"unit": took, "wall": wall, "load": f"{before}-{load()}", "status": entry}


def make_inventory(tmp: Path, key: Path) -> tuple[Path, Path, dict[str, str]]:
    from fedictl import vault
    from fedictl.lab import Lab

    root = tmp / "project"
    root.mkdir()
    for item in ("playbooks", "roles", "plugins", "ansible.cfg"):
        (root / item).symlink_to(ROOT / item)
    env = dict(os.environ, FEDICTL_ROOT=str(root), XDG_CONFIG_HOME=str(tmp / "config"),
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")  # fmt: skip
    hosts = {h.name: h for h in Lab().hosts()}
    answers = {
        "org_name": "Bench", "admin_email": "admin@bench.test",
        "admin_ssh_keys": [(Path(str(key) + ".pub")).read_text().strip()],
        "apps": {"mastodon": {"local_domain": "social.bench.test", "db_name": DB,
                              "db_user": OWNER}},
        "servers": [{"name": n, "address": hosts[n].address, "user": "root", "port": 22,
                     "identity_file": hosts[n].identity_file, "host_key_checking": False}
                    for n in (SRC, DST)],
        "smtp": {"host": "smtp.bench.test", "port": 587, "tls": "starttls", "user": "",
                 "from_address": "n@bench.test"},
        "acme": {"email": "admin@bench.test"},
        "backup": {"repository": f"sftp:restic@{REPO_HOST}:/srv/restic/repo",
                   "retention": {"daily": 7, "weekly": 4, "monthly": 12}},
    }  # fmt: skip
    (tmp / "answers.yml").write_text(yaml.safe_dump(answers))
    run([FEDICTL, "init", "bench", "--answers", str(tmp / "answers.yml")], env=env)
    inv = root / "inventories" / "bench"
    password = tmp / "config" / "fedictl" / "vault" / "bench.pass"
    secret = vault.load_secret(password)
    data = vault.read_vault(inv / "group_vars/all/vault.yml", secret)
    data["vault_backup_ssh_private_key"] = key.read_text()
    vault.write_vault(inv / "group_vars/all/vault.yml", data, secret)
    return inv, password, env


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--media-mib", type=int, default=1024, help="media to generate (MiB)")
    parser.add_argument("--rows", type=int, default=800_000, help="rows in the statuses table")
    parser.add_argument("--repeat", type=int, default=3, help="incrementals with nothing changed")
    parser.add_argument("--no-restore", action="store_true", help="measure the backups only")
    parser.add_argument("--keep", action="store_true", help="leave the lab hosts up afterwards")
    args = parser.parse_args()
    run([FEDICTL, "lab", "up", "--alias", f"{SRC}={REPO_HOST}", SRC, DST])
    try:
        with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp_name:
            tmp = Path(tmp_name)
            key = tmp / "repo_key"
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)])
            inv, password, env = make_inventory(tmp, key)
            ansible = [
                PLAYBOOK,
                "-i",
                str(inv / "hosts.yml"),
                "--vault-password-file",
                str(password),
            ]
            print("preparing: sftp repository, PostgreSQL, data ...", file=sys.stderr, flush=True)
            ssh(SRC, "id restic >/dev/null 2>&1 || useradd -m -d /srv/restic restic; "
                     "install -d -o restic -g restic -m 0700 /srv/restic/.ssh /srv/restic/repo; "
                     "cat > /srv/restic/.ssh/authorized_keys; chown restic: /srv/restic/.ssh/*",
                input_text=Path(str(key) + ".pub").read_text())  # fmt: skip
            run([*ansible, "playbooks/database.yml"], env=env)
            files = ssh(SRC, f"python3 - {MEDIA} {args.media_mib}", MAKE_MEDIA).strip()
            ssh(SRC, f"runuser -u postgres -- psql -XAtq -d {DB} -c 'SET ROLE {OWNER}' "
                     "-f -", SEED_SQL.format(rows=args.rows))  # fmt: skip
            declaration = {"app": "mastodon", "database": {"name": DB, "user": OWNER},
                           "paths": [MEDIA], "cache_paths": [f"{MEDIA}/cache"],
                           "config_files": ["/srv/bench/env.production"], "owner": "root",
                           "units": [], "health_urls": []}  # fmt: skip
            ssh(SRC, "echo SECRET_KEY_BASE=bench > /srv/bench/env.production")
            write = "install -d /etc/fedictl/backup.d && cat > /etc/fedictl/backup.d/mastodon.json"
            ssh(SRC, write, json.dumps(declaration))
            db_size = ssh(
                SRC, f"runuser -u postgres -- psql -XAt -c \"SELECT pg_database_size('{DB}')\""
            )
            media_bytes = ssh(SRC, f"du -sb {MEDIA}").split()[0]
            run([*ansible, "playbooks/backup.yml"], env=env)
            ssh(SRC, "systemctl stop fedictl-backup.timer fedictl-backup-check.timer")

            first = backup_now("first backup")
            same_runs = [
                backup_now(f"incremental, nothing changed ({i + 1})") for i in range(args.repeat)
            ]
            same = sorted(same_runs, key=lambda r: r["unit"])[len(same_runs) // 2]
            changed = ssh(SRC, f"python3 - {MEDIA} 0.01", CHANGE_MEDIA).split()
            one_pct = backup_now("incremental, 1 % of media changed")
            repo_bytes = ssh(SRC, "du -sb /srv/restic/repo").split()[0]

            restore_argv = [FEDICTL, "backup", "restore", "-i", str(inv), "--vault-password-file",
                            str(password), "--app", "mastodon", "--to", DST]  # fmt: skip
            fresh = again = None
            if not args.no_restore:
                fresh = timed(
                    "restore onto the fresh host (installs PostgreSQL)", run, restore_argv, env
                )
                again = timed(
                    "restore again (--force, data only)", run, [*restore_argv, "--force"], env
                )
    finally:
        if not args.keep:
            subprocess.run([FEDICTL, "lab", "down", SRC, DST], capture_output=True, check=False)

    ratio = same["unit"] / first["unit"]
    wall_ratio = same["wall"] / first["wall"]
    gib, mib = 2**30, 2**20
    print(
        f"data: {int(media_bytes) / gib:.2f} GiB media in {files} files, database "
        f"{int(db_size) / mib:.0f} MiB ({args.rows} rows); "
        f"repository {int(repo_bytes) / gib:.2f} GiB"
    )
    runs = ", ".join(f"{r['unit']:.1f}" for r in same_runs)
    rows = [
        ("first backup", first, ""),
        (f"incremental, nothing changed (median of {runs})", same,
         f"{100 * ratio:.1f} % of the first (<= 10 %) {'OK' if ratio <= 0.10 else 'MISSED'}; "
         f"wall {100 * wall_ratio:.1f} %"),
        ("incremental, 1 % of media changed", one_pct,
         f"{100 * one_pct['unit'] / first['unit']:.1f} % of the first; "
         f"{int(changed[0]) / mib:.0f} MiB rewritten"),
    ]  # fmt: skip
    for label, run_, note in rows:
        entry = run_["status"]
        kinds = ", ".join(f"{k} {v} s" for k, v in entry.get("kind_seconds", {}).items())
        print(
            f"{label}: {run_['unit']:.1f} s (wall {run_['wall']:.1f} s, load {run_['load']}; "
            f"kinds side by side: {kinds}; {int(entry['bytes_added']) / mib:.1f} MiB added)  {note}"
        )
    if fresh is not None and again is not None:
        print(f"restore onto a fresh host: {fresh:.1f} s (with PostgreSQL's installation)")
        print(f"restore again (--force): {again:.1f} s")
    return 0 if ratio <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
