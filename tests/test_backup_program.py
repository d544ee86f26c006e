"""The on-host backup program (roles/backup/files/fedictl_backup.py): its logic without a server.

Declarations, the choice of snapshots to restore, retention arguments, file manifests with their
hash cache, the comparisons restores and drills rely on (which must be able to fail), status and
metrics, and a whole backup run against a fake restic: success, a failing repository, a full disk.
The database parts need PostgreSQL and run in the molecule scenario `backup`.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PROGRAM = Path(__file__).resolve().parent.parent / "roles/backup/files/fedictl_backup.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fedictl_backup", PROGRAM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fedictl_backup"] = module
    spec.loader.exec_module(module)
    return module


fb = _load()

# The declaration an app role writes (the interface in roles/backup/README.md).
MASTODON = {
    "app": "mastodon",
    "database": {"name": "mastodon_production", "user": "mastodon"},
    "paths": ["/home/mastodon/shared/public/system"],
    "cache_paths": ["/home/mastodon/shared/public/system/cache"],
    "config_files": ["/home/mastodon/shared/.env.production"],
    "owner": "mastodon",
    "units": ["mastodon-web.service", "mastodon-sidekiq.service", "mastodon-streaming.service"],
    "health_urls": [
        "http://127.0.0.1:3000/health",
        "http://127.0.0.1:4000/api/v1/streaming/health",
    ],
}


# --- declarations --------------------------------------------------------------------------------


def test_the_interface_declaration_parses() -> None:
    decl = fb.parse_declaration(MASTODON, Path("/etc/fedictl/backup.d/mastodon.json"))
    assert decl.app == "mastodon" and decl.owner == "mastodon"
    assert decl.cache_paths == ["/home/mastodon/shared/public/system/cache"]
    assert decl.units[0] == "mastodon-web.service"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "unknown keys ['extra']"),
        ({"app": "Mastodon"}, "app must be"),
        ({"paths": ["relative/path"]}, "not an absolute path"),
        ({"paths": ["/srv/x/../../etc"]}, "not an absolute path"),
        ({"paths": ["/"]}, "not an absolute path"),
        ({"cache_paths": ["/var/cache/elsewhere"]}, "not inside any of paths"),
        ({"config_files": "/etc/x"}, "config_files must be a list"),
        ({"database": {"name": "DROP TABLE", "user": "x"}}, "database must be"),
        ({"owner": "root; rm"}, "owner must be"),
    ],
)
def test_bad_declarations_name_the_file_and_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(fb.BackupError, match=r"^/etc/fedictl/backup.d/mastodon.json: ") as exc:
        fb.parse_declaration({**MASTODON, **change}, Path("/etc/fedictl/backup.d/mastodon.json"))
    assert message in str(exc.value)


def test_a_declaration_is_named_after_its_app(tmp_path: Path) -> None:
    (tmp_path / "peertube.json").write_text(json.dumps(MASTODON))
    with pytest.raises(fb.BackupError, match=r"must be named mastodon\.json"):
        fb.load_declarations(tmp_path)
    (tmp_path / "peertube.json").write_text("{not json")
    with pytest.raises(fb.BackupError, match="invalid JSON"):
        fb.load_declarations(tmp_path)


def test_what_each_host_backs_up() -> None:
    cfg = fb.Config(host="db1", databases=[fb.Database("mastodon", "mastodon_production", "m")])
    decl = fb.parse_declaration(MASTODON, Path("mastodon.json"))
    s3_media = fb.parse_declaration(
        {**MASTODON, "paths": [], "cache_paths": []}, Path("mastodon.json")
    )
    assert fb.plan_apps(cfg, {}, []) == {"mastodon": ["db"]}  # the database host of a split setup
    assert fb.plan_apps(fb.Config(host="app1"), {"mastodon": decl}, []) == {
        "mastodon": ["files", "config"]
    }
    assert fb.plan_apps(cfg, {"mastodon": decl}, []) == {"mastodon": ["db", "files", "config"]}
    assert fb.plan_apps(fb.Config(host="a"), {"mastodon": s3_media}, []) == {"mastodon": ["config"]}
    assert fb.plan_apps(cfg, {"mastodon": decl}, ["peertube"]) == {}


# --- retention ------------------------------------------------------------------------------------


def test_forget_keeps_per_host_app_and_kind_in_one_call() -> None:
    cfg = fb.Config(
        host="web1", retention={"daily": 7, "weekly": 0, "monthly": 12}, keep_within="1d"
    )
    assert fb.forget_args(cfg, ["mastodon", "peertube"]) == [
        "forget", "--json", "--host", "web1", "--tag", "app:mastodon", "--tag", "app:peertube",
        "--group-by", "host,paths", "--keep-daily", "7", "--keep-monthly", "12",
        "--keep-within", "1d",
    ]  # fmt: skip
    with pytest.raises(fb.BackupError, match="keeps nothing"):
        fb.forget_args(fb.Config(host="x", retention={"daily": 0}), ["mastodon"])


def test_count_forgotten_reads_restics_json() -> None:
    out = json.dumps([{"keep": [{}], "remove": [{}, {}]}, {"keep": [{}], "remove": None}])
    assert fb.count_forgotten(out) == 2
    assert fb.count_forgotten("") == 0 and fb.count_forgotten("garbage") == 0


# --- choosing snapshots to restore ---------------------------------------------------------------


def snap(kind: str, run: str, time: str, host: str = "web1", sid: str = "") -> dict[str, Any]:
    return fb.snapshot_info({
        "id": sid or f"{kind}{run}".ljust(64, "0"), "time": time, "hostname": host,
        "paths": ["/x"], "tags": ["app:mastodon", f"kind:{kind}", f"run:{run}"],
        "summary": {"total_bytes_processed": 10, "data_added": 5, "total_files_processed": 2},
    })  # fmt: skip


SNAPS = [
    snap("db", "R1", "2026-01-01T03:00:01.123456789Z"),
    snap("files", "R1", "2026-01-01T03:00:05Z"),
    snap("config", "R1", "2026-01-01T03:00:09+00:00"),
    snap("db", "R2", "2026-01-02T03:00:01Z"),
    snap("files", "R2", "2026-01-02T03:00:05Z"),
    snap("config", "R2", "2026-01-02T03:00:09Z"),
]


def test_snapshot_info_reads_tags_and_summary() -> None:
    s = SNAPS[0]
    assert (s["app"], s["kind"], s["run"], s["time"]) == (
        "mastodon",
        "db",
        "R1",
        "2026-01-01T03:00:01Z",
    )
    assert (s["size"], s["added"], s["files"]) == (10, 5, 2)
    assert fb.parse_time("2026-01-01T04:00:00+01:00") == fb.parse_time("2026-01-01T03:00:00Z")


def test_latest_run_by_default_and_a_chosen_one_by_id_or_run() -> None:
    assert fb.choose_snapshots(SNAPS, "mastodon")["run"] == "R2"
    by_run = fb.choose_snapshots(SNAPS, "mastodon", "R1")
    assert {k: v["run"] for k, v in by_run["snapshots"].items()} == dict.fromkeys(fb.KINDS, "R1")
    assert fb.choose_snapshots(SNAPS, "mastodon", "run:R1")["run"] == "R1"
    by_id = fb.choose_snapshots(SNAPS, "mastodon", "filesR1")  # any snapshot of the run, by prefix
    assert by_id["snapshots"]["db"]["run"] == "R1"


def test_split_hosts_take_the_nearest_snapshot_of_each_kind() -> None:
    split = [
        snap("db", "D1", "2026-01-01T03:10:00Z", host="db1"),
        snap("db", "D2", "2026-01-02T03:40:00Z", host="db1"),
        snap("files", "A1", "2026-01-01T03:50:00Z", host="app1"),
        snap("config", "A1", "2026-01-01T03:50:02Z", host="app1"),
        snap("files", "A2", "2026-01-02T03:05:00Z", host="app1"),
        snap("config", "A2", "2026-01-02T03:05:01Z", host="app1"),
    ]
    plan = fb.choose_snapshots(split, "mastodon", "A1")
    assert plan["snapshots"]["db"]["run"] == "D1" and plan["snapshots"]["files"]["run"] == "A1"
    assert fb.choose_snapshots(split, "mastodon")["snapshots"]["files"]["run"] == "A2"


def test_unknown_ambiguous_or_missing_snapshots_are_errors() -> None:
    with pytest.raises(fb.BackupError, match="no snapshot or run 'nope'"):
        fb.choose_snapshots(SNAPS, "mastodon", "nope")
    with pytest.raises(fb.BackupError, match="several runs"):
        fb.choose_snapshots(SNAPS, "mastodon", "db")  # prefix of both runs' db snapshots
    with pytest.raises(fb.BackupError, match="holds no snapshot of peertube"):
        fb.choose_snapshots(SNAPS, "peertube")


# --- file manifests ------------------------------------------------------------------------------


def tree(root: Path) -> None:
    (root / "media/a").mkdir(parents=True)
    (root / "media/cache").mkdir()
    (root / "media/a/one.jpg").write_bytes(b"one")
    (root / "media/a/empty").write_bytes(b"")
    (root / "media/a/private").write_bytes(b"secret-ish")
    (root / "media/a/private").chmod(0o600)
    (root / "media/link").symlink_to("a/one.jpg")
    (root / "media/cache/big").write_bytes(b"x" * 1000)


def test_manifest_leaves_caches_out_and_reads_only_changed_files(tmp_path: Path) -> None:
    tree(tmp_path)
    roots, cache_dir = [str(tmp_path / "media")], [str(tmp_path / "media/cache")]
    manifest, cache, hashed = fb.build_manifest(roots, cache_dir, {})
    entries = manifest["entries"]
    assert hashed == 3 and set(entries) == {
        str(tmp_path / p)
        for p in ("media/a/one.jpg", "media/a/empty", "media/a/private", "media/link")
    }
    assert entries[str(tmp_path / "media/link")] == {"type": "symlink", "target": "a/one.jpg"}
    assert entries[str(tmp_path / "media/a/private")]["mode"] == "0600"
    again, cache, hashed = fb.build_manifest(roots, cache_dir, cache)
    assert hashed == 0 and again == manifest
    (tmp_path / "media/a/one.jpg").write_bytes(b"ONE")
    changed, _, hashed = fb.build_manifest(roots, cache_dir, cache)
    assert hashed == 1 and changed != manifest
    assert fb.dump_json_gz(manifest) == fb.dump_json_gz(json.loads(json.dumps(manifest)))


def test_missing_roots_are_recorded_not_fatal(tmp_path: Path) -> None:
    manifest, _, _ = fb.build_manifest([str(tmp_path / "not-yet")], [], {})
    assert manifest["roots"] == [] and manifest["missing_roots"] == [str(tmp_path / "not-yet")]


def test_verify_manifest_passes_on_equal_data_and_catches_each_difference(tmp_path: Path) -> None:
    tree(tmp_path)
    manifest, _, _ = fb.build_manifest(
        [str(tmp_path / "media")], [str(tmp_path / "media/cache")], {}
    )
    assert fb.verify_manifest(manifest)["ok"]
    (tmp_path / "media/a/one.jpg").write_bytes(b"0ne")  # same size, other content
    (tmp_path / "media/a/private").chmod(0o644)
    (tmp_path / "media/a/empty").unlink()
    (tmp_path / "media/link").unlink()
    (tmp_path / "media/link").symlink_to("elsewhere")
    result = fb.verify_manifest(manifest)
    problems = {Path(m["path"]).name: m["problem"] for m in result["mismatches"]}
    assert not result["ok"] and result["mismatch_count"] == 4
    assert problems == {
        "one.jpg": "content differs",
        "private": "mode 0644, expected 0600",
        "empty": "missing",
        "link": "symlink target differs",
    }


def test_restore_destinations(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    (tmp_path / "env").write_text("A=1\n")
    entry = {"type": "file", "sha256": fb.sha256_file(tmp_path / "env")}
    assert fb.check_destination(str(tmp_path / "absent"), {}) == "absent"
    assert fb.check_destination(str(tmp_path / "empty"), {}) == "empty"
    assert fb.check_destination(str(tmp_path / "full"), {}) == "differs"
    assert fb.check_destination(str(tmp_path / "env"), {str(tmp_path / "env"): entry}) == "same"
    assert fb.check_destination(str(tmp_path / "env"), {}) == "differs"


# --- database comparisons (the SQL side runs in molecule) -----------------------------------------


def test_compare_db_is_exact_per_table_and_sequence() -> None:
    expected = {
        "tables": {
            "public.a": {"rows": 2, "checksum": "1.2"},
            "public.b": {"rows": 0, "checksum": "0.0"},
        },
        "sequences": {"public.a_id_seq": {"last_value": 2, "is_called": True}},
    }
    assert fb.compare_db(expected, json.loads(json.dumps(expected)))["ok"]
    b_ok = {"public.b": {"rows": 0, "checksum": "0.0"}}
    for actual, bad in (
        ({"public.a": {"rows": 2, "checksum": "1.3"}, **b_ok}, ["public.a"]),
        ({"public.a": {"rows": 3, "checksum": "1.2"}, **b_ok}, ["public.a"]),
        ({"public.a": {"rows": 2, "checksum": "1.2"}}, ["public.b"]),
        ({**expected["tables"], "public.c": {"rows": 1, "checksum": "9.9"}}, ["public.c"]),
    ):  # fmt: skip
        result = fb.compare_db(expected, {"tables": actual, "sequences": expected["sequences"]})
        assert not result["ok"] and [t["table"] for t in result["tables"] if not t["ok"]] == bad
    seq = fb.compare_db(
        expected,
        {**expected, "sequences": {"public.a_id_seq": {"last_value": 3, "is_called": True}}},
    )
    assert not seq["ok"] and seq["sequences_differing"] == ["public.a_id_seq"]


def test_restore_list_skips_extension_comments_and_names_extensions() -> None:
    toc = [
        ";",
        "; Archive created at 2026-11-22",
        "215; 1262 16384 DATABASE - bk_social bk_owner",
        "2; 3079 16400 EXTENSION - pg_trgm ",
        "3456; 0 0 COMMENT - EXTENSION pg_trgm ",
        "220; 1259 16500 TABLE public accounts bk_owner",
    ]
    kept, extensions = fb.filter_restore_list(toc)
    assert extensions == ["pg_trgm"]
    assert kept[4] == ";3456; 0 0 COMMENT - EXTENSION pg_trgm " and kept[5] == toc[5]


# --- status and metrics --------------------------------------------------------------------------


def test_status_keeps_the_last_success_through_a_failure() -> None:
    t0 = fb.parse_time("2026-01-01T03:00:00Z")
    t1 = fb.parse_time("2026-01-01T03:00:42Z")
    status = fb.load_status(Path("/nonexistent"), "web1")
    ok = {"db": fb.KindResult("d" * 64, 100), "files": fb.KindResult("f" * 64, 20)}
    fb.update_app_status(status, "mastodon", t0, t1, ok, "R1")
    entry = status["apps"]["mastodon"]
    assert entry["last_success"] == "2026-01-01T03:00:42Z" and entry["last_error"] is None
    assert entry["snapshots"] == {"db": "d" * 64, "files": "f" * 64}
    assert (entry["bytes_added"], entry["duration_seconds"]) == (120, 42.0)
    bad = {
        "db": fb.KindResult("e" * 64, 5),
        "files": fb.KindResult(error="no space left on device"),
    }
    t2 = fb.parse_time("2026-01-02T03:00:00Z")
    fb.update_app_status(status, "mastodon", t2, t2, bad, "R2")
    assert entry["last_success"] == "2026-01-01T03:00:42Z"
    assert entry["last_attempt"] == "2026-01-02T03:00:00Z"
    assert entry["last_error"] == "files: no space left on device"
    assert entry["snapshots"] == {"db": "d" * 64, "files": "f" * 64}, "the last good set stays"
    assert entry["last_attempt_snapshots"] == {"db": "e" * 64}
    prom = fb.prom_text({**status, "check": {"last_success": None, "last_error": "boom"}})
    assert 'fedictl_backup_last_success_timestamp_seconds{app="mastodon"} 1767236442' in prom
    assert 'fedictl_backup_last_attempt_success{app="mastodon"} 0' in prom
    assert "fedictl_backup_check_last_attempt_success 0" in prom
    assert "# TYPE fedictl_backup_bytes_added gauge" in prom


# --- a whole run against a fake restic -----------------------------------------------------------

FAKE_RESTIC = r"""#!{python}
import json, os, sys, time
args = sys.argv[1:]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.log"), "a") as f:
    f.write(json.dumps(args) + "\n")
