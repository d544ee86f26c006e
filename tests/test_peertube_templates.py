"""The peertube role's production.yaml, systemd unit and nginx vhost, rendered by Ansible from the
role's own templates, compared point by point with upstream's files at v8.2.1, the newest tag whose
tree could be read where fedictl is developed (upstream's 8.3.0, 8.3.1 and 8.3.2 notes change
neither the unit, the vhost nor the example's keys; docs/peertube.md). Upstream's facts are written
below as data; where fedictl differs on purpose, the difference is data too, and the tests assert
the role differs by exactly that.

Also: the role knows every key of upstream's production.yaml.example (written, or deliberately
left to default.yaml), its key report finds a key it does not know, the backup declaration is one
the backup program accepts, and the CLI's registry agrees with the role (pin, tag pattern).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from _inventory_helpers import ansible_tool
from test_mastodon_templates import Directive, Unit, parse_nginx, parse_unit

from fedictl import releases
from fedictl.apps import peertube

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "peertube"
UPSTREAM_TAG = "v8.2.1"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


keys = _load(ROLE / "filter_plugins" / "peertube_config.py", "peertube_config_filters")
backup = _load(ROOT / "roles" / "backup" / "files" / "fedictl_backup.py", "fedictl_backup_pt")

# --- upstream's production.yaml.example at v8.2.1, its keys as data -------------------------------
# One line per section: "<dotted section>: <leaf keys>". Values that are lists, null or commented
# out upstream (trust_proxy, redundancy.videos.strategies, instance.languages...) are leaves.
EXAMPLE_SKELETON = """
listen: hostname port
webserver: https hostname port
secrets: peertube
http_timeouts: request
rates_limit.api: window max
rates_limit.login: window max
rates_limit.signup: window max
rates_limit.ask_send_email: window max
rates_limit.receive_client_log: window max
rates_limit.plugins: window max
rates_limit.well_known: window max
rates_limit.feeds: window max
rates_limit.activity_pub: window max
rates_limit.client: window max
rates_limit.download_generate_video: window max
oauth2.token_lifetime: access_token refresh_token
: trust_proxy
database: hostname port ssl suffix username password
database.ssl_settings: reject_unauthorized ca cert key
database.pool: max
redis: hostname port socket auth db enable_tls
redis.tls_settings: reject_unauthorized ca cert key
redis.sentinel: enabled enable_tls master_name password sentinels
redis.sentinel.tls_settings: reject_unauthorized ca cert key
smtp: transport sendmail hostname port username password tls disable_starttls ca_file from_address
storage: tmp tmp_persistent bin avatars web_videos streaming_playlists original_video_files
storage: redundancy logs previews thumbnails storyboards torrents captions cache plugins well_known
storage: uploads client_overrides
static_files: private_files_require_auth
object_storage: enabled endpoint region force_path_style max_upload_part max_request_attempts
object_storage.upload_acl: public private
object_storage.proxy: proxify_private_files
object_storage.credentials: access_key_id secret_access_key
object_storage.streaming_playlists: bucket_name prefix base_url store_live_streams
object_storage.web_videos: bucket_name prefix base_url
object_storage.user_exports: bucket_name prefix base_url
object_storage.original_video_files: bucket_name prefix base_url
object_storage.captions: bucket_name prefix base_url
log: level anonymize_ip log_ping_requests log_tracker_unknown_infohash log_http_requests
log: prettify_sql accept_client_log
log.rotation: enabled max_file_size max_files
open_telemetry.metrics: enabled playback_stats_interval
open_telemetry.metrics.http_request_duration: enabled
open_telemetry.metrics.prometheus_exporter: hostname port
open_telemetry.tracing: enabled
open_telemetry.tracing.jaeger_exporter: endpoint
trending.videos: interval_days
trending.videos.algorithms: enabled default
redundancy.videos: check_interval strategies
remote_redundancy.videos: accept_from
csp: enabled report_only report_uri
security.frameguard: enabled
security.powered_by_header: enabled
tracker: enabled private reject_too_many_announces
history.videos: max_age
views.videos: local_buffer_update_interval view_expiration count_view_after trust_viewer_session_id
views.videos.remote: max_age
views.videos.local: max_age
views.videos.watching_interval: anonymous users
geo_ip: enabled
geo_ip.country: database_url
geo_ip.city: database_url
plugins.index: enabled check_latest_versions_interval url
federation: enabled prevent_ssrf sign_federated_fetches
federation.videos: federate_unlisted cleanup_remote_interactions
peertube.check_latest_version: enabled url
webadmin.configuration.edition: allowed
feeds.videos: count
feeds.comments: count
remote_runners.stalled_jobs: live vod studio transcription
thumbnails: sizes
thumbnails.generation_from_video: frames_to_analyze
stats.registration_requests: enabled
stats.abuses: enabled
stats.total_moderators: enabled
stats.total_admins: enabled
webrtc: stun_servers
nsfw_flags_settings: enabled
download: max_total_bytes_per_second max_bytes_per_ip_per_second
download_generate_video: max_parallel_downloads
admin: email
contact_form: enabled
signup: enabled limit minimum_age requires_approval requires_email_verification
signup.filters.cidr: whitelist blacklist
user: disable_root_auth video_quota video_quota_daily default_channel_name
user.history.videos: enabled
user.password_constraints: min_length
video_channels: max_per_user max_collaborators_per_channel
transcoding: enabled allow_additional_extensions allow_audio_files threads concurrency profile
transcoding: always_transcode_original_resolution always_transcode_podcast_optimized_audio
transcoding.original_file: keep
transcoding.remote_runners: enabled
transcoding.resolutions: 0p 144p 240p 360p 480p 720p 1080p 1440p 2160p
transcoding.fps: max
transcoding.web_videos: enabled
transcoding.hls: enabled split_audio_and_video
live: enabled max_duration max_instance_lives max_user_lives allow_replay
live.dvr: max_window
live.latency_setting: enabled
live.rtmp: enabled hostname port public_hostname
live.rtmps: enabled hostname port key_file cert_file public_hostname
live.transcoding: enabled threads profile always_transcode_original_resolution
live.transcoding.remote_runners: enabled
live.transcoding.resolutions: 0p 144p 240p 360p 480p 720p 1080p 1440p 2160p
live.transcoding.fps: max
video_studio: enabled
video_studio.remote_runners: enabled
video_transcription: enabled engine engine_path model model_path timeout
video_transcription.remote_runners: enabled
video_file.update: enabled
import.videos: concurrency timeout max_attempts
import.videos.http: enabled force_ipv4 proxies
import.videos.http.youtube_dl_release: url name python_path
import.videos.http.cookies: enabled
import.videos.torrent: enabled
import.video_channel_synchronization: enabled max_per_user check_interval
import.video_channel_synchronization: videos_limit_per_synchronization full_sync_videos_limit
import.users: enabled
export.users: enabled max_user_video_quota export_expiration
auto_blacklist.videos.of_users: enabled
instance: name short_description description terms code_of_conduct moderation_information
instance: creation_reason administrator maintenance_lifetime business_model hardware_information
instance: default_language languages categories default_client_route is_nsfw default_nsfw_policy
instance: server_country robots securitytxt
instance.support: text
instance.social: external_link mastodon_link bluesky_link x_link
instance.customizations: javascript css
services.twitter: username
followers.instance: enabled manual_approval
followers.channels: enabled
followings.instance.auto_follow_back: enabled
followings.instance.auto_follow_index: enabled index_url
blocklist.public_log: enabled
theme: default
theme.customization: primary_color on_primary_color foreground_color background_color
theme.customization: background_secondary_color menu_foreground_color menu_background_color
theme.customization: menu_border_radius header_background_color header_foreground_color
theme.customization: input_border_radius
broadcast_message: enabled message level dismissable
search.remote_uri: users anonymous
search.search_index: enabled url disable_local_search is_default_search
client: new_features_info
client.header: hide_instance_name
client.videos.miniature: prefer_author_display_name
client.videos.resumable_upload: max_chunk_size
client.browse_videos: default_sort default_scope
client.menu.login: redirect_on_single_external_auth
client.open_in_app.android.intent: enabled host scheme fallback_url
client.open_in_app.ios: enabled host scheme fallback_url
storyboards: enabled
storyboards.remote_runners: enabled
defaults.publish: download_enabled comments_policy privacy licence
defaults.live: save_replay
defaults.p2p.webapp: enabled
defaults.p2p.embed: enabled
defaults.player: theme auto_play
email.body: signature
email.subject: prefix
video_comments: accept_remote_comments
"""


def example_keys() -> set[str]:
    found = set()
    for line in EXAMPLE_SKELETON.strip().splitlines():
        section, _, leaves = line.partition(":")
        for leaf in leaves.split():
            found.add(f"{section}.{leaf}" if section else leaf)
    return found


def example_mapping() -> dict[str, Any]:
    """The skeleton as a nested mapping, as the role reads a release's example (values None)."""
    tree: dict[str, Any] = {}
    for path in sorted(example_keys()):
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = None
    return tree


