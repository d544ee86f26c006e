"""The mastodon role's .env.production, systemd units and nginx vhost, rendered by Ansible from the
role's own templates, compared key by key and location by location with upstream v4.6.5 as
../shared/upstream/mastodon.md records it (§3 for the env file, §4.1 units, §4.2 nginx).

Upstream's facts are written below as data. Where fedictl differs on purpose, the difference is
written as data too, and the tests assert the role differs by exactly that and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from _inventory_helpers import ansible_tool

from fedictl.apps.mastodon import vapid_keypair
from fedictl.secret_formats import alphanumeric

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "mastodon"
NGINX_ROLE = ROOT / "roles" / "nginx"

# Snippets the nginx role writes (roles/nginx/tasks/certificates.yml and configure.yml; the site is
# named "mastodon" by playbooks/proxy.yml). fedictl deviation: TLS, the port-80 server, HSTS and the
# other security headers come from these, not from the vhost itself.
TLS_SNIPPET = "/etc/nginx/snippets/fedictl-tls-mastodon.conf"
HEADERS_SNIPPET = "/etc/nginx/snippets/fedictl-headers.conf"

# --- Inputs ---------------------------------------------------------------------------------------
# Test-only secrets in upstream's formats (§3.2).
_VAPID_PRIVATE, _VAPID_PUBLIC = vapid_keypair()
SECRETS: dict[str, str] = {
    "mastodon_secret_key_base": secrets.token_hex(64),
    "mastodon_active_record_encryption_deterministic_key": alphanumeric(32),
    "mastodon_active_record_encryption_key_derivation_salt": alphanumeric(32),
    "mastodon_active_record_encryption_primary_key": alphanumeric(32),
    "mastodon_vapid_private_key": _VAPID_PRIVATE,
    "mastodon_vapid_public_key": _VAPID_PUBLIC,
}
# §3.2: each secret's .env.production key and format; the role's variable is mastodon_<key>.
SECRET_FORMATS = {
    "SECRET_KEY_BASE": r"[0-9a-f]{128}",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY": r"[A-Za-z0-9]{32}",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT": r"[A-Za-z0-9]{32}",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY": r"[A-Za-z0-9]{32}",
    "VAPID_PRIVATE_KEY": r"[A-Za-z0-9_-]{43}=",
    "VAPID_PUBLIC_KEY": r"[A-Za-z0-9_-]{87}=",
}

# Passwords that dotenv would mangle unquoted: spaces, '#' (comment), '$' (expansion), backslash,
# backtick, double quote. validate.yml refuses only single quotes and line breaks.
DB_PASSWORD = 'db pass #1 $HOME ${PATH} $(id) `id` "dq" back\\slash'
REDIS_PASSWORD = "redis#pw $X with  two spaces"

VARIANTS: dict[str, dict[str, Any]] = {
    # The role's defaults, which are upstream's layout and values: the units and the vhost must be
    # upstream's, line by line, but for the documented deviations.
    "upstream": {
        **SECRETS,
        "mastodon_local_domain": "social.example.org",
        "mastodon_db_password": "Zq3vR8pL1mN7xK2wT5yB",
        "mastodon_redis_password": "Hj6fD2sA9gK4lP0oI8uY",
    },
    # Everything set away from the defaults: web domain, S3, search, SMTP with STARTTLS and a login,
    # two streaming ports, another user and home, Debian's Ruby, passwords with awkward characters.
    "away": {
        **SECRETS,
        "mastodon_local_domain": "example.org",
        "mastodon_web_domain": "mastodon.example.org",
        "mastodon_alternate_domains": ["social.example.net", "toot.example.net"],
        "mastodon_single_user_mode": True,
        "mastodon_authorized_fetch": True,
        "mastodon_limited_federation_mode": False,
        "mastodon_default_locale": "de",
        "mastodon_update_check_url": "",
        "mastodon_ip_retention_period": 2592000,
        "mastodon_session_retention_period": 1209600,
        "mastodon_user": "mstdn",
        "mastodon_home": "/srv/mstdn",
        "mastodon_ruby_source": "debian",
        "mastodon_db_host": "db.internal.example.org",
        "mastodon_db_port": 6432,
        "mastodon_db_name": "mastodon_prod_a",
        "mastodon_db_user": "mstdn_app",
        "mastodon_db_password": DB_PASSWORD,
        "mastodon_redis_host": "10.20.0.7",
        "mastodon_redis_port": 6380,
        "mastodon_redis_password": REDIS_PASSWORD,
        "mastodon_redis_db": 3,
        "mastodon_es_enabled": True,
        "mastodon_es_host": "https://search.example.org",
        "mastodon_es_port": 9201,
        "mastodon_es_user": "es_user",
        "mastodon_es_password": "es pass $1#",
        "mastodon_smtp_server": "smtp.example.org",
        "mastodon_smtp_port": 2587,
        "mastodon_smtp_login": "notify@example.org",
        "mastodon_smtp_password": "smtp pw $(x) #y",
        "mastodon_smtp_from_address": "Mastodon <notifications@example.org>",
        "mastodon_smtp_security": "starttls",
        "mastodon_s3_enabled": True,
        "mastodon_s3_bucket": "mstdn-media",
        "mastodon_s3_endpoint": "https://s3.eu-central-1.example.com",
        "mastodon_s3_region": "eu-central-1",
        "mastodon_s3_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "mastodon_s3_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
        "mastodon_s3_alias_host": "files.example.org",
        "mastodon_s3_permission": "private",
        "mastodon_extra_media_hosts": ["https://media.example.net", "https://cdn.example.net"],
        "mastodon_web_concurrency": 3,
        "mastodon_max_threads": 7,
        "mastodon_web_port": 3100,
        "mastodon_streaming_ports": [4100, 4101],
        "mastodon_sidekiq_concurrency": 17,
        "mastodon_extra_env": {
            "DEEPL_PLAN": "free",
        },
    },
    # SMTP without TLS or login (SMTP_AUTH_METHOD=none); AUTHORIZED_FETCH forced off.
    "smtp_none": {
        **SECRETS,
        "mastodon_local_domain": "social.example.org",
        "mastodon_db_password": "Zq3vR8pL1mN7xK2wT5yB",
        "mastodon_redis_password": "Hj6fD2sA9gK4lP0oI8uY",
        "mastodon_authorized_fetch": False,
        "mastodon_smtp_server": "smtp.example.org",
        "mastodon_smtp_security": "none",
    },
    # SMTP over TLS on 465.
    "smtp_tls": {
        **SECRETS,
        "mastodon_local_domain": "social.example.org",
        "mastodon_db_password": "Zq3vR8pL1mN7xK2wT5yB",
        "mastodon_redis_password": "Hj6fD2sA9gK4lP0oI8uY",
        "mastodon_smtp_server": "mail.example.org",
        "mastodon_smtp_port": 465,
        "mastodon_smtp_login": "mastodon",
        "mastodon_smtp_password": "Wq8eR4tY2uI6oP0aS3dF",
        "mastodon_smtp_security": "tls",
    },
}

# Output name -> template, as tasks/configure.yml writes them. The units depend on the layout only,
# so the SMTP variants render just the env file and the vhost.
TEMPLATES = {
    ".env.production": "home/mastodon/shared/env.production.j2",
    "mastodon": "etc/nginx/sites-available/mastodon.j2",
    "mastodon-web.service": "etc/systemd/system/mastodon-web.service.j2",
    "mastodon-sidekiq.service": "etc/systemd/system/mastodon-sidekiq.service.j2",
    "mastodon-streaming@.service": "etc/systemd/system/mastodon-streaming@.service.j2",
    "mastodon-streaming.service": "etc/systemd/system/mastodon-streaming.service.j2",
}
UNIT_VARIANTS = ["upstream", "away"]

# One local inventory host per variant, so that Ansible renders them side by side. Each loads the
# role's defaults, then its vars/main.yml, then the variant's inputs (later files win, as inventory
# values win over role defaults), and renders the templates with Ansible's own templating (the
# template lookup: the template module's engine, search path next to the template, ansible_managed,
# trim_blocks), without a module run per file, which would take most of the time budget.
RENDER_PLAY = [
    {
        "name": "Render the templates under test",
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
                "name": "Render every template",
                "ansible.builtin.copy": {
                    "content": "{{ dict(render_templates | map(attribute='name') | zip(query("
                    "'ansible.builtin.template', *(render_templates | map(attribute='src'))))) "
                    "| to_json }}",
                    "dest": "{{ render_dir }}/{{ inventory_hostname }}.json",
                    "mode": "0600",
                },
            },
        ],
    }
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/<variant>/<output name> for every variant, and <tmp>/nginx/ with the nginx role's
    snippets and nginx.conf that the vhost relies on; all from one ansible-playbook run."""
    tmp = tmp_path_factory.mktemp("mastodon-templates")
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "render_dir": str(tmp),
    }
    hosts: dict[str, dict[str, Any]] = {}
    for variant, inputs in VARIANTS.items():
        inputs_file = tmp / f"{variant}-inputs.yml"
        inputs_file.write_text(yaml.safe_dump(inputs, sort_keys=False))
        names = list(TEMPLATES) if variant in UNIT_VARIANTS else list(TEMPLATES)[:2]
        hosts[variant] = local | {
            "render_vars_files": [
                str(ROLE / "defaults/main.yml"),
                str(ROLE / "vars/main.yml"),
                str(inputs_file),
            ],
            "render_templates": [
                {"name": n, "src": str(ROLE / "templates" / TEMPLATES[n])} for n in names
            ],
        }
    nginx_templates = NGINX_ROLE / "templates/etc/nginx"
    hosts["nginx"] = local | {
        "render_vars_files": [
            str(NGINX_ROLE / f)
            for f in ("defaults/main.yml", "vars/main.yml", "vars/Debian-13.yml")
        ],
        "render_templates": [
            {"name": name, "src": str(nginx_templates / src)}
            for src, name in [
                ("nginx.conf.j2", "nginx.conf"),
                ("snippets/fedictl-headers.conf.j2", "fedictl-headers.conf"),
                ("snippets/fedictl-tls.conf.j2", "fedictl-tls-mastodon.conf"),
            ]
        ],
        # The site the TLS snippet is for, as certificates.yml loops over nginx_sites.
        "item": {"name": "mastodon", "domains": ["social.example.org"]},
    }
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    playbook = tmp / "render.yml"
    playbook.write_text(yaml.safe_dump(RENDER_PLAY, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    completed = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", str(inventory), str(playbook)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Written out as files too, to read when a test fails.
    for host in hosts:
        (tmp / host).mkdir()
        for name, text in json.loads((tmp / f"{host}.json").read_text()).items():
            (tmp / host / name).write_text(text)
    return tmp


# --- dotenv ---------------------------------------------------------------------------------------
_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?(?P<key>[\w.]+)\s*=\s*(?P<value>.*?)\s*")


def parse_dotenv(text: str) -> list[tuple[str, str]]:
    """What dotenv (Ruby's, which Rails uses, and Node's, which streaming uses) reads from the file,
    for the two forms the role writes. Single-quoted: taken literally. Unquoted: ends at '#', then
    stripped; Ruby expands '$' and unescapes '\\' there, so an unquoted value holding them is an
    error here rather than a silently different value. Double quotes are never written."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if not match:
            raise ValueError(f"line {number}: not KEY=value: {line!r}")
        key, raw = match["key"], match["value"]
        if raw.startswith("'"):
            quoted = re.fullmatch(r"'([^']*)'\s*(?:#.*)?", raw)
            if not quoted:
                raise ValueError(f"line {number}: bad single-quoted value: {line!r}")
            value = quoted[1]
        elif raw.startswith(('"', "`")):
            raise ValueError(f"line {number}: the role writes no double- or backtick-quoted value")
        else:
            value = raw.split("#", 1)[0].strip()
            if "$" in value or "\\" in value:
                raise ValueError(f"line {number}: dotenv would expand or unescape {value!r}")
        pairs.append((key, value))
    return pairs


def test_dotenv_parser_reads_like_dotenv() -> None:
    text = "# c\nA=plain\nB='a b #c $d \\e'\nC=x # comment\nD=\nE=ab=c=\n"
    assert parse_dotenv(text) == [
        ("A", "plain"), ("B", "a b #c $d \\e"), ("C", "x"), ("D", ""), ("E", "ab=c="),
    ]  # fmt: skip
    for bad in ("F=$HOME\n", "F=a\\b\n", 'F="x"\n', "F='open\n", "not a line\n"):
        with pytest.raises(ValueError):
            parse_dotenv(bad)


def env_of(rendered: Path, variant: str) -> dict[str, str]:
    pairs = parse_dotenv((rendered / variant / ".env.production").read_text())
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), (
        f"duplicate keys: {sorted(k for k in keys if keys.count(k) > 1)}"
    )
    return dict(pairs)


# §3.3: exactly the keys of upstream's .env.production.sample at v4.6.5 (the three AR keys and
# EXTRA_MEDIA_HOSTS are commented there; the AR keys are required since 4.3, §3.2).
SAMPLE_KEYS = [
    "LOCAL_DOMAIN", "REDIS_HOST", "REDIS_PORT", "DB_HOST", "DB_USER", "DB_NAME", "DB_PASS",
    "DB_PORT", "ES_ENABLED", "ES_HOST", "ES_PORT", "ES_USER", "ES_PASS", "SECRET_KEY_BASE",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY", "SMTP_SERVER",
    "SMTP_PORT", "SMTP_LOGIN", "SMTP_PASSWORD", "SMTP_FROM_ADDRESS", "S3_ENABLED", "S3_BUCKET",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ALIAS_HOST", "EXTRA_MEDIA_HOSTS",
    "IP_RETENTION_PERIOD", "SESSION_RETENTION_PERIOD",
]  # fmt: skip
# Sample keys that apply to every instance, whatever is switched on.
ALWAYS_KEYS = [
    "LOCAL_DOMAIN", "REDIS_HOST", "REDIS_PORT", "DB_HOST", "DB_USER", "DB_NAME", "DB_PASS",
    "DB_PORT", "ES_ENABLED", "SECRET_KEY_BASE", "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
    "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY", "S3_ENABLED", "IP_RETENTION_PERIOD",
    "SESSION_RETENTION_PERIOD",
]  # fmt: skip
# §3.3: the sample's own values, which the role's defaults must keep.
SAMPLE_VALUES = {
    "DB_HOST": "/var/run/postgresql",
    "DB_USER": "mastodon",
    "DB_NAME": "mastodon_production",
    "DB_PORT": "5432",
    "SMTP_PORT": "587",
    "IP_RETENTION_PERIOD": "31556952",
    "SESSION_RETENTION_PERIOD": "31556952",
}
# Every other key §3.3 documents that the role may write.
DOCUMENTED_KEYS = set(SAMPLE_KEYS) | {
    "WEB_DOMAIN", "ALTERNATE_DOMAINS", "AUTHORIZED_FETCH", "LIMITED_FEDERATION_MODE",
    "SINGLE_USER_MODE", "DEFAULT_LOCALE", "UPDATE_CHECK_URL", "REDIS_PASSWORD", "REDIS_DB",
    "SMTP_AUTH_METHOD", "SMTP_ENABLE_STARTTLS", "SMTP_TLS", "S3_ENDPOINT", "S3_REGION",
    "WEB_CONCURRENCY", "MAX_THREADS",
    # config/initializers/paperclip.rb: media URLs off AWS, and the uploads' ACL.
    "S3_HOSTNAME", "S3_PERMISSION",
}  # fmt: skip
# §3.1: read before the file is loaded. §3.3: REDIS_NAMESPACE aborts boot from 4.4, OTP_SECRET is
# gone since 4.4 (new installs), STREAMING_CLUSTER_NUM and MASTODON_USE_LIBVIPS were removed,
# WHITELIST_MODE is the deprecated name of LIMITED_FEDERATION_MODE.
NEVER_KEYS = [
    "RAILS_ENV", "NODE_ENV", "PORT", "BIND", "SOCKET", "REDIS_NAMESPACE", "OTP_SECRET",
    "STREAMING_CLUSTER_NUM", "MASTODON_USE_LIBVIPS", "WHITELIST_MODE",
    "ENABLE_SIDEKIQ_UNIQUE_JOBS_UI",
]  # fmt: skip
NEVER_PREFIXES = ("STATSD_", "FETCH_REPLIES_")

_SECRET_VALUES = {key: SECRETS[f"mastodon_{key.lower()}"] for key in SECRET_FORMATS}
_DEFAULT_DB_REDIS = {
    "DB_HOST": "/var/run/postgresql", "DB_PORT": "5432", "DB_NAME": "mastodon_production",
    "DB_USER": "mastodon", "DB_PASS": "Zq3vR8pL1mN7xK2wT5yB", "REDIS_HOST": "127.0.0.1",
    "REDIS_PORT": "6379", "REDIS_PASSWORD": "Hj6fD2sA9gK4lP0oI8uY", "REDIS_DB": "1",
}  # fmt: skip
_OFF = {"ES_ENABLED": "false", "S3_ENABLED": "false"}
_DEFAULT_TAIL = {
    "WEB_CONCURRENCY": "2", "MAX_THREADS": "5",
    "IP_RETENTION_PERIOD": "31556952", "SESSION_RETENTION_PERIOD": "31556952",
}  # fmt: skip
_OPTIONAL_IDENTITY = ["WEB_DOMAIN", "ALTERNATE_DOMAINS", "SINGLE_USER_MODE",
                      "LIMITED_FEDERATION_MODE", "DEFAULT_LOCALE", "UPDATE_CHECK_URL"]  # fmt: skip
_ES_DETAIL = ["ES_HOST", "ES_PORT", "ES_USER", "ES_PASS"]
_S3_DETAIL = ["S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT", "S3_REGION",
              "S3_ALIAS_HOST"]  # fmt: skip
_SMTP = ["SMTP_SERVER", "SMTP_PORT", "SMTP_LOGIN", "SMTP_PASSWORD", "SMTP_FROM_ADDRESS",
         "SMTP_AUTH_METHOD", "SMTP_ENABLE_STARTTLS", "SMTP_TLS"]  # fmt: skip

# variant -> (values the file must hold, keys it must not hold)
EXPECTED_ENV: dict[str, tuple[dict[str, str], list[str]]] = {
    "upstream": (
        {
            "LOCAL_DOMAIN": "social.example.org",
            **_SECRET_VALUES,
            **_DEFAULT_DB_REDIS,
            **_OFF,
            **_DEFAULT_TAIL,
        },
        ["AUTHORIZED_FETCH", *_OPTIONAL_IDENTITY, *_ES_DETAIL, *_S3_DETAIL, *_SMTP],
    ),
    "away": (
        {
            "LOCAL_DOMAIN": "example.org",
            "WEB_DOMAIN": "mastodon.example.org",
            "ALTERNATE_DOMAINS": "social.example.net,toot.example.net",  # §3.3: comma-separated
            "SINGLE_USER_MODE": "true",
            "AUTHORIZED_FETCH": "true",
            "LIMITED_FEDERATION_MODE": "false",
            "DEFAULT_LOCALE": "de",
            "UPDATE_CHECK_URL": "",  # §3.3: empty disables the check
            **_SECRET_VALUES,
            "DB_HOST": "db.internal.example.org",
            "DB_PORT": "6432",
            "DB_NAME": "mastodon_prod_a",
            "DB_USER": "mstdn_app",
            "DB_PASS": DB_PASSWORD,
            "REDIS_HOST": "10.20.0.7",
            "REDIS_PORT": "6380",
            "REDIS_PASSWORD": REDIS_PASSWORD,
            "REDIS_DB": "3",
            "ES_ENABLED": "true",
            "ES_HOST": "https://search.example.org",
            "ES_PORT": "9201",
            "ES_USER": "es_user",
            "ES_PASS": "es pass $1#",
            "SMTP_SERVER": "smtp.example.org",
            "SMTP_PORT": "2587",
            "SMTP_LOGIN": "notify@example.org",
            "SMTP_PASSWORD": "smtp pw $(x) #y",
            "SMTP_FROM_ADDRESS": "Mastodon <notifications@example.org>",
            "SMTP_ENABLE_STARTTLS": "always",
            "S3_ENABLED": "true",
            "S3_BUCKET": "mstdn-media",
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
            "S3_ENDPOINT": "https://s3.eu-central-1.example.com",
            "S3_REGION": "eu-central-1",
            "S3_ALIAS_HOST": "files.example.org",
            "S3_PERMISSION": "private",
            "WEB_CONCURRENCY": "3",
            "MAX_THREADS": "7",
            "IP_RETENTION_PERIOD": "2592000",
            "SESSION_RETENTION_PERIOD": "1209600",
            "EXTRA_MEDIA_HOSTS": "https://media.example.net https://cdn.example.net",
            "DEEPL_PLAN": "free",
        },
        ["SMTP_AUTH_METHOD", "SMTP_TLS"],
    ),
    "smtp_none": (
        {
            "LOCAL_DOMAIN": "social.example.org",
            # §3.3: present at all, even false, it locks the admin setting: written because set.
            "AUTHORIZED_FETCH": "false",
            "SMTP_SERVER": "smtp.example.org",
            "SMTP_PORT": "587",
            "SMTP_AUTH_METHOD": "none",
            "SMTP_FROM_ADDRESS": "notifications@social.example.org",
            "SMTP_ENABLE_STARTTLS": "never",
            **_SECRET_VALUES,
            **_DEFAULT_DB_REDIS,
            **_OFF,
            **_DEFAULT_TAIL,
        },
        ["SMTP_LOGIN", "SMTP_PASSWORD", "SMTP_TLS", *_OPTIONAL_IDENTITY],
    ),
    "smtp_tls": (
        {
            "LOCAL_DOMAIN": "social.example.org",
            "SMTP_SERVER": "mail.example.org",
            "SMTP_PORT": "465",
            "SMTP_LOGIN": "mastodon",
            "SMTP_PASSWORD": "Wq8eR4tY2uI6oP0aS3dF",
            "SMTP_FROM_ADDRESS": "notifications@social.example.org",
            "SMTP_TLS": "true",
            **_SECRET_VALUES,
            **_DEFAULT_DB_REDIS,
            **_OFF,
            **_DEFAULT_TAIL,
        },
        ["AUTHORIZED_FETCH", "SMTP_AUTH_METHOD", "SMTP_ENABLE_STARTTLS", *_OPTIONAL_IDENTITY],
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_holds_the_expected_values_and_nothing_it_should_not(
    rendered: Path, variant: str
) -> None:
    env = env_of(rendered, variant)
    expected, absent = EXPECTED_ENV[variant]
    assert {k: env.get(k) for k in expected} == expected
    assert [k for k in absent if k in env] == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_has_every_sample_key_that_applies(rendered: Path, variant: str) -> None:
    env = env_of(rendered, variant)
    assert [k for k in ALWAYS_KEYS if k not in env] == []


def test_env_with_everything_on_has_every_sample_key(rendered: Path) -> None:
    env = env_of(rendered, "away")
    assert [k for k in SAMPLE_KEYS if k not in env] == []


def test_env_defaults_are_the_samples_values(rendered: Path) -> None:
    env = env_of(rendered, "upstream") | {"SMTP_PORT": env_of(rendered, "smtp_none")["SMTP_PORT"]}
    assert {k: env.get(k) for k in SAMPLE_VALUES} == SAMPLE_VALUES


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_never_sets_what_upstream_reads_elsewhere_or_removed(
    rendered: Path, variant: str
) -> None:
    env = env_of(rendered, variant)
    assert [k for k in NEVER_KEYS if k in env] == []
    assert [k for k in env if k.startswith(NEVER_PREFIXES)] == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_writes_only_documented_keys(rendered: Path, variant: str) -> None:
    env = env_of(rendered, variant)
    extra = set(VARIANTS[variant].get("mastodon_extra_env", {}))
    assert sorted(set(env) - DOCUMENTED_KEYS - extra) == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_secrets_have_upstream_formats(rendered: Path, variant: str) -> None:
    env = env_of(rendered, variant)
    assert {k: bool(re.fullmatch(f, env.get(k, ""))) for k, f in SECRET_FORMATS.items()} == {
        k: True for k in SECRET_FORMATS
    }


# --- systemd units --------------------------------------------------------------------------------
class Unit(NamedTuple):
    sections: dict[str, list[tuple[str, str]]]

    def get(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]


def parse_unit(text: str) -> Unit:
    """INI-ish, as systemd reads unit files: [Section], Key=Value, repeated keys kept in order,
    '#'/';' comments. Environment= assignments are split and unquoted, one entry each."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        if current is None or "=" not in line:
            raise ValueError(f"line {number}: {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if key == "Environment":
            current.extend(("Environment", item) for item in shlex.split(value))
        else:
            current.append((key, value))
    return Unit(sections)


def unit_of(rendered: Path, variant: str, name: str) -> Unit:
    return parse_unit((rendered / variant / name).read_text())


# §4.1: upstream's sandboxing, shared by web, sidekiq and streaming@ (ReadWritePaths and
# SystemCallFilter apart).
SANDBOX = [
    ("ProcSubset", "pid"), ("ProtectProc", "invisible"),
    ("CapabilityBoundingSet", ""), ("NoNewPrivileges", "true"),
    ("ProtectSystem", "strict"), ("PrivateTmp", "true"), ("PrivateDevices", "true"),
    ("PrivateUsers", "true"), ("PrivateMounts", "true"),
    ("ProtectHostname", "true"), ("ProtectKernelLogs", "true"), ("ProtectKernelModules", "true"),
    ("ProtectKernelTunables", "true"), ("ProtectControlGroups", "true"), ("ProtectClock", "true"),
    ("RestrictNamespaces", "true"), ("LockPersonality", "true"), ("RestrictRealtime", "true"),
    ("RestrictSUIDSGID", "true"), ("RemoveIPC", "true"),
    ("RestrictAddressFamilies", "AF_INET"), ("RestrictAddressFamilies", "AF_INET6"),
    ("RestrictAddressFamilies", "AF_NETLINK"), ("RestrictAddressFamilies", "AF_UNIX"),
    ("SystemCallArchitectures", "native"),
]  # fmt: skip
# §4.1: SystemCallFilter lines in order (the first, a deny list, sets the filter's mode).
SYSCALLS = {
    "mastodon-web.service": [
        "~@cpu-emulation @debug @keyring @ipc @mount @obsolete @privileged @setuid",
        "@chown", "pipe", "pipe2",
    ],
    "mastodon-sidekiq.service": [
        "~@cpu-emulation @debug @keyring @ipc @mount @obsolete @privileged @setuid",
        "@chown", "pipe", "pipe2",
    ],
    "mastodon-streaming@.service": [
        "~@cpu-emulation @debug @keyring @ipc @memlock @mount @obsolete @privileged"
        " @resources @setuid",
        "pipe", "pipe2",
    ],
}  # fmt: skip
SANDBOXED = list(SYSCALLS)


class Layout(NamedTuple):
    """What upstream hard-codes and the role makes variables; the defaults are upstream's."""

    user: str = "mastodon"
    home: str = "/home/mastodon"
    web_port: int = 3000
    sidekiq_threads: int = 25
    bundle: str = "/home/mastodon/.rbenv/shims/bundle"
    streaming_ports: tuple[int, ...] = (4000,)
    web_concurrency: int = 2  # the role's defaults; upstream's config/puma.rb falls back to 2 and 5
    max_threads: int = 5

    @property
    def live(self) -> str:
        return f"{self.home}/live"


LAYOUTS = {
    "upstream": Layout(),
    "away": Layout("mstdn", "/srv/mstdn", 3100, 17, "/usr/bin/bundle", (4100, 4101), 3, 7),
    "smtp_none": Layout(),
    "smtp_tls": Layout(),
}


def upstream_service(unit: str, lay: Layout) -> list[tuple[str, str]]:
    """§4.1, the [Service] section of upstream's unit."""
    common = [("Type", "simple"), ("User", lay.user), ("WorkingDirectory", lay.live),
              ("TimeoutSec", "15"), ("Restart", "always")]  # fmt: skip
    specific = {
        "mastodon-web.service": [
            ("Environment", "RAILS_ENV=production"),
            ("Environment", f"PORT={lay.web_port}"),
            ("Environment", "LD_PRELOAD=libjemalloc.so"),
            ("ExecStart", f"{lay.bundle} exec puma -C config/puma.rb"),
            ("ExecReload", "/bin/kill -SIGUSR1 $MAINPID"),
        ],
        "mastodon-sidekiq.service": [
            ("Environment", "RAILS_ENV=production"),
            ("Environment", f"DB_POOL={lay.sidekiq_threads}"),
            ("Environment", "MALLOC_ARENA_MAX=2"),
            ("Environment", "LD_PRELOAD=libjemalloc.so"),
            ("ExecStart", f"{lay.bundle} exec sidekiq -c {lay.sidekiq_threads}"),
        ],
        "mastodon-streaming@.service": [
            ("Environment", "NODE_ENV=production"),
            ("Environment", "PORT=%i"),
            ("ExecStart", "/usr/bin/node ./streaming"),
            ("LimitNOFILE", "65536"),
        ],
    }[unit]
    syscalls = [("SystemCallFilter", line) for line in SYSCALLS[unit]]
    return common + specific + SANDBOX + syscalls + [("ReadWritePaths", lay.live)]


def fedictl_deviation(
    unit: str, lay: Layout
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """The documented differences, (added, removed): `live` is a symlink to the current release, so
    Puma's hot restart needs PWD and Bundler BUNDLE_GEMFILE pointing through it (web; sidekiq gets
    BUNDLE_GEMFILE too); ReadWritePaths are the releases and shared dirs instead of live (media and
    .env.production sit in shared/, §3.3 PAPERCLIP_ROOT_PATH note)."""
    added = [("ReadWritePaths", f"{lay.home}/releases"), ("ReadWritePaths", f"{lay.home}/shared")]
    if unit == "mastodon-web.service":
        added += [("Environment", f"PWD={lay.live}")]
        # Puma reads its sizing when it boots, before dotenv loads .env.production (upstream's
        # config/puma.rb; mastodon/mastodon#28440): on the unit, or it would not size Puma at all.
        added += [
            ("Environment", f"WEB_CONCURRENCY={lay.web_concurrency}"),
            ("Environment", f"MAX_THREADS={lay.max_threads}"),
        ]
    if unit in ("mastodon-web.service", "mastodon-sidekiq.service"):
        added += [("Environment", f"BUNDLE_GEMFILE={lay.live}/Gemfile")]
    return Counter(added), Counter([("ReadWritePaths", lay.live)])


@pytest.mark.parametrize("variant", UNIT_VARIANTS)
@pytest.mark.parametrize("name", SANDBOXED)
def test_unit_service_is_upstreams_but_for_the_documented_deviations(
    rendered: Path, variant: str, name: str
) -> None:
    lay = LAYOUTS[variant]
    rendered_service = Counter(unit_of(rendered, variant, name).sections["Service"])
    upstream = Counter(upstream_service(name, lay))
    added, removed = fedictl_deviation(name, lay)
    assert (rendered_service - upstream, upstream - rendered_service) == (added, removed)


@pytest.mark.parametrize("variant", UNIT_VARIANTS)
@pytest.mark.parametrize("name", SANDBOXED)
def test_unit_syscall_filter_lines_in_upstreams_order(
    rendered: Path, variant: str, name: str
) -> None:
    unit = unit_of(rendered, variant, name)
    assert unit.get("Service", "SystemCallFilter") == SYSCALLS[name]
    assert unit.get("Service", "RestrictAddressFamilies") == [
        "AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX",
    ]  # fmt: skip


@pytest.mark.parametrize("variant", UNIT_VARIANTS)
def test_unit_install_and_unit_sections(rendered: Path, variant: str) -> None:
    web, sidekiq, streaming = (unit_of(rendered, variant, name) for name in SANDBOXED)
    # §4.1: WantedBy=multi-user.target; streaming@ also by the wrapper.
    assert web.sections["Install"] == [("WantedBy", "multi-user.target")]
    assert sidekiq.sections["Install"] == [("WantedBy", "multi-user.target")]
    assert streaming.sections["Install"] == [
        ("WantedBy", "multi-user.target mastodon-streaming.service")
    ]
    # §4.1: streaming@'s [Unit] ties it to the wrapper.
    assert streaming.get("Unit", "Description") == ["mastodon-streaming on port %I"]
    assert streaming.get("Unit", "PartOf") == ["mastodon-streaming.service"]
    assert streaming.get("Unit", "ReloadPropagatedFrom") == ["mastodon-streaming.service"]
    for unit in (web, sidekiq):
        assert unit.get("Unit", "PartOf") == unit.get("Unit", "ReloadPropagatedFrom") == []


@pytest.mark.parametrize("variant", UNIT_VARIANTS)
def test_streaming_wrapper_starts_every_instance(rendered: Path, variant: str) -> None:
    wrapper = unit_of(rendered, variant, "mastodon-streaming.service")
    ports = LAYOUTS[variant].streaming_ports
    # §4.1: Wants=mastodon-streaming@4000.service; with more ports, one instance each.
    assert wrapper.get("Unit", "Wants") == [
        " ".join(f"mastodon-streaming@{port}.service" for port in ports)
    ]
    # §4.1: oneshot, RemainAfterExit=yes, ExecStart an /bin/echo note; nothing else runs.
    service = wrapper.sections["Service"]
    assert sorted(k for k, _ in service) == ["ExecStart", "RemainAfterExit", "Type"]
    assert wrapper.get("Service", "Type") == ["oneshot"]
    assert wrapper.get("Service", "RemainAfterExit") == ["yes"]
    assert wrapper.get("Service", "ExecStart")[0].startswith("/bin/echo ")
    assert wrapper.sections["Install"] == [("WantedBy", "multi-user.target")]


# --- nginx vhost ----------------------------------------------------------------------------------
class Token(NamedTuple):
    text: str
    quoted: bool


class Directive(NamedTuple):
    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.name, self.args


def _tokens(text: str) -> Iterator[Token]:
    """nginx's lexer, enough for these files: words, "..."/'...' strings with backslash escapes,
    '#' comments at the start of a token, and the punctuation { } ;."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "#":
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif char in "{};":
            yield Token(char, False)
            i += 1
        elif char in "\"'":
            out, i = [], i + 1
            while i < n and text[i] != char:
                out.append(text[i + 1] if text[i] == "\\" and i + 1 < n else text[i])
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise ValueError("unterminated string")
            yield Token("".join(out), True)
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "{};":
                i += 1
            yield Token(text[start:i], False)


def parse_nginx(text: str) -> tuple[Directive, ...]:
    tokens = _tokens(text)

    def block(top: bool) -> tuple[Directive, ...]:
        out: list[Directive] = []
        words: list[str] = []
        for token in tokens:
            if token.quoted:
                words.append(token.text)
            elif token.text == ";":
                if not words:
                    raise ValueError("empty directive")
                out.append(Directive(words[0], tuple(words[1:])))
                words = []
            elif token.text == "{":
                if not words:
                    raise ValueError("block without a name")
                out.append(Directive(words[0], tuple(words[1:]), block(top=False)))
                words = []
            elif token.text == "}":
                if top or words:
                    raise ValueError("unbalanced '}' or directive without ';'")
                return tuple(out)
            else:
                words.append(token.text)
        if not top or words:
            raise ValueError("unclosed block or directive without ';'")
        return tuple(out)

    return block(top=True)


def test_nginx_parser_reads_blocks_strings_and_comments() -> None:
    text = "a 1; # c { ;\nb { c \"x; }\" 'y'; d { e; } }\n"
    assert parse_nginx(text) == (
        Directive("a", ("1",)),
        Directive(
            "b", (), (Directive("c", ("x; }", "y")), Directive("d", (), (Directive("e", ()),)))
        ),
    )
    for bad in ("a {", "a; }", "a", "a 'x;"):
        with pytest.raises(ValueError):
            parse_nginx(bad)


def vhost_of(rendered: Path, variant: str) -> tuple[Directive, ...]:
    return parse_nginx((rendered / variant / "mastodon").read_text())


def _servers(vhost: tuple[Directive, ...]) -> list[Directive]:
    return [d for d in vhost if d.name == "server"]


def _inner(directive: Directive) -> tuple[Directive, ...]:
    assert directive.block is not None
    return directive.block


def _locations(server: Directive) -> dict[tuple[str, ...], Directive]:
    found = [d for d in _inner(server) if d.name == "location"]
    assert len({d.args for d in found}) == len(found), "a location appears twice"
    return {d.args: d for d in found}


def _walk(directives: tuple[Directive, ...]) -> Iterator[Directive]:
    for d in directives:
        yield d
        if d.block is not None:
            yield from _walk(d.block)


# §4.2, upstream's dist/nginx.conf at v4.6.5, as data.
PROXY_CACHE_PATH = ("/var/cache/nginx", "levels=1:2", "keys_zone=CACHE:10m", "inactive=7d",
                    "max_size=1g")  # fmt: skip
HSTS = Directive("add_header", ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
NOSNIFF = Directive("add_header", ("X-Content-Type-Options", "nosniff"))
STATIC_PREFIXES = ["assets", "avatars", "emoji", "headers", "ocr", "packs", "sounds"]
_PROXY_HEADERS = [
    Directive("proxy_set_header", ("Host", "$host")),
    Directive("proxy_set_header", ("X-Real-IP", "$remote_addr")),
    Directive("proxy_set_header", ("X-Forwarded-For", "$proxy_add_x_forwarded_for")),
    Directive("proxy_set_header", ("X-Forwarded-Proto", "$scheme")),
    Directive("proxy_set_header", ("Proxy", "")),
]
_HTTP11_UPGRADE = [
    Directive("proxy_redirect", ("off",)),
    Directive("proxy_http_version", ("1.1",)),
    Directive("proxy_set_header", ("Upgrade", "$http_upgrade")),
    Directive("proxy_set_header", ("Connection", "$connection_upgrade")),
]
UPSTREAM_LOCATIONS: dict[tuple[str, ...], list[Directive]] = {
    ("/",): [HSTS, Directive("try_files", ("$uri", "@mastodon"))],
    **{
        ("^~", f"/{prefix}/"): [
            Directive("add_header", ("Cache-Control", "public, max-age=2419200, must-revalidate")),
            HSTS,
        ]
        for prefix in STATIC_PREFIXES
    },
    ("^~", "/system/"): [
        Directive("add_header", ("Cache-Control", "public, max-age=2419200, immutable")),
        HSTS,
        NOSNIFF,
        Directive(
            "add_header", ("Content-Security-Policy", "default-src 'none'; form-action 'none'")
        ),
    ],
    # 4.6.0 removed HSTS from this one.
    ("^~", "/api/v1/streaming"): [
        *_PROXY_HEADERS,
        Directive("proxy_pass", ("http://streaming",)),
        Directive("proxy_buffering", ("off",)),
        *_HTTP11_UPGRADE,
        Directive("tcp_nodelay", ("on",)),
    ],
    ("@mastodon",): [
        *_PROXY_HEADERS,
        Directive("proxy_pass_header", ("Server",)),
        Directive("proxy_pass", ("http://backend",)),
        Directive("proxy_buffering", ("on",)),
        *_HTTP11_UPGRADE,
        Directive("proxy_cache", ("CACHE",)),
        Directive("proxy_cache_valid", ("200", "7d")),
        Directive("proxy_cache_valid", ("410", "24h")),
        Directive(
            "proxy_cache_use_stale",
            ("error", "timeout", "updating", "http_500", "http_502", "http_503", "http_504"),
        ),
        Directive("add_header", ("X-Cached", "$upstream_cache_status")),
        Directive("tcp_nodelay", ("on",)),
    ],
}


def upstream_server_settings(lay: Layout) -> list[Directive]:
    """§4.2, the 443 server's own directives but for listen/ssl_* and the locations."""
    return [
        Directive("keepalive_timeout", ("70",)),
        Directive("sendfile", ("on",)),
        Directive("client_max_body_size", ("99m",)),
        Directive("proxy_read_timeout", ("120",)),
        Directive("root", (f"{lay.live}/public",)),
        Directive("gzip", ("on",)),
        Directive("gzip_disable", ("msie6",)),
        Directive("gzip_vary", ("on",)),
        Directive("gzip_proxied", ("any",)),
        Directive("gzip_comp_level", ("6",)),
        Directive("gzip_buffers", ("16", "8k")),
        Directive("gzip_http_version", ("1.1",)),
        Directive(
            "gzip_types",
            (
                "text/plain",
                "text/css",
                "application/json",
                "application/javascript",
                "text/xml",
                "application/xml",
                # upstream commit 3c578dbd (#35562): the RSS type's real name; before it,
                # application/xml+rss, which no server sends, so RSS went out uncompressed.
                "application/rss+xml",
                "text/javascript",
                "image/svg+xml",
                "image/x-icon",
            ),
        ),
        Directive("gzip_static", ("on",)),
        Directive("error_page", ("404", "500", "501", "502", "503", "504", "/500.html")),
    ]


# Locations where upstream's own nosniff stays in the vhost: the uploads, whatever a user sets in
# nginx_security_headers (the snippet) must not be able to drop it there.
OWN_NOSNIFF = {("^~", "/system/")}


def with_fedictl_headers(
    directives: list[Directive], where: tuple[str, ...] = ()
) -> Counter[tuple[str, tuple[str, ...]]]:
    """fedictl deviation: HSTS and nosniff come from the nginx role's headers snippet, included
    wherever upstream adds them (nginx drops inherited add_header in a block with its own); nosniff
    stays where upstream's uploads location sets it."""
    moved = (HSTS,) if where in OWN_NOSNIFF else (HSTS, NOSNIFF)
    kept = [d for d in directives if d not in moved]
    if len(kept) != len(directives):
        kept.append(Directive("include", (HEADERS_SNIPPET,)))
    return Counter(d.key for d in kept)


SERVED = {  # variant -> server_name of the app's server (served domain + alternates)
    "upstream": ("social.example.org",),
    "away": ("mastodon.example.org", "social.example.net", "toot.example.net"),
    "smtp_none": ("social.example.org",),
    "smtp_tls": ("social.example.org",),
}


def _app_server(vhost: tuple[Directive, ...], variant: str) -> Directive:
    named = ("server_name", SERVED[variant])
    matching = [s for s in _servers(vhost) if named in [d.key for d in _inner(s)]]
    assert len(matching) == 1, f"no single server named {SERVED[variant]}"
    return matching[0]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vhost_upstreams_and_cache(rendered: Path, variant: str) -> None:
    lay = LAYOUTS[variant]
    vhost = vhost_of(rendered, variant)
    upstreams = {d.args: d for d in vhost if d.name == "upstream"}
    assert sorted(d.args for d in vhost if d.name == "upstream") == [("backend",), ("streaming",)]
    assert [d.key for d in _inner(upstreams[("backend",)])] == [
        ("server", (f"127.0.0.1:{lay.web_port}", "fail_timeout=0"))
    ]
    assert [d.key for d in _inner(upstreams[("streaming",)])] == [
        ("least_conn", ()),
        *(("server", (f"127.0.0.1:{port}", "fail_timeout=0")) for port in lay.streaming_ports),
    ]
    assert [d.args for d in vhost if d.name == "proxy_cache_path"] == [PROXY_CACHE_PATH]
    # The map is in the nginx role's nginx.conf (see the last test); port 80 in its conf.d.
    others = [d.name for d in vhost if d.name not in ("upstream", "proxy_cache_path", "server")]
    assert others == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vhost_server_settings_are_upstreams(rendered: Path, variant: str) -> None:
    server = _app_server(vhost_of(rendered, variant), variant)
    own = Counter(d.key for d in _inner(server) if d.name != "location")
    expected = Counter(d.key for d in upstream_server_settings(LAYOUTS[variant]))
    # fedictl deviation: listen 443 and the ssl_* lines come from the nginx role's TLS snippet.
    expected.update([("server_name", SERVED[variant]), ("include", (TLS_SNIPPET,))])
    assert own == expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vhost_locations_are_upstreams(rendered: Path, variant: str) -> None:
    locations = _locations(_app_server(vhost_of(rendered, variant), variant))
    assert sorted(locations) == sorted(UPSTREAM_LOCATIONS)
    for where, upstream in UPSTREAM_LOCATIONS.items():
        body = _inner(locations[where])
        assert all(d.block is None for d in body), f"nested block in location {where}"
        assert Counter(d.key for d in body) == with_fedictl_headers(upstream, where), where


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vhost_has_nothing_upstream_removed(rendered: Path, variant: str) -> None:
    vhost = vhost_of(rendered, variant)
    everything = list(_walk(vhost))
    locations = [d.args for d in everything if d.name == "location"]
    # §4.2, 4.6.0: no `= /sw.js`, no /shortcuts/, no regex locations, no `try_files $uri =404`.
    assert ("=", "/sw.js") not in locations
    assert [a for a in locations if "/shortcuts/" in a[-1]] == []
    assert [a for a in locations if a[0] in ("~", "~*")] == []
    assert [d for d in everything if d.name == "try_files" and "=404" in d.args] == []
    # §4.2: the streaming location has no HSTS of its own any more.
    stream = _locations(_app_server(vhost, variant))[("^~", "/api/v1/streaming")]
    assert [d for d in _inner(stream) if d.name in ("add_header", "include")] == []
    # §4.2: never a directory listing (of /system/ above all).
    assert [d for d in everything if d.name == "autoindex"] == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vhost_every_server_includes_the_tls_snippet(rendered: Path, variant: str) -> None:
    servers = _servers(vhost_of(rendered, variant))
    assert servers
    for server in servers:
        assert ("include", (TLS_SNIPPET,)) in [d.key for d in _inner(server)]
        assert [d for d in _inner(server) if d.name == "listen" or d.name.startswith("ssl_")] == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vhost_web_domain_redirects_webfinger_from_the_local_domain(
    rendered: Path, variant: str
) -> None:
    inputs = VARIANTS[variant]
    servers = _servers(vhost_of(rendered, variant))
    web = inputs.get("mastodon_web_domain", "")
    if not web:
        assert len(servers) == 1
        return
    assert len(servers) == 2
    local = [
        s
        for s in servers
        if ("server_name", (inputs["mastodon_local_domain"],)) in [d.key for d in _inner(s)]
    ]
    assert len(local) == 1
    # §3.3 WEB_DOMAIN: the LOCAL_DOMAIN host answers /.well-known/webfinger with a 301 to WEB_DOMAIN
    # and Access-Control-Allow-Origin: *.
    webfinger = _inner(_locations(local[0])[("/.well-known/webfinger",)])
    keys = [d.key for d in webfinger]
    assert ("return", ("301", f"https://{web}$request_uri")) in keys
    assert ("add_header", ("Access-Control-Allow-Origin", "*")) in keys


def test_nginx_role_supplies_what_upstreams_vhost_carried_itself(rendered: Path) -> None:
    """The documented deviation holds: what the vhost leaves out, the nginx role's files provide."""
    out = rendered / "nginx"
    tls = [d.key for d in parse_nginx((out / "fedictl-tls-mastodon.conf").read_text())]
    assert ("listen", ("443", "ssl")) in tls  # upstream: listen 443 ssl http2
    assert ("include", (HEADERS_SNIPPET,)) in tls
    assert any(name == "ssl_certificate" for name, _ in tls)
    headers = parse_nginx((out / "fedictl-headers.conf").read_text())
    by_header = {d.args[0]: d.args[1:] for d in headers if d.name == "add_header"}
    # Upstream's HSTS max-age; includeSubDomains is the nginx role's nginx_hsts_include_subdomains.
    assert by_header["Strict-Transport-Security"][0].startswith("max-age=63072000")
    assert by_header["X-Content-Type-Options"] == ("nosniff", "always")
    http = [d for d in parse_nginx((out / "nginx.conf").read_text()) if d.name == "http"]
    maps = [d for d in _inner(http[0]) if d.name == "map"]
    # §4.2: map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    assert [(d.args, [x.key for x in _inner(d)]) for d in maps] == [
        (("$http_upgrade", "$connection_upgrade"),
         [("default", ("upgrade",)), ("", ("close",))]),
    ]  # fmt: skip