cmd = next(a for a in args if not a.startswith("-") and a not in ("30m",))
flag = os.path.join(here, "fail")
fail = open(flag).read().strip() if os.path.exists(flag) else ""
# Like restic: a repository that cannot be opened fails every command the same way.
if fail == "unreachable":
    sys.stderr.write("subprocess ssh: ssh: connect to host b port 22: No route to host\n"
                     "Fatal: unable to open repository at sftp:x: cannot start sftp\n")
    sys.exit(1)
if fail == "missing":
    sys.stderr.write("Fatal: repository does not exist: unable to open config file\n")
    sys.exit(10)
if fail == "badkey":
    sys.stderr.write("Fatal: wrong password or no key found\n")
    sys.exit(12)
if cmd == "cat":
    sys.exit(0)
if cmd == "backup":
    start = time.time()
    time.sleep(0.3)  # long enough for snapshots that run side by side to overlap
    with open(os.path.join(here, "spans.log"), "a") as f:
        f.write(json.dumps([args[args.index("--tag") + 1], start, time.time()]) + "\n")
    if fail == "full" and "kind:files" in " ".join(args):
        sys.stderr.write("Fatal: unable to save snapshot: sftp: no space left on device\n")
        sys.exit(1)
    tags = args[args.index("--tag") + 1]
    print(json.dumps({{"message_type": "status", "percent_done": 1}}))
    print(json.dumps({{"message_type": "summary", "data_added": 7, "total_bytes_processed": 1234,
                      "snapshot_id": (tags.split(",")[1] + "x" * 64)[:64]}}))
    sys.exit(0)