# Upstream's storage layout (storage.* of the example): key -> directory under storage/.
UPSTREAM_STORAGE = {
    "tmp": "tmp", "tmp_persistent": "tmp-persistent", "bin": "bin", "avatars": "avatars",
    "web_videos": "web-videos", "streaming_playlists": "streaming-playlists",
    "original_video_files": "original-video-files", "redundancy": "redundancy", "logs": "logs",
    "previews": "previews", "thumbnails": "thumbnails", "storyboards": "storyboards",
    "torrents": "torrents", "captions": "captions", "cache": "cache", "plugins": "plugins",
    "well_known": "well-known", "uploads": "uploads", "client_overrides": "client-overrides",
}  # fmt: skip
# The object storage sections and their prefixes (8.1+ example: one bucket, a prefix each).
UPSTREAM_OBJECT_STORAGE_PREFIXES = {
    "streaming_playlists": "streaming-playlists/", "web_videos": "web-videos/",
    "user_exports": "user-exports/", "original_video_files": "original-video-files/",
    "captions": "captions/",
}  # fmt: skip
# Keys the role writes that the example does not list: database.name is documented in the
# example's comment ("database.name OR 'peertube'+database.suffix") and read by PeerTube.
WRITTEN_OUTSIDE_THE_EXAMPLE = {"database.name"}

