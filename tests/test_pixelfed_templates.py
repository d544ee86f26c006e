"""The pixelfed role's .env, PHP-FPM pool, systemd units and nginx vhost, rendered by Ansible from
the role's own templates, compared point by point with upstream's files.

Upstream, as read where fedictl is developed: the installation guide (pixelfed/docs
``running-pixelfed/installation.md`` @ 11b2603b), whose nginx server block is the same as
``contrib/nginx.conf`` and whose Horizon unit and cron line are written below as data; its
``.env`` keys; and ``user:create``'s questions (``app/Console/Commands/UserCreate.php``). The
v0.14.4 tree itself could not be read (docs/pixelfed.md). Where fedictl differs on purpose, the
difference is data too, and the tests assert the role differs by exactly that.

Also: the backup declaration is one the backup program accepts, and the CLI's registry agrees with
the role (pin, tag pattern, units).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from _inventory_helpers import ansible_tool
from test_mastodon_templates import Directive, Unit, parse_nginx, parse_unit

from fedictl.apps import pixelfed

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "pixelfed"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


backup = _load(ROOT / "roles" / "backup" / "files" / "fedictl_backup.py", "fedictl_backup_px")

# --- upstream, as data ----------------------------------------------------------------------------
# The .env keys the installation guide tells an admin to set ("Configure environment variables").
GUIDE_ENV_KEYS = {
    "APP_NAME", "APP_DEBUG", "APP_URL", "APP_DOMAIN", "ADMIN_DOMAIN", "SESSION_DOMAIN",
    "DB_CONNECTION", "DB_HOST", "DB_PORT", "DB_DATABASE", "DB_USERNAME", "DB_PASSWORD",
    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_SCHEME",
    "MAIL_FROM_ADDRESS", "MAIL_FROM_NAME", "MAIL_ENCRYPTION", "MAIL_DRIVER", "MAIL_HOST",
    "MAIL_PORT", "MAIL_USERNAME", "MAIL_PASSWORD", "ACTIVITY_PUB", "AP_REMOTE_FOLLOW",
}  # fmt: skip
# The guide's Horizon unit (/etc/systemd/system/pixelfed.service), paths as the role's.
UPSTREAM_HORIZON = """
[Unit]
Description=Pixelfed task queueing via Laravel Horizon
After=network.target
Requires=mariadb
Requires=php-fpm
Requires=redis
Requires=nginx

[Service]
Type=simple
ExecStart=/usr/bin/php /usr/share/webapps/pixelfed/artisan horizon
User=http
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
# The guide's nginx server block (HTTPS), as nginx reads it.
UPSTREAM_VHOST = r"""
server {
    listen 443 ssl http2;
    listen [::]:443 ssl http2;
    server_name pixelfed.example;
    root /usr/share/webapps/pixelfed/public;

    ssl_certificate /etc/nginx/ssl/server.crt;
    ssl_certificate_key /etc/nginx/ssl/server.key;

    ssl_protocols TLSv1.2;
    ssl_ciphers EECDH+AESGCM:EECDH+CHACHA20:EECDH+AES;
    ssl_prefer_server_ciphers on;

    add_header X-Frame-Options "SAMEORIGIN";
    add_header X-XSS-Protection "1; mode=block";
    add_header X-Content-Type-Options "nosniff";

    index index.html index.htm index.php;

    charset utf-8;

    location / {
        try_files $uri $uri/ /index.php?$query_string;
    }

    location = /favicon.ico { access_log off; log_not_found off; }
    location = /robots.txt  { access_log off; log_not_found off; }

    error_page 404 /index.php;

    location ~ \.php$ {
        fastcgi_split_path_info ^(.+\.php)(/.+)$;
        fastcgi_pass unix:/run/php-fpm/php-fpm.sock;
        fastcgi_index index.php;
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
    }

    location ~ /\.(?!well-known).* {
        deny all;
    }
}
"""