if cmd == "forget":
    if fail == "forget":
        sys.stderr.write("Fatal: unable to create lock in backend: repository is already locked\n")
        sys.exit(11)
    print(json.dumps([{{"keep": [], "remove": [{{}}]}}]))
    sys.exit(0)
if cmd == "prune":
    sys.exit(0)
if cmd == "snapshots":  # what snapshots.json in this directory holds (a restore's view)
    sys.stdout.write(open(os.path.join(here, "snapshots.json")).read())
    sys.exit(0)
if cmd == "dump":  # any path: the manifest.json.gz in this directory
    sys.stdout.buffer.write(open(os.path.join(here, "manifest.json.gz"), "rb").read())
    sys.exit(0)
sys.exit(99)
"""


@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    restic = bin_dir / "restic"
    restic.write_text(FAKE_RESTIC.format(python=sys.executable))
    restic.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    tree(tmp_path)
    (tmp_path / "env.production").write_text("SECRET_KEY_BASE=abc\n")
    decls = tmp_path / "backup.d"
    decls.mkdir()
    declaration = {
        "app": "mastodon", "paths": [str(tmp_path / "media")],
        "cache_paths": [str(tmp_path / "media/cache")],
        "config_files": [str(tmp_path / "env.production")], "owner": "mastodon",
    }  # fmt: skip
    (decls / "mastodon.json").write_text(json.dumps(declaration))
    env_file = tmp_path / "restic.env"
    env_file.write_text("RESTIC_REPOSITORY=sftp:u@h:/r\nRESTIC_PASSWORD_FILE=/nonexistent\n")
    cfg = fb.Config(
        host="web1", env_file=env_file, state_dir=tmp_path / "state", cache_dir=tmp_path / "c",
        declarations_dir=decls, prom_file=tmp_path / "prom/fedictl_backup.prom",
        retention={"daily": 7, "weekly": 4, "monthly": 12},
    )  # fmt: skip
    return {"cfg": cfg, "log": bin_dir / "calls.log", "tmp": tmp_path, "fail": bin_dir / "fail"}


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def backup_call(log: Path, kind: str) -> list[str]:
    """The `restic backup` call of one kind (kinds run side by side, in no fixed order)."""
    (found,) = [c for c in calls(log) if "backup" in c and f"kind:{kind}" in " ".join(c)]
    return found


def test_a_run_snapshots_each_kind_tagged_then_applies_retention(fake_host: dict[str, Any]) -> None:
    cfg = fake_host["cfg"]
    assert fb.backup_run(cfg, []) == 0
    made = [c for c in calls(fake_host["log"]) if "backup" in c]
    assert len(made) == 2  # files and config; no database on this host
    files_call = backup_call(fake_host["log"], "files")
    tags = files_call[files_call.index("--tag") + 1].split(",")
    assert tags[:2] == ["app:mastodon", "kind:files"] and tags[2].startswith("run:")
    assert files_call[files_call.index("--host") + 1] == "web1"
    assert files_call[files_call.index("--exclude") + 1] == str(fake_host["tmp"] / "media/cache")
    assert "--retry-lock" in files_call
    assert str(cfg.manifest_dir / "mastodon/files.json.gz") in files_call
    manifest = json.loads(
        gzip.decompress((cfg.manifest_dir / "mastodon/files.json.gz").read_bytes())
    )
    assert len(manifest["entries"]) == 4 and manifest["owner"] == "mastodon"
    config_call = backup_call(fake_host["log"], "config")
    assert str(fake_host["tmp"] / "backup.d/mastodon.json") in config_call, "the declaration too"
    forgets = [c for c in calls(fake_host["log"]) if "forget" in c]
    assert len(forgets) == 1 and forgets[0][forgets[0].index("--tag") + 1] == "app:mastodon"
    assert forgets[0][forgets[0].index("--group-by") + 1] == "host,paths"
    assert any("prune" in c for c in calls(fake_host["log"])), "forgotten snapshots are pruned"
    assert [c[0] for c in calls(fake_host["log"])] == ["backup", "backup", "forget", "prune"], (
        "nothing but the snapshots and the retention: no separate open of the repository"
    )
    status = json.loads(cfg.status_file.read_text())
    assert status["apps"]["mastodon"]["last_error"] is None
    assert status["apps"]["mastodon"]["snapshot_bytes"] == {"files": 1234, "config": 1234}
    assert oct(cfg.status_file.stat().st_mode & 0o777) == "0o644"
    assert 'fedictl_backup_last_attempt_success{app="mastodon"} 1' in cfg.prom_file.read_text()


def test_a_full_disk_fails_the_run_keeps_the_last_success_and_skips_retention(
    fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = fake_host["cfg"]
    assert fb.backup_run(cfg, []) == 0
    good = json.loads(cfg.status_file.read_text())["apps"]["mastodon"]
    fake_host["log"].unlink()
    fake_host["fail"].write_text("full")
    assert fb.backup_run(cfg, []) == 1
    entry = json.loads(cfg.status_file.read_text())["apps"]["mastodon"]
    assert "no space left on device" in entry["last_error"] and entry["last_error"].startswith(
        "files:"
    )
    assert entry["last_success"] == good["last_success"] and entry["snapshots"] == good["snapshots"]
    assert not [c for c in calls(fake_host["log"]) if "forget" in c or "prune" in c]


def test_a_failed_retention_fails_the_run_but_keeps_the_new_success(
    fake_host: dict[str, Any],
) -> None:
    fake_host["fail"].write_text("forget")
    assert fb.backup_run(fake_host["cfg"], []) == 1
    entry = json.loads(fake_host["cfg"].status_file.read_text())["apps"]["mastodon"]
    assert entry["last_success"] is not None and set(entry["snapshots"]) == {"files", "config"}
    assert entry["last_error"].startswith(
        "retention: retention (restic forget) failed (restic exit 11)"
    )
    assert not [c for c in calls(fake_host["log"]) if "prune" in c]


def test_caches_are_backed_up_when_the_switch_says_so(fake_host: dict[str, Any]) -> None:
    cfg = fake_host["cfg"]
    cfg.include_caches = True
    assert fb.backup_run(cfg, []) == 0
    assert "--exclude" not in backup_call(fake_host["log"], "files")
    manifest = json.loads(
        gzip.decompress((cfg.manifest_dir / "mastodon/files.json.gz").read_bytes())
    )
    assert str(fake_host["tmp"] / "media/cache/big") in manifest["entries"]
    assert manifest["excludes"] == []


def test_the_kinds_of_an_app_are_snapshotted_side_by_side(fake_host: dict[str, Any]) -> None:
    cfg = fake_host["cfg"]
    assert fb.backup_run(cfg, []) == 0
    spans = [json.loads(line) for line in (fake_host["log"].parent / "spans.log").open()]
    (_, start1, end1), (_, start2, end2) = spans
    assert max(start1, start2) < min(end1, end2), f"one restic waited for the other: {spans}"
    entry = json.loads(cfg.status_file.read_text())["apps"]["mastodon"]
    assert set(entry["kind_seconds"]) == {"files", "config"}
    assert entry["duration_seconds"] < 0.6 + 1, "the run is as long as its longest kind"


def test_an_unreachable_repository_fails_every_kind_with_the_reason(
    fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_host["fail"].write_text("unreachable")
    cfg = fake_host["cfg"]
    assert fb.backup_run(cfg, []) == 1
    entry = json.loads(cfg.status_file.read_text())["apps"]["mastodon"]
    assert entry["last_success"] is None
    errors = entry["last_error"].split("; ")
    assert [e.split(":")[0] for e in errors] == ["files", "config"]
    for error in errors:
        assert error.split(": ", 1)[1].startswith("repository unreachable (restic exit 1)")
        assert "No route to host" in error
    made = calls(fake_host["log"])
    # The kinds run side by side: the first to fail asks why, the other shares the answer (its
    # own restic may start after the diagnosis on a busy machine: "after the failures" is too
    # strict).
    diagnoses = [i for i, c in enumerate(made) if "cat" in c]
    assert len(diagnoses) == 1, "one diagnosis for the kinds that fail together"
    assert any("backup" in c for c in made[: diagnoses[0]]), "asked only after a failure"
    assert not [c for c in made if "forget" in c or "prune" in c]


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ("missing", "no restic repository at the configured location: deploy the backup role"),
        ("badkey", "the restic password does not open it: vault_restic_password differs"),
    ],
)
def test_restics_own_exit_codes_name_a_missing_repository_and_a_wrong_password(
    fake_host: dict[str, Any], fail: str, message: str
) -> None:
    fake_host["fail"].write_text(fail)
    assert fb.backup_run(fake_host["cfg"], []) == 1
    entry = json.loads(fake_host["cfg"].status_file.read_text())["apps"]["mastodon"]
    assert message in entry["last_error"] and entry["last_error"].startswith("files: ")
    made = calls(fake_host["log"])
    assert not [c for c in made if "init" in c], "a nightly run never creates a repository"
    assert not [c for c in made if "cat" in c], "the exit code said it; no diagnosis needed"


def test_a_failure_of_the_snapshot_itself_is_diagnosed_once(fake_host: dict[str, Any]) -> None:
    """A full disk: the repository opens, so the error is restic's own, not "unreachable"."""
    fake_host["fail"].write_text("full")
    assert fb.backup_run(fake_host["cfg"], []) == 1
    entry = json.loads(fake_host["cfg"].status_file.read_text())["apps"]["mastodon"]
    assert entry["last_error"] == (
        "files: restic backup failed (exit 1): "
        "unable to save snapshot: sftp: no space left on device"
    )
    assert len([c for c in calls(fake_host["log"]) if "cat" in c]) == 1