# --- inputs ---------------------------------------------------------------------------------------
SECRET = "0123456789abcdef" * 4
DB_PASSWORD = "db pass: #1 $HOME 'q' \"dq\" back\\slash"  # YAML must carry it unchanged
REDIS_PASSWORD = "redis#pw {x} [y] with  two spaces"
BASE = {
    "peertube_domain": "video.example.org",
    "peertube_admin_email": "admin@example.org",
    "peertube_secret": SECRET,
    "peertube_root_password": "TEST-ONLY-root-pw",
    "peertube_db_password": "Zq3vR8pL1mN7xK2wT5yB",
    "peertube_redis_password": "Hj6fD2sA9gK4lP0oI8uY",
    "__peertube_cpus": 8,
}
VARIANTS: dict[str, dict[str, Any]] = {
    # The role's defaults: upstream's layout and values.
    "upstream": dict(BASE),
    # Everything away from the defaults.
    "away": BASE
    | {
        "peertube_user": "ptube",
        "peertube_home": "/srv/ptube",
        "peertube_storage_dir": "/data/ptube-storage",
        "peertube_port": 9100,
        "peertube_instance_name": "Vidéos & co: \"ours\"",
        "peertube_trust_proxy": ["loopback", "10.0.0.0/8"],
        "peertube_webadmin_edition_allowed": False,
        "peertube_settings": {"signup": {"enabled": True, "limit": -1}, "log": {"level": "warn"}},
        "peertube_db_host": "db.internal.example.org",
        "peertube_db_port": 6432,
        "peertube_db_name": "ptube_db",
        "peertube_db_user": "ptube_app",
        "peertube_db_password": DB_PASSWORD,
        "peertube_db_pool_max": 9,
        "peertube_redis_host": "10.20.0.7",
        "peertube_redis_port": 6380,
        "peertube_redis_password": REDIS_PASSWORD,
        "peertube_redis_db": 7,
        "peertube_smtp_server": "smtp.example.org",
        "peertube_smtp_port": 465,
        "peertube_smtp_login": "notify@example.org",
        "peertube_smtp_password": "smtp pw $(x) #y",
        "peertube_smtp_from_address": "PeerTube <video@example.org>",
        "peertube_smtp_security": "tls",
        "peertube_transcoding_threads": 3,
        "peertube_transcoding_concurrency": 2,
        "peertube_object_storage_enabled": True,
        "peertube_object_storage_endpoint": "s3.eu-central-1.example.com",
        "peertube_object_storage_region": "eu-central-1",
        "peertube_object_storage_bucket": "ptube-media",
        "peertube_object_storage_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "peertube_object_storage_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
        "peertube_object_storage_force_path_style": True,
        "peertube_object_storage_base_url": "https://cdn.example.org",
        "peertube_object_storage_upload_acl_public": "",
        "peertube_object_storage_upload_acl_private": "",
        "peertube_nginx_limit_rate": "20M",
        "peertube_npm_registry": "http://npm.lab.test:4873/",
    },
    "smtp_starttls": BASE | {"peertube_smtp_server": "smtp.example.org", "__peertube_cpus": 1},
    "smtp_none": BASE | {"peertube_smtp_server": "smtp.example.org", "peertube_smtp_port": 25,
                         "peertube_smtp_security": "none", "__peertube_cpus": 3},
}  # fmt: skip
TEMPLATES = {
    "production.yaml": "var/www/peertube/config/production.yaml.j2",
    "peertube.service": "etc/systemd/system/peertube.service.j2",
    "peertube": "etc/nginx/sites-available/peertube.j2",
}
VARS = [
    "__peertube_known_keys", "__peertube_managed_keys", "__peertube_inherited_keys",
    "__peertube_backup_declaration", "__peertube_config_files", "__peertube_unit_files",
    "__peertube_other_files", "__peertube_dirs", "__peertube_version_pattern",
]  # fmt: skip

RENDER_PLAY = [
    {
        "name": "Render the templates and variables under test",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Load the role's defaults and vars, then the inputs",
                "ansible.builtin.include_vars": {"file": "{{ render_file }}"},
                "loop": "{{ render_vars_files }}",
                "loop_control": {"loop_var": "render_file"},
            },
            {
                "name": "Render every template and variable",
                "ansible.builtin.copy": {
                    "content": "{{ {'templates': dict(render_templates | map(attribute='name')"
                    " | zip(query('ansible.builtin.template', *(render_templates"
                    " | map(attribute='src'))))), 'vars': dict(render_vars"
                    " | zip(query('ansible.builtin.vars', *render_vars)))} | to_json }}",
                    "dest": "{{ render_dir }}/{{ inventory_hostname }}.json",
                    "mode": "0600",
                },
            },
        ],
    }
]