BASE: dict[str, Any] = {
    "pixelfed_domain": "photos.example.org",
    "pixelfed_admin_email": "admin@example.org",
    "pixelfed_app_key": "base64:" + "A" * 43 + "=",
    "pixelfed_db_password": "db-password-0123456789",
    "pixelfed_redis_password": "redis-password-0123456789",
    "pixelfed_admin_password": "admin-password-0123",
    "pixelfed_release_sha256": "0" * 64,
    "ansible_facts": {"memtotal_mb": 4096},
}
# Values away from the defaults, so that an ignored setting fails.
VARIANTS: dict[str, dict[str, Any]] = {
    "upstream": BASE,
    "tuned": BASE | {
        "pixelfed_user": "pxf",
        "pixelfed_home": "/srv/pxf",
        "pixelfed_app_name": "Foto Club",
        "pixelfed_trust_proxies": "10.0.0.5",
        "pixelfed_enable_config_cache": True,
        "pixelfed_open_registration": True,
        "pixelfed_max_upload_kb": 51200,
        "pixelfed_max_album_length": 25,
        "pixelfed_redis_db": 7,
        "pixelfed_redis_db_cache": 9,
        "pixelfed_db_host": "10.0.0.2",
        "pixelfed_smtp_server": "smtp.example.org",
        "pixelfed_smtp_port": 465,
        "pixelfed_smtp_login": "mailer",
        "pixelfed_smtp_password": "smtp-secret",
        "pixelfed_smtp_security": "tls",
        "pixelfed_object_storage_enabled": True,
        "pixelfed_object_storage_endpoint": "https://s3.lab.test:9000",
        "pixelfed_object_storage_bucket": "px-media",
        "pixelfed_object_storage_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "pixelfed_object_storage_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
        "pixelfed_env_extra": {"STORIES_ENABLED": True},
        "pixelfed_fpm_max_children": 12,
        "pixelfed_horizon_stop_timeout": 120,
    },
}  # fmt: skip
TEMPLATES = {
    "env": "var/www/pixelfed/shared/.env.j2",
    "pool": "etc/php/8.4/fpm/pool.d/pixelfed.conf.j2",
    "horizon": "etc/systemd/system/pixelfed-horizon.service.j2",
    "scheduler.service": "etc/systemd/system/pixelfed-scheduler.service.j2",
    "scheduler.timer": "etc/systemd/system/pixelfed-scheduler.timer.j2",
    "vhost": "etc/nginx/sites-available/pixelfed.j2",
}
VARS = [
    "__pixelfed_backup_declaration", "__pixelfed_version_pattern", "__pixelfed_all_files",
    "__pixelfed_units", "__pixelfed_fpm_children", "__pixelfed_env_clashes",
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

    def var(self, variant: str, name: str) -> Any:
        return json.loads((self.root / variant / "vars.json").read_text())[name]

    def env(self, variant: str) -> dict[str, str]:
        return parse_env(self.text(variant, "env"))

    def unit(self, variant: str, name: str) -> Unit:
        return parse_unit(self.text(variant, name))

    def vhost(self, variant: str) -> tuple[Directive, ...]:
        return parse_nginx(self.text(variant, "vhost"))

    def pool(self, variant: str) -> dict[str, str]:
        return parse_pool(self.text(variant, "pool"))


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines as phpdotenv reads these: '...' literal, bare words as they are. A key
    twice is an error (phpdotenv keeps the first; a silent override is a bug here)."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=('([^'\n]*)'|[^\s'\"#]*)", line)
        assert match, f"line {number}: {line!r}"
        key = match.group(1)
        assert key not in out, f"line {number}: {key} twice"
        out[key] = match.group(3) if match.group(3) is not None else match.group(2)
    return out