def test_an_unforeseen_error_fails_its_kind_and_still_reaches_the_status(
    fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (here injected into the files kind) must not end the run with a bare traceback that
    leaves the status file and the metric telling of the last night instead."""
    cfg = fake_host["cfg"]
    assert fb.backup_run(cfg, []) == 0
    good = json.loads(cfg.status_file.read_text())["apps"]["mastodon"]
    real_tree = fb.Backup.tree

    def broken_tree(self: Any, decl: Any, kind: str) -> dict[str, Any]:
        if kind == "files":
            raise KeyError("no-such-field")
        return real_tree(self, decl, kind)

    monkeypatch.setattr(fb.Backup, "tree", broken_tree)
    assert fb.backup_run(cfg, []) == 1
    entry = json.loads(cfg.status_file.read_text())["apps"]["mastodon"]
    assert entry["last_error"] == "files: internal error (KeyError: 'no-such-field')"
    assert entry["last_success"] == good["last_success"], "the last good backup stays the last good"
    assert 'fedictl_backup_last_attempt_success{app="mastodon"} 0' in cfg.prom_file.read_text()
    assert "Traceback" in capsys.readouterr().err, "the journal gets the traceback to report"


def test_missing_config_files_fail_the_config_kind(fake_host: dict[str, Any]) -> None:
    (fake_host["tmp"] / "env.production").unlink()
    assert fb.backup_run(fake_host["cfg"], []) == 1
    entry = json.loads(fake_host["cfg"].status_file.read_text())["apps"]["mastodon"]
    assert entry["last_error"].startswith("config: config files missing: ")


def test_main_reports_errors_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(fb, "CONFIG_FILE", tmp_path / "missing.json")
    monkeypatch.setattr(fb.load_config, "__defaults__", (tmp_path / "missing.json",))
    assert fb.main(["check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fedictl-backup: error: ") and "deploy the backup role first" in err


def _planted(fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch, roots: list[str]) -> None:
    """A files snapshot of `roots` in the fake repository; the program's config points at it."""
    cfg, tmp, bin_dir = fake_host["cfg"], fake_host["tmp"], fake_host["log"].parent
    manifest, _, _ = fb.build_manifest(roots, [], {})
    manifest.update(kind="files", owner="mastodon")
    (bin_dir / "manifest.json.gz").write_bytes(fb.dump_json_gz(manifest))
    snapshot = {
        "id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-01-01T03:00:00Z",
        "hostname": "web1", "tags": ["app:mastodon", "kind:files", "run:R1"],
        "paths": [*roots, str(cfg.manifest_dir / "mastodon/files.json.gz")],
    }  # fmt: skip
    (bin_dir / "snapshots.json").write_text(json.dumps([snapshot]))
    config = tmp / "config.json"
    config.write_text(json.dumps({
        "host": "web1", "env_file": str(cfg.env_file), "state_dir": str(cfg.state_dir),
        "cache_dir": str(cfg.cache_dir), "declarations_dir": str(cfg.declarations_dir),
        "prom_file": str(cfg.prom_file), "retention": cfg.retention,
    }))  # fmt: skip
    monkeypatch.setattr(fb.load_config, "__defaults__", (config,))


RESTORE_FILES = ["restore-files", "--app", "mastodon", "--snapshot", "aaaa", "--kind", "files"]


def test_a_files_restore_refuses_existing_content_without_force(
    fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """restore-files --check (run before the app is stopped): occupied paths are refused, exit 3,
    and nothing moves; with --force the same paths would be moved aside."""
    tmp = fake_host["tmp"]
    media = str(tmp / "media")
    _planted(fake_host, monkeypatch, [media])
    before = sorted(p.name for p in tmp.iterdir())
    argv = [*RESTORE_FILES, "--check"]
    assert fb.main(argv) == fb.EXIT_REFUSED
    err = capsys.readouterr().err
    assert f"{media} already exists with other content" in err and "--force" in err
    assert sorted(p.name for p in tmp.iterdir()) == before, "a refused restore moved something"
    assert fb.main([*argv, "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["states"] == {media: "differs"}


def test_a_snapshot_cannot_choose_where_a_restore_writes(
    fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any host holding the repository's password can write a snapshot: one whose paths this host's
    own declaration does not name (a cron directory here) is refused before restic restores
    anything, with or without --force, and so is an owner other than the declared one."""
    tmp = fake_host["tmp"]
    cron = tmp / "cron.d"
    cron.mkdir()
    (cron / "planted").write_text("* * * * * root id\n")
    _planted(fake_host, monkeypatch, [str(tmp / "media"), str(cron)])
    shutil.rmtree(cron)
    for extra in ([], ["--force"], ["--check"]):
        assert fb.main([*RESTORE_FILES, *extra]) == fb.EXIT_REFUSED, extra
        err = capsys.readouterr().err
        assert f"would restore {cron}, which mastodon's declaration" in err, err
    assert not cron.exists(), "nothing was restored"
    assert not [c for c in calls(fake_host["log"]) if "restore" in c], "restic was never asked"

    _planted(fake_host, monkeypatch, [str(tmp / "media")])
    assert fb.main([*RESTORE_FILES, "--force", "--owner", "root"]) == fb.EXIT_REFUSED
    assert "this host's declaration of mastodon says mastodon" in capsys.readouterr().err


def test_without_a_declaration_only_a_check_or_a_drill_proceeds(
    fake_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host without the app (no declaration) may be checked before the restore installs the app,
    and a drill writes under its scratch directory; a real restore there is refused."""
    tmp = fake_host["tmp"]
    _planted(fake_host, monkeypatch, [str(tmp / "media")])
    (fake_host["cfg"].declarations_dir / "mastodon.json").unlink()
    assert fb.main([*RESTORE_FILES, "--force"]) == fb.EXIT_REFUSED
    assert "install the app here first" in capsys.readouterr().err
    assert fb.main([*RESTORE_FILES, "--check"]) == fb.EXIT_REFUSED  # the media exist: refused
    assert "already exists with other content" in capsys.readouterr().err
    scratch = tmp / "drill"
    assert fb.main([*RESTORE_FILES, "--check", "--scratch", str(scratch)]) == 0
    states = json.loads(capsys.readouterr().out)["states"]
    assert states == {str(tmp / "media"): "absent"}, "a drill looks under its scratch directory"


@pytest.mark.parametrize("root", ["relative/media", "/srv/app/../../etc", "/"])
def test_odd_snapshot_paths_are_refused(root: str) -> None:
    decl = fb.Declaration(app="mastodon", source=Path("/etc/fedictl/backup.d/mastodon.json"),
                          paths=["/srv/app"])  # fmt: skip
    with pytest.raises(fb.Refused, match="not absolute and normal"):
        fb.restore_roots({"roots": [root]}, decl, "")


def test_restic_env_holds_only_restics_settings(tmp_path: Path) -> None:
    """restic.env is read by the root-run program: a line a newline in a setting would add (another
    repository, LD_PRELOAD) is refused, not used."""
    env = tmp_path / "restic.env"
    env.write_text("# managed\nRESTIC_REPOSITORY=sftp:u@h:/r\nRESTIC_PASSWORD_FILE=/etc/p\n")
    assert fb.read_env_file(env) == {"RESTIC_REPOSITORY": "sftp:u@h:/r",
                                     "RESTIC_PASSWORD_FILE": "/etc/p"}  # fmt: skip
    for injected in ("LD_PRELOAD=/tmp/x.so", "RESTIC_REPOSITORY=/tmp/evil", "no equals sign"):
        env.write_text(f"RESTIC_REPOSITORY=sftp:u@h:/r\nAWS_ACCESS_KEY_ID=AKIA\n{injected}\n")
        with pytest.raises(fb.BackupError, match=r"restic\.env:3: "):
            fb.read_env_file(env)