class Rendered:
    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, variant: str, name: str) -> str:
        return (self.root / variant / name).read_text()

    def config(self, variant: str) -> dict[str, Any]:
        data = yaml.safe_load(self.text(variant, "production.yaml"))
        assert isinstance(data, dict)
        return data

    def var(self, variant: str, name: str) -> Any:
        return json.loads((self.root / variant / "vars.json").read_text())[name]

    def unit(self, variant: str) -> Unit:
        return parse_unit(self.text(variant, "peertube.service"))

    def vhost(self, variant: str) -> tuple[Directive, ...]:
        return parse_nginx(self.text(variant, "peertube"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    tmp = tmp_path_factory.mktemp("peertube-templates")
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "render_dir": str(tmp),
    }
    hosts: dict[str, dict[str, Any]] = {}
    for variant, inputs in VARIANTS.items():
        inputs_file = tmp / f"{variant}-inputs.yml"
        inputs_file.write_text(yaml.safe_dump(inputs, sort_keys=False, allow_unicode=True))
        hosts[variant] = local | {
            "render_vars_files": [
                str(ROLE / f) for f in ("defaults/main.yml", "vars/main.yml", "vars/Debian-13.yml")
            ]
            + [str(inputs_file)],
            "render_templates": [
                {"name": n, "src": str(ROLE / "templates" / src)} for n, src in TEMPLATES.items()
            ],
            "render_vars": VARS,
        }
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    (tmp / "render.yml").write_text(yaml.safe_dump(RENDER_PLAY, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        # The role's own filters (Ansible finds them beside its tasks when the role runs).
        "ANSIBLE_FILTER_PLUGINS": f"{ROLE / 'filter_plugins'}:{ROOT / 'plugins' / 'filter'}",
    }
    completed = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", str(tmp / "hosts.yml"), str(tmp / "render.yml")],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for host in hosts:
        (tmp / host).mkdir()
        out = json.loads((tmp / f"{host}.json").read_text())
        for name, text in out["templates"].items():
            (tmp / host / name).write_text(text)
        (tmp / host / "vars.json").write_text(json.dumps(out["vars"], indent=1))
    return Rendered(tmp)


# --- production.yaml ------------------------------------------------------------------------------
def test_the_example_skeleton_has_no_duplicate_leaf() -> None:
    lines = [line for line in EXAMPLE_SKELETON.strip().splitlines()]
    leaves = [
        f"{s}.{leaf}" for s, _, rest in (line.partition(":") for line in lines)
        for leaf in rest.split()
    ]  # fmt: skip
    assert len(leaves) == len(set(leaves))


def test_the_role_knows_every_key_of_upstreams_example(rendered: Rendered) -> None:
    """Each key is written by the role or deliberately left to default.yaml (vars/main.yml)."""
    known = rendered.var("upstream", "__peertube_known_keys")
    assert keys.unknown_keys(example_mapping(), known) == []


def test_the_keys_left_to_default_yaml_are_upstreams(rendered: Rendered) -> None:
    """No typo among the inherited keys: each is a key of the example."""
    inherited = set(rendered.var("upstream", "__peertube_inherited_keys").split())
    assert inherited - example_keys() == set()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_production_yaml_writes_only_upstreams_keys(rendered: Rendered, variant: str) -> None:
    written = set(keys.key_paths(rendered.config(variant)))
    settings = set(keys.key_paths(VARIANTS[variant].get("peertube_settings", {})))
    assert written - example_keys() - WRITTEN_OUTSIDE_THE_EXAMPLE - settings == set()


def test_the_key_report_finds_a_key_the_role_does_not_know(rendered: Rendered) -> None:
    known = rendered.var("upstream", "__peertube_known_keys")
    release = example_mapping()
    release["video_transcription"]["gpu"] = {"enabled": False}  # a key of some future release
    release["newsection"] = {"a": 1}
    assert keys.unknown_keys(release, known) == ["newsection.a", "video_transcription.gpu.enabled"]
    # A key the user sets through peertube_settings is known.
    assert keys.unknown_keys({"log": {"level": "info"}}, ["log.level"]) == []
    # A list leaf covers whatever upstream nests below it.
    assert keys.unknown_keys({"thumbnails": {"sizes": [{"width": 1}]}}, ["thumbnails.sizes"]) == []


def test_settings_may_not_set_what_the_role_writes(rendered: Rendered) -> None:
    managed = rendered.var("upstream", "__peertube_managed_keys")
    clashes = keys.key_clashes(
        {
            "database": {"password": "x", "ssl": True},  # password is the role's, ssl is free
            "storage": "/elsewhere",  # a section holding the role's keys
            "instance": {"name": "x", "description": "free"},
            "signup": {"enabled": True},
        },
        managed,
    )
    assert clashes == ["database.password", "instance.name", "storage"]


def test_production_yaml_holds_the_inputs(rendered: Rendered) -> None:
    c = rendered.config("upstream")
    assert c["listen"] == {"hostname": "127.0.0.1", "port": 9000}
    assert c["webserver"] == {"https": True, "hostname": "video.example.org", "port": 443}
    assert c["secrets"] == {"peertube": SECRET}
    assert c["trust_proxy"] == ["loopback"]
    assert c["database"] == {
        "hostname": "/var/run/postgresql", "port": 5432, "name": "peertube_prod",
        "username": "peertube", "password": "Zq3vR8pL1mN7xK2wT5yB", "pool": {"max": 5},
    }  # fmt: skip
    assert c["redis"] == {
        "hostname": "127.0.0.1", "port": 6379, "auth": "Hj6fD2sA9gK4lP0oI8uY", "db": 2,
    }  # fmt: skip
    # No SMTP server: e-mail off (PeerTube needs smtp.hostname to send).
    assert c["smtp"]["hostname"] is None
    assert c["smtp"]["from_address"] == "admin@example.org"
    assert c["object_storage"] == {"enabled": False}
    assert c["admin"] == {"email": "admin@example.org"}
    assert c["instance"] == {"name": "PeerTube"}
    assert c["webadmin"] == {"configuration": {"edition": {"allowed": True}}}
    # Half of the 8 cores, one job at a time (upstream's example: 1 thread, 1 job).
    assert c["transcoding"] == {"threads": 4, "concurrency": 1}


def test_production_yaml_away_from_the_defaults(rendered: Rendered) -> None:
    c = rendered.config("away")
    assert c["listen"]["port"] == 9100
    assert c["database"] == {
        "hostname": "db.internal.example.org", "port": 6432, "name": "ptube_db",
        "username": "ptube_app", "password": DB_PASSWORD, "pool": {"max": 9},
    }  # fmt: skip
    assert c["redis"] == {"hostname": "10.20.0.7", "port": 6380, "auth": REDIS_PASSWORD, "db": 7}
    assert c["smtp"] == {
        "hostname": "smtp.example.org", "port": 465, "username": "notify@example.org",
        "password": "smtp pw $(x) #y", "tls": True, "disable_starttls": False,
        "from_address": "PeerTube <video@example.org>",
    }  # fmt: skip
    assert c["trust_proxy"] == ["loopback", "10.0.0.0/8"]
    assert c["instance"] == {"name": 'Vidéos & co: "ours"'}
    assert c["webadmin"]["configuration"]["edition"]["allowed"] is False
    assert c["transcoding"] == {"threads": 3, "concurrency": 2}
    # peertube_settings merged over the role's, after them.
    assert c["signup"] == {"enabled": True, "limit": -1}
    assert c["log"] == {"level": "warn"}
    assert list(c)[-2:] == ["signup", "log"]


@pytest.mark.parametrize(
    ("variant", "tls", "disable_starttls", "threads"),
    [("smtp_starttls", False, False, 1), ("smtp_none", False, True, 1), ("away", True, False, 3)],
)
def test_smtp_security_and_threads(
    rendered: Rendered, variant: str, tls: bool, disable_starttls: bool, threads: int
) -> None:
    c = rendered.config(variant)
    assert (c["smtp"]["tls"], c["smtp"]["disable_starttls"]) == (tls, disable_starttls)
    assert c["transcoding"]["threads"] == threads


@pytest.mark.parametrize(
    ("variant", "storage"),
    [("upstream", "/var/www/peertube/storage"), ("away", "/data/ptube-storage")],
)
def test_storage_is_upstreams_layout_under_the_storage_dir(
    rendered: Rendered, variant: str, storage: str
) -> None:
    assert rendered.config(variant)["storage"] == {
        key: f"{storage}/{name}/" for key, name in UPSTREAM_STORAGE.items()
    }


def test_object_storage_is_upstreams_sections_in_one_bucket(rendered: Rendered) -> None:
    os_ = rendered.config("away")["object_storage"]
    assert {k: os_[k] for k in ("enabled", "endpoint", "region", "force_path_style")} == {
        "enabled": True, "endpoint": "s3.eu-central-1.example.com", "region": "eu-central-1",
        "force_path_style": True,
    }  # fmt: skip
    assert os_["credentials"] == {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
    }
    # '' = a provider without object ACLs: upstream says use null.
    assert os_["upload_acl"] == {"public": None, "private": None}
    for kind, prefix in UPSTREAM_OBJECT_STORAGE_PREFIXES.items():
        assert os_[kind] == {
            "bucket_name": "ptube-media", "prefix": prefix, "base_url": "https://cdn.example.org",
        }  # fmt: skip


def test_production_yaml_starts_with_the_managed_header_and_says_what_wins(
    rendered: Rendered,
) -> None:
    text = rendered.text("upstream", "production.yaml")
    assert text.startswith("#")
    assert "local-production.json" in text and "default.yaml" in text


def test_the_configuration_files_modes_and_owners(rendered: Rendered) -> None:
    files = {f["path"]: f for f in rendered.var("away", "__peertube_config_files")}
    production = files["/srv/ptube/config/production.yaml"]
    assert (production["owner"], production["group"], production["mode"]) == (
        "ptube", "ptube", "0640",
    )  # fmt: skip
    assert production["diff"] is False
    assert files["/srv/ptube/.npmrc"]["state"] == "file"
    assert "registry=http://npm.lab.test:4873/" in files["/srv/ptube/.npmrc"]["content"]
    upstream = {f["path"]: f for f in rendered.var("upstream", "__peertube_config_files")}
    assert upstream["/var/www/peertube/.npmrc"]["state"] == "absent"
    dirs = {d["path"]: d["mode"] for d in rendered.var("upstream", "__peertube_dirs")}
    # Upstream: chmod 755 on the home (nginx traverses it), 750 on config/.
    assert dirs["/var/www/peertube"] == "0755"
    assert dirs["/var/www/peertube/config"] == "0750"
    other = {f["path"]: f for f in rendered.var("upstream", "__peertube_other_files")}
    assert other["/etc/fedictl/peertube/pgpass"]["mode"] == "0600"
    assert other["/etc/fedictl/peertube/pgpass"]["content"] == (
        "*:*:peertube_prod:peertube:Zq3vR8pL1mN7xK2wT5yB\n"
    )
    # The first start's root password never stays: declared absent.
    assert other["/etc/fedictl/peertube/initial-root-password.env"]["state"] == "absent"


# --- the systemd unit -----------------------------------------------------------------------------
# Upstream's support/systemd/peertube.service at v8.2.1, as data.
def upstream_unit(user: str, home: str) -> dict[str, list[tuple[str, str]]]:
    return {
        "Unit": [
            ("Description", "PeerTube daemon"),
            ("After", "network.target postgresql.service redis-server.service"),
        ],
        "Service": [
            ("Type", "simple"),
            ("Environment", "NODE_ENV=production"),
            ("Environment", f"NODE_CONFIG_DIR={home}/config"),
            ("User", user), ("Group", user),
            ("ExecStart", "/usr/bin/node dist/server"),
            ("WorkingDirectory", f"{home}/peertube-latest"),
            ("SyslogIdentifier", "peertube"),
            ("Restart", "always"),
            ("ProtectSystem", "full"),
            ("PrivateDevices", "false"),
            ("NoNewPrivileges", "true"),
            ("ProtectHome", "true"),
            ("CapabilityBoundingSet", "~CAP_SYS_ADMIN"),
        ],
        "Install": [("WantedBy", "multi-user.target")],
    }  # fmt: skip


# fedictl's documented differences (README, "Differences from upstream"): a tighter sandbox that
# leaves writable only what PeerTube writes, including pnpm's store and cache (plugin installs).
def fedictl_unit_changes(
    home: str, storage: str
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    added = [
        ("After", "network.target postgresql.service redis-server.service valkey-server.service"),
        ("TimeoutStopSec", "60"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", storage), ("ReadWritePaths", f"{home}/config"),
        ("ReadWritePaths", f"{home}/.cache"), ("ReadWritePaths", f"{home}/.local"),
        ("PrivateTmp", "true"), ("PrivateDevices", "true"),
        ("CapabilityBoundingSet", ""), ("AmbientCapabilities", ""),
        ("ProtectProc", "invisible"), ("ProtectHostname", "true"), ("ProtectClock", "true"),
        ("ProtectKernelTunables", "true"), ("ProtectKernelModules", "true"),
        ("ProtectKernelLogs", "true"), ("ProtectControlGroups", "true"),
        ("RestrictNamespaces", "true"), ("RestrictRealtime", "true"),
        ("RestrictSUIDSGID", "true"), ("LockPersonality", "true"), ("RemoveIPC", "true"),
        ("PrivateMounts", "true"), ("PrivateUsers", "true"), ("UMask", "0022"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"), ("SystemCallFilter", "~@privileged"),
        ("SystemCallFilter", "@chown"), ("SystemCallErrorNumber", "EPERM"),
    ]  # fmt: skip
    removed = [
        ("After", "network.target postgresql.service redis-server.service"),
        ("ProtectSystem", "full"), ("PrivateDevices", "false"),
        ("CapabilityBoundingSet", "~CAP_SYS_ADMIN"),
    ]  # fmt: skip
    return Counter(added), Counter(removed)


@pytest.mark.parametrize(
    ("variant", "user", "home", "storage"),
    [
        ("upstream", "peertube", "/var/www/peertube", "/var/www/peertube/storage"),
        ("away", "ptube", "/srv/ptube", "/data/ptube-storage"),
    ],
)
def test_unit_is_upstreams_but_for_the_documented_deviations(
    rendered: Rendered, variant: str, user: str, home: str, storage: str
) -> None:
    unit = rendered.unit(variant)
    have = Counter(pair for section in unit.sections.values() for pair in section)
    want = Counter(pair for section in upstream_unit(user, home).values() for pair in section)
    added, removed = fedictl_unit_changes(home, storage)
    assert (have - want, want - have) == (added, removed)
    assert unit.get("Install", "WantedBy") == ["multi-user.target"]


def test_unit_holds_no_secret(rendered: Rendered) -> None:
    for variant in VARIANTS:
        text = rendered.text(variant, "peertube.service")
        assert "PT_INITIAL_ROOT_PASSWORD" not in text
        assert "EnvironmentFile" not in text
        for name, value in VARIANTS[variant].items():
            if "password" in name or "secret" in name:
                assert str(value) not in text, name


def test_unit_exposure_is_at_most_3(rendered: Rendered, tmp_path: Path) -> None:
    """systemd-analyze security rates the unit (offline, as the controller's systemd reads it;
    the lab reads it with Debian 13's)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "peertube.service"
    unit.write_text(rendered.text("upstream", "peertube.service"))
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    if found is None:
        pytest.skip(f"this systemd-analyze cannot rate a unit offline: {done.stderr.strip()}")
    assert float(found[1]) <= 3.0, done.stdout


# --- the nginx vhost ------------------------------------------------------------------------------
def _servers(vhost: tuple[Directive, ...]) -> list[Directive]:
    return [d for d in vhost if d.name == "server"]


def _block(directive: Directive) -> tuple[Directive, ...]:
    assert directive.block is not None
    return directive.block


def _locations(server: Directive) -> dict[tuple[str, ...], Directive]:
    found = [d for d in _block(server) if d.name == "location"]
    assert len({d.args for d in found}) == len(found), "a location appears twice"
    return {d.args: d for d in found}


# Upstream's support/nginx/peertube at v8.2.1: its HTTPS server's locations, as data.
STATIC = r"~ ^/static/(webseed|web-videos|redundancy|streaming-playlists)/"
PRIVATE = r"~ ^(/static/(webseed|web-videos|streaming-playlists/hls)/private/)|^/download"
OVERRIDES = (
    r"~ ^/client/(assets/images/(default-playlist\.jpg|default-avatar-account\.png"
    r"|default-avatar-account-48x48\.png|default-avatar-video-channel\.png"
    r"|default-avatar-video-channel-48x48\.png))$"
)
CLIENT = r"~ ^/client/(.*\.(js|css|png|svg|woff2|otf|ttf|woff|eot))$"
UPLOAD_RESUMABLE = r"~ ^/api/v1/videos/(upload-resumable|([^/]+/source/replace-resumable))$"
IMPORT_RESUMABLE = r"~ ^/api/v1/users/[^/]+/imports/import-resumable$"
UPLOAD_LEGACY = r"~ ^/api/v1/videos/(upload|([^/]+/studio/edit))$"
RUNNERS = r"~ ^/api/v1/runners/jobs/[^/]+/(update|success)$"
API_SMALL = r"~ ^/api/v1/(videos|video-playlists|video-channels|users/me)"
UNBUFFERED = [Directive("client_max_body_size", ("0",)),
              Directive("proxy_request_buffering", ("off",)),
              Directive("try_files", ("/dev/null", "@api"))]  # fmt: skip
CORS = [
    Directive("add_header", ("Access-Control-Allow-Origin", "*")),
    Directive("add_header", ("Access-Control-Allow-Methods", "GET, OPTIONS")),
    Directive("add_header", ("Access-Control-Allow-Headers", "Range,DNT,X-CustomHeader,"
              "Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
              "Content-Type")),
]  # fmt: skip
_FORWARDED = [
    Directive("proxy_set_header", ("X-Forwarded-For", "$proxy_add_x_forwarded_for")),
    Directive("proxy_set_header", ("Host", "$host")),
    Directive("proxy_set_header", ("X-Real-IP", "$remote_addr")),
]
CACHE_YEAR = Directive("add_header", ("Cache-Control", "public, max-age=31536000, immutable"))


def upstream_locations(home: str, storage: str, limit: str) -> dict[tuple[str, ...], list[Any]]:
    """Upstream's locations, with the paths and names fedictl substitutes (documented below)."""
    latest = f"{home}/peertube-latest"
    return {
        ("@api",): [*_FORWARDED, Directive("client_max_body_size", ("100k",)),
                    Directive("proxy_connect_timeout", ("10m",)),
                    Directive("proxy_send_timeout", ("10m",)),
                    Directive("proxy_read_timeout", ("10m",)), Directive("send_timeout", ("10m",)),
                    Directive("proxy_pass", ("http://peertube_backend",))],
        ("/",): [Directive("try_files", ("/dev/null", "@api"))],
        tuple(UPLOAD_RESUMABLE.split(" ", 1)): UNBUFFERED,
        tuple(IMPORT_RESUMABLE.split(" ", 1)): UNBUFFERED,
        tuple(UPLOAD_LEGACY.split(" ", 1)): [
            Directive("limit_except", ("POST", "HEAD"), (Directive("deny", ("all",)),)),
            Directive("client_max_body_size", ("12G",)),
            Directive("add_header", ("X-File-Maximum-Size", "8G", "always")),
            Directive("proxy_request_buffering", ("off",)),
            Directive("try_files", ("/dev/null", "@api"))],
        tuple(RUNNERS.split(" ", 1)): UNBUFFERED,
        tuple(API_SMALL.split(" ", 1)): [
            Directive("client_max_body_size", ("12M",)),
            Directive("add_header", ("X-File-Maximum-Size", "8M", "always")),
            Directive("try_files", ("/dev/null", "@api"))],
        ("@api_websocket",): [
            Directive("proxy_http_version", ("1.1",)), *_FORWARDED,
            Directive("proxy_set_header", ("Upgrade", "$http_upgrade")),
            Directive("proxy_set_header", ("Connection", "upgrade")),
            Directive("proxy_pass", ("http://peertube_backend",))],
        ("/socket.io",): [Directive("try_files", ("/dev/null", "@api_websocket"))],
        ("/tracker/socket",): [Directive("proxy_read_timeout", ("15m",)),
                               Directive("try_files", ("/dev/null", "@api_websocket"))],
        ("~", "^/plugins/[^/]+(/[^/]+)?/ws/"): [
            Directive("try_files", ("/dev/null", "@api_websocket"))],
        tuple(OVERRIDES.split(" ", 1)): [
            CACHE_YEAR, Directive("root", ("/",)),
            Directive("try_files", (f"{storage}/client-overrides/$1",
                                    f"{latest}/client/dist/$1", "@api"))],
        tuple(CLIENT.split(" ", 1)): [CACHE_YEAR,
                                      Directive("alias", (f"{latest}/client/dist/$1",))],
        tuple(PRIVATE.split(" ", 1)): [
            *_FORWARDED, Directive("proxy_max_temp_file_size", ("50M",)),
            Directive("proxy_limit_rate", (limit,)),
            Directive("proxy_pass", ("http://peertube_backend",))],
        tuple(STATIC.split(" ", 1)): [
            Directive("limit_rate_after", ("5M",)),
            Directive("set", ("$peertube_limit_rate", limit)),
            Directive("limit_rate", ("$peertube_limit_rate",)),
            Directive("if", ("($request_method", "=", "OPTIONS", ")"), (
                *CORS, Directive("add_header", ("Access-Control-Max-Age", "1728000")),
                Directive("add_header", ("Content-Type", "text/plain; charset=UTF-8")),
                Directive("add_header", ("Content-Length", "0")),
                Directive("return", ("204",)))),
            Directive("if", ("($request_method", "=", "GET", ")"), tuple(CORS)),
            Directive("sendfile", ("on",)), Directive("sendfile_max_chunk", ("1M",)),
            Directive("aio", ("threads",)),
            Directive("rewrite", ("^/static/webseed/(.*)$", "/web-videos/$1", "break")),
            Directive("rewrite", ("^/static/(.*)$", "/$1", "break")),
            Directive("try_files", ("$uri", "@api"))],
    }  # fmt: skip


HEADERS = Directive("include", ("/etc/nginx/snippets/fedictl-headers.conf",))


def _without_headers_include(block: tuple[Directive, ...]) -> list[Any]:
    """A block as upstream wrote it: fedictl's re-include of the headers snippet taken out."""
    out: list[Any] = []
    for d in block:
        if d == HEADERS:
            continue
        if d.block is not None:
            d = Directive(d.name, d.args, tuple(_without_headers_include(d.block)))
        out.append(d)
    return out


@pytest.mark.parametrize(
    ("variant", "home", "storage", "limit"),
    [
        ("upstream", "/var/www/peertube", "/var/www/peertube/storage", "5M"),
        ("away", "/srv/ptube", "/data/ptube-storage", "20M"),
    ],
)
def test_vhost_locations_are_upstreams(
    rendered: Rendered, variant: str, home: str, storage: str, limit: str
) -> None:
    """Every location of upstream's HTTPS server, with its directives, and no other. fedictl's
    differences: the upstream block is named peertube_backend (Mastodon's vhost has its own
    `backend`); root and alias follow peertube_home and peertube_storage_dir (the overrides'
    try_files uses absolute paths under `root /`, since the storage may lie outside the home);
    peertube_nginx_limit_rate sets the limit rates (upstream: edit 5M); a block with its own
    add_header includes the nginx role's headers snippet again (nginx drops inherited ones)."""
    (server,) = _servers(rendered.vhost(variant))
    locations = _locations(server)
    upstream = upstream_locations(home, storage, limit)
    assert set(locations) == set(upstream)
    for args, want in upstream.items():
        assert _without_headers_include(_block(locations[args])) == want, args


@pytest.mark.parametrize(("variant", "storage"), [("upstream", "/var/www/peertube/storage"),
                                                  ("away", "/data/ptube-storage")])  # fmt: skip
def test_vhost_server_settings_are_upstreams(
    rendered: Rendered, variant: str, storage: str
) -> None:
    (server,) = _servers(rendered.vhost(variant))
    settings = [d for d in _block(server) if d.name != "location"]
    assert settings == [
        Directive("server_name", (VARIANTS[variant]["peertube_domain"],)),
        Directive("include", ("/etc/nginx/snippets/fedictl-tls-peertube.conf",)),
        Directive("access_log", ("/var/log/nginx/peertube.access.log",)),
        Directive("error_log", ("/var/log/nginx/peertube.error.log",)),
        Directive("root", (storage,)),
        Directive("gzip", ("on",)),
        Directive("gzip_vary", ("on",)),
        Directive("gzip_types", ("text/css", "application/javascript", "font/truetype",
                                 "font/opentype", "application/vnd.ms-fontobject",
                                 "image/svg+xml", "application/xml")),
        Directive("gzip_min_length", ("1000",)),
        Directive("gzip_buffers", ("16", "8k")),
        Directive("gzip_comp_level", ("2",)),
        Directive("client_body_timeout", ("30s",)),
        Directive("client_header_timeout", ("10s",)),
        Directive("send_timeout", ("10s",)),
        Directive("keepalive_timeout", ("10s",)),
        Directive("resolver_timeout", ("10s",)),
        Directive("reset_timedout_connection", ("on",)),
        Directive("proxy_ignore_client_abort", ("on",)),
        Directive("tcp_nopush", ("on",)),
        Directive("tcp_nodelay", ("on",)),
    ]  # fmt: skip


def test_vhost_leaves_port_80_and_tls_to_the_nginx_role(rendered: Rendered) -> None:
    vhost = rendered.vhost("upstream")
    assert [d.name for d in vhost] == ["upstream", "server"]
    assert vhost[0] == Directive(
        "upstream", ("peertube_backend",), (Directive("server", ("127.0.0.1:9000",)),)
    )
    names = {d.name for d in _walk(vhost)}
    assert not names & {"listen", "ssl_certificate", "ssl_certificate_key", "ssl_protocols",
                        "ssl_ciphers", "ssl_stapling"}  # fmt: skip


def _walk(directives: tuple[Directive, ...]) -> Any:
    for d in directives:
        yield d
        if d.block is not None:
            yield from _walk(d.block)


def test_vhost_keeps_hsts_where_a_block_adds_headers(rendered: Rendered) -> None:
    """nginx drops inherited add_header lines in a block with its own: each such block includes
    the headers snippet (HSTS, nosniff) again."""
    for d in _walk(rendered.vhost("upstream")):
        if d.block is not None and any(i.name == "add_header" for i in d.block):
            assert HEADERS in d.block, d.args


# --- what the role declares for the backup role ---------------------------------------------------
@pytest.mark.parametrize("variant", ["upstream", "away"])
def test_backup_declaration_is_one_the_backup_program_accepts(
    rendered: Rendered, variant: str, tmp_path: Path
) -> None:
    declared = rendered.var(variant, "__peertube_backup_declaration")
    source = tmp_path / "peertube.json"
    source.write_text(json.dumps(declared))
    decl = backup.parse_declaration(declared, source)
    storage = "/var/www/peertube/storage" if variant == "upstream" else "/data/ptube-storage"
    home = "/var/www/peertube" if variant == "upstream" else "/srv/ptube"
    assert decl.paths == [storage, f"{home}/config/local-production.json"]
    assert decl.cache_paths == [f"{storage}/tmp", f"{storage}/cache", f"{storage}/logs"]
    assert decl.config_files == [f"{home}/config/production.yaml"]
    assert decl.units == ["peertube.service"]


# --- the CLI's registry agrees with the role ------------------------------------------------------
def test_registry_and_role_pin_the_same_release() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    mapping = (ROOT / "playbooks" / "vars" / "peertube.yml").read_text()
    assert peertube.Settings.version == defaults["peertube_version"] == "v8.3.2"
    assert f"default('{defaults['peertube_version']}')" in mapping
    assert peertube.Settings.storage_dir == "/var/www/peertube/storage"
    assert f"default('{peertube.Settings.storage_dir}')" in mapping


def test_registry_version_pattern_is_the_roles(rendered: Rendered) -> None:
    assert peertube.APP.version_pattern == rendered.var("upstream", "__peertube_version_pattern")


def test_registry_knows_the_pinned_line_and_its_advisories() -> None:
    line = releases.find_line(peertube.LINES, peertube.Settings.version)
    assert line is not None and line.newest.version == peertube.Settings.version
    assert releases.verdict("peertube", peertube.LINES, "v8.3.2").level == "OK"
    found = releases.verdict("peertube", peertube.LINES, "v8.3.1")
    assert found.level == "CRIT" and {a.id for a in found.advisories} == {
        "GHSA-wq5f-xc86-pv6w", "GHSA-5j4v-77rx-h5qg",
    }  # fmt: skip
    assert releases.verdict("peertube", peertube.LINES, "v8.2.3").level == "CRIT"
    assert releases.validate_lines("peertube", peertube.LINES) == []
    assert peertube.LINES[-1].requirements["postgresql"] == ">= 14"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("TEST-ONLY-root-pw", True), ("short", False), ("x" * 51, False), ("quote'd-pw", False),
     (" padded-pw ", False), ("line\nbreak-pw", False), ("é" * 40, False)],
)  # fmt: skip
def test_root_password_check_is_the_roles(value: str, ok: bool) -> None:
    """roles/peertube/tasks/validate.yml refuses what the EnvironmentFile cannot carry."""
    spec = next(s for s in peertube.SECRETS if s.key == "vault_peertube_root_password")
    assert (spec.check(value) is None) is ok