def parse_pool(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith((";", "#", "[")):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        assert key not in out, key
        out[key] = value
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    tmp = tmp_path_factory.mktemp("pixelfed-templates")
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
        "ANSIBLE_FILTER_PLUGINS": str(ROOT / "plugins" / "filter"),
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


# --- .env ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_writes_every_key_of_upstreams_guide(rendered: Rendered, variant: str) -> None:
    assert GUIDE_ENV_KEYS - set(rendered.env(variant)) == set()


def test_env_values_follow_the_variables(rendered: Rendered) -> None:
    env = rendered.env("upstream")
    assert env["APP_URL"] == "https://photos.example.org"
    assert env["APP_DOMAIN"] == env["ADMIN_DOMAIN"] == env["SESSION_DOMAIN"] == "photos.example.org"
    assert env["APP_ENV"] == "production" and env["APP_DEBUG"] == "false"
    assert env["APP_KEY"] == BASE["pixelfed_app_key"]  # from the vault: never key:generate
    assert env["TRUST_PROXIES"] == "127.0.0.1"  # explicit: no longer '*' by default since 0.12.8
    assert env["ENABLE_CONFIG_CACHE"] == "false"
    assert env["DB_CONNECTION"] == "pgsql" and env["DB_HOST"] == "/var/run/postgresql"
    assert env["DB_PASSWORD"] == BASE["pixelfed_db_password"]
    assert (
        env["REDIS_CLIENT"] == "phpredis"
        and env["REDIS_PASSWORD"] == BASE["pixelfed_redis_password"]
    )
    assert (env["REDIS_DATABASE"], env["REDIS_CACHE_DB"]) == ("3", "5")
    assert env["MAIL_DRIVER"] == env["MAIL_MAILER"] == "log"  # no relay: upstream's default
    assert env["ACTIVITY_PUB"] == env["AP_INBOX"] == env["AP_REMOTE_FOLLOW"] == "true"
    assert env["PF_ENABLE_CLOUD"] == "false" and env["OPEN_REGISTRATION"] == "false"
    assert env["MAX_PHOTO_SIZE"] == "15000"


def test_env_values_away_from_the_defaults(rendered: Rendered) -> None:
    env = rendered.env("tuned")
    assert env["APP_NAME"] == "Foto Club" and env["TRUST_PROXIES"] == "10.0.0.5"
    assert env["ENABLE_CONFIG_CACHE"] == "true" and env["OPEN_REGISTRATION"] == "true"
    assert (env["REDIS_DATABASE"], env["REDIS_DB"], env["REDIS_CACHE_DB"]) == ("7", "7", "9")
    assert env["DB_HOST"] == "10.0.0.2"
    assert (env["MAIL_DRIVER"], env["MAIL_HOST"], env["MAIL_PORT"]) == (
        "smtp",
        "smtp.example.org",
        "465",
    )
    assert env["MAIL_ENCRYPTION"] == "ssl" and env["MAIL_USERNAME"] == "mailer"
    assert env["PF_ENABLE_CLOUD"] == "true" and env["FILESYSTEM_CLOUD"] == "s3"
    assert env["AWS_BUCKET"] == "px-media" and env["AWS_ENDPOINT"] == "https://s3.lab.test:9000"
    assert (
        env["AWS_SECRET_ACCESS_KEY"]
        == VARIANTS["tuned"]["pixelfed_object_storage_secret_access_key"]
    )
    assert env["MAX_PHOTO_SIZE"] == "51200" and env["MAX_ALBUM_LENGTH"] == "25"
    assert env["STORIES_ENABLED"] == "true"  # pixelfed_env_extra, appended


def test_env_keys_the_role_writes_cannot_come_from_env_extra(rendered: Rendered) -> None:
    assert rendered.var("tuned", "__pixelfed_env_clashes") == []


def test_env_is_private_to_the_app_user(rendered: Rendered) -> None:
    files = {f["path"]: f for f in rendered.var("tuned", "__pixelfed_all_files")}
    env = files["/srv/pxf/shared/.env"]
    assert (env["owner"], env["group"], env["mode"], env["diff"]) == ("pxf", "pxf", "0640", False)
    assert files["/etc/fedictl/pixelfed/pgpass"]["mode"] == "0600"


# --- one upload limit for Pixelfed, PHP and nginx -------------------------------------------------
def _mib(value: str) -> int:
    match = re.fullmatch(r"([0-9]+)[mM]", value)
    assert match, value
    return int(match.group(1))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_upload_limits_agree(rendered: Rendered, variant: str) -> None:
    kib = int(rendered.env(variant)["MAX_PHOTO_SIZE"])
    pool = rendered.pool(variant)
    upload = _mib(pool["php_admin_value[upload_max_filesize]"])
    post = _mib(pool["php_admin_value[post_max_size]"])
    (body,) = [
        d.args[0] for d in server(rendered.vhost(variant)) if d.name == "client_max_body_size"
    ]
    assert upload * 1024 >= kib and post > upload and _mib(body) == post


# --- the PHP-FPM pool -----------------------------------------------------------------------------
def test_pool_is_the_apps_own(rendered: Rendered) -> None:
    pool = rendered.pool("upstream")
    assert (pool["user"], pool["group"]) == ("pixelfed", "pixelfed")
    assert pool["listen"] == "/run/php/php8.4-fpm-pixelfed.sock"
    assert (pool["listen.owner"], pool["listen.group"], pool["listen.mode"]) == (
        "pixelfed", "www-data", "0660",
    )  # fmt: skip
    assert pool["pm"] == "dynamic" and pool["pm.max_children"] == "16"  # 4096 MiB / 2 / 128
    tuned = rendered.pool("tuned")
    assert (tuned["user"], tuned["pm.max_children"]) == ("pxf", "12")
    assert int(tuned["php_admin_value[max_file_uploads]"]) >= 25


# --- Horizon and the scheduler --------------------------------------------------------------------
# Where the role's Horizon unit differs from the guide's, on purpose (the sandbox aside).
HORIZON_CHANGES = {
    ("Unit", "After"),  # After= instead of Requires= (database and Redis may be on other hosts)
    ("Unit", "Requires"),
    ("Service", "ExecStart"),  # Debian's php8.4 and the current release
    ("Service", "User"),  # the app user, not the web server's
    ("Service", "Restart"),  # always: horizon:terminate exits with status 0
}
SANDBOX_KEYS = {
    "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectProc",
    "ProtectHostname", "ProtectClock", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces", "RestrictRealtime",
    "RestrictSUIDSGID", "LockPersonality", "RemoveIPC", "PrivateMounts", "PrivateUsers", "UMask",
    "RestrictAddressFamilies", "SystemCallArchitectures", "SystemCallFilter",
}  # fmt: skip
HORIZON_ADDED = {"Group", "WorkingDirectory", "RestartSec", "KillSignal", "TimeoutStopSec",
                 "SyslogIdentifier"}  # fmt: skip


def test_horizon_unit_is_upstreams_but_for_the_documented_changes(rendered: Rendered) -> None:
    ours = rendered.unit("upstream", "horizon")
    theirs = parse_unit(UPSTREAM_HORIZON)
    for section, entries in theirs.sections.items():
        for key, value in entries:
            if (section, key) not in HORIZON_CHANGES:
                assert value in ours.get(section, key), (section, key)
    added = {k for s, entries in ours.sections.items() for k, _ in entries
             if not theirs.get(s, k)}  # fmt: skip
    assert added - SANDBOX_KEYS - HORIZON_ADDED - {"After"} == set()
    assert ours.get("Service", "ExecStart") == [
        "/usr/bin/php8.4 /var/www/pixelfed/current/artisan horizon"
    ]
    assert ours.get("Service", "User") == ["pixelfed"] and ours.get("Service", "Restart") == [
        "always"
    ]
    assert ours.get("Service", "ReadWritePaths") == ["/var/www/pixelfed/shared/storage"]


def test_horizon_unit_values_away_from_the_defaults(rendered: Rendered) -> None:
    unit = rendered.unit("tuned", "horizon")
    assert unit.get("Service", "User") == ["pxf"]
    assert unit.get("Service", "WorkingDirectory") == ["/srv/pxf/current"]
    assert unit.get("Service", "TimeoutStopSec") == ["120"]


def test_the_scheduler_runs_schedule_run_every_minute(rendered: Rendered) -> None:
    timer = rendered.unit("upstream", "scheduler.timer")
    assert timer.get("Timer", "OnCalendar") == ["*-*-* *:*:00"]  # upstream's `* * * * *`
    service = rendered.unit("upstream", "scheduler.service")
    assert service.get("Service", "Type") == ["oneshot"]
    assert service.get("Service", "ExecStart") == [
        "/usr/bin/php8.4 /var/www/pixelfed/current/artisan schedule:run"
    ]
    assert service.get("Service", "User") == ["pixelfed"]


# --- the vhost ------------------------------------------------------------------------------------
def server(directives: tuple[Directive, ...]) -> tuple[Directive, ...]:
    (block,) = [d for d in directives if d.name == "server"]
    assert block.block is not None
    return block.block


# Upstream's directives the role leaves to the nginx role's TLS snippet (listen, certificates,
# protocols, ciphers, X-Content-Type-Options) or changes: see the template's comments.
VHOST_REPLACED = {"listen", "ssl_certificate", "ssl_certificate_key", "ssl_protocols",
                  "ssl_ciphers", "ssl_prefer_server_ciphers", "server_name", "root"}  # fmt: skip
VHOST_ADDED = {"include", "access_log", "error_log", "client_max_body_size"}


def _flat(directives: tuple[Directive, ...]) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for d in directives:
        out.append(d.key)
        if d.block:
            out += [(f"{d.key}>{k[0]}", k[1]) for k in _flat(d.block)]
    return out


def test_vhost_is_upstreams_but_for_the_documented_changes(rendered: Rendered) -> None:
    ours = server(rendered.vhost("upstream"))
    theirs = server(parse_nginx(UPSTREAM_VHOST))
    php = ("location", ("~", r"\.php$"))
    changed_in_php = {
        ("fastcgi_pass", ("unix:/run/php-fpm/php-fpm.sock",)),
        ("fastcgi_param", ("SCRIPT_FILENAME", "$document_root$fastcgi_script_name")),
    }
    expected = [
        k for k in _flat(theirs)
        if k[0] not in VHOST_REPLACED
        and k != ("add_header", ("X-Content-Type-Options", "nosniff"))
        and (k[0].removeprefix(f"{php}>"), k[1]) not in changed_in_php
    ]  # fmt: skip
    found = _flat(ours)
    headers = [(k, a[:2]) for k, a in found if k == "add_header"]
    assert ("add_header", ("X-Frame-Options", "SAMEORIGIN")) in headers
    assert ("add_header", ("X-XSS-Protection", "1; mode=block")) in headers
    found_no_always = [(k, a[:2]) if k == "add_header" else (k, a) for k, a in found]
    assert [k for k in expected if k not in found_no_always] == []
    names = {k[0] for k in found if ">" not in k[0]}
    assert names - {k[0] for k in _flat(theirs)} - VHOST_ADDED == set()
    assert (f"{php}>fastcgi_pass", ("unix:/run/php/php8.4-fpm-pixelfed.sock",)) in found
    assert ("root", ("/var/www/pixelfed/current/public",)) in found
    assert ("include", ("/etc/nginx/snippets/fedictl-tls-pixelfed.conf",)) in found


def test_vhost_values_away_from_the_defaults(rendered: Rendered) -> None:
    found = _flat(server(rendered.vhost("tuned")))
    assert ("root", ("/srv/pxf/current/public",)) in found
    assert ("server_name", ("photos.example.org",)) in found
    assert ("client_max_body_size", ("51m",)) in found


# --- backup and registry ------------------------------------------------------------------------
def test_backup_declaration_is_one_the_backup_program_accepts(
    rendered: Rendered, tmp_path: Path
) -> None:
    declared = rendered.var("tuned", "__pixelfed_backup_declaration")
    source = tmp_path / "pixelfed.json"
    source.write_text(json.dumps(declared))
    decl = backup.parse_declaration(declared, source)
    assert decl.paths == ["/srv/pxf/shared/storage/app"]
    assert decl.cache_paths == [
        "/srv/pxf/shared/storage/app/cache",
        "/srv/pxf/shared/storage/app/public/cache",
    ]
    assert decl.config_files == [
        "/srv/pxf/shared/.env",
        "/srv/pxf/shared/storage/oauth-private.key",
        "/srv/pxf/shared/storage/oauth-public.key",
    ]
    assert decl.units == [
        "php8.4-fpm.service",
        "pixelfed-horizon.service",
        "pixelfed-scheduler.timer",
    ]


def test_the_registry_agrees_with_the_role(rendered: Rendered) -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert pixelfed.Settings().version == defaults["pixelfed_version"]
    assert pixelfed.APP.version_pattern == rendered.var("upstream", "__pixelfed_version_pattern")
    assert set(pixelfed.APP.units) <= set(rendered.var("upstream", "__pixelfed_units"))
    newest = pixelfed.LINES[-1].newest.version
    assert newest == defaults["pixelfed_version"]
    playbook_vars = yaml.safe_load((ROOT / "playbooks" / "vars" / "pixelfed.yml").read_text())
    assert f"default('{newest}')" in playbook_vars["pixelfed_version"]
