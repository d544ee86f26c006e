"""Secret formats (as upstream generates them) and `fedictl secrets ensure|show|list`."""

from __future__ import annotations

import base64
import re

import pytest
from _inventory_helpers import (
    Project,
    demo_fixture,  # noqa: F401 - fixture
    project_fixture,  # noqa: F401 - fixture
)
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fedictl import inventory, secrets
from fedictl.apps import mastodon, pixelfed

ALL_APPS = {"mastodon", "peertube", "pixelfed"}


def test_mastodon_secret_key_base_is_128_lowercase_hex() -> None:
    value = secrets.SPECS_BY_KEY["vault_mastodon_secret_key_base"].generate()
    assert re.fullmatch(r"[0-9a-f]{128}", value)


@pytest.mark.parametrize("name", ["deterministic_key", "key_derivation_salt", "primary_key"])
def test_active_record_keys_are_32_alphanumerics(name: str) -> None:
    spec = secrets.SPECS_BY_KEY[f"vault_mastodon_active_record_encryption_{name}"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", spec.generate())


def test_vapid_pair_is_padded_urlsafe_base64_of_a_p256_key() -> None:
    private, public = mastodon.vapid_keypair()
    assert len(private) == 44 and private.endswith("=")
    assert len(public) == 88 and public.endswith("=")
    assert re.fullmatch(r"[A-Za-z0-9_=-]+", private + public)
    scalar = int.from_bytes(base64.urlsafe_b64decode(private), "big")
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    point = base64.urlsafe_b64decode(public)
    assert point == key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    loaded = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    assert isinstance(loaded.curve, ec.SECP256R1)


def test_vapid_checks_accept_unpadded_and_reject_other_curves() -> None:
    private, public = mastodon.vapid_keypair()
    check_private = secrets.SPECS_BY_KEY["vault_mastodon_vapid_private_key"].check
    assert check_private(private.rstrip("=")) is None
    other = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    bad = base64.urlsafe_b64encode(other).decode()
    assert secrets.SPECS_BY_KEY["vault_mastodon_vapid_public_key"].check(bad) is not None
    _, stranger = mastodon.vapid_keypair()
    assert mastodon.vapid_pair_problem(private, stranger) is not None
    assert mastodon.vapid_pair_problem(private, public) is None


def test_peertube_secret_and_root_password() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", secrets.SPECS_BY_KEY["vault_peertube_secret"].generate())
    root = secrets.SPECS_BY_KEY["vault_peertube_root_password"]
    assert 8 <= len(root.generate()) <= 50
    assert root.check("short") is not None
    assert root.check("x" * 51) is not None


def test_pixelfed_app_key_is_base64_of_32_bytes() -> None:
    value = pixelfed.pixelfed_app_key()
    assert value.startswith("base64:")
    assert len(base64.b64decode(value.removeprefix("base64:"), validate=True)) == 32
    check = secrets.SPECS_BY_KEY["vault_pixelfed_app_key"].check
    assert check(value) is None
    assert check(value.removeprefix("base64:")) is not None
    assert check("base64:" + base64.b64encode(b"x" * 16).decode()) is not None


def test_format_problems_never_contain_the_value() -> None:
    for spec in secrets.SPECS:
        bad = "Wrong value " * 6  # spaces, and longer than 50 characters
        problem = spec.check(bad)
        assert problem is not None, spec.key
        assert bad not in problem


def test_ensure_generates_only_what_the_enabled_apps_need() -> None:
    added = secrets.ensure({}, {"peertube"})
    assert {k for k in added if k.startswith("vault_mastodon")} == set()
    assert {"vault_peertube_secret", "vault_redis_password", "vault_restic_password"} <= set(added)
    for key, value in added.items():
        assert secrets.SPECS_BY_KEY[key].check(value) is None


def test_ensure_never_returns_an_existing_value() -> None:
    existing = {s.key: f"kept-{s.key}" for s in secrets.SPECS}  # even if malformed
    assert secrets.ensure(existing, ALL_APPS) == {}
    existing["vault_pixelfed_app_key"] = ""
    assert list(secrets.ensure(existing, ALL_APPS)) == ["vault_pixelfed_app_key"]


def test_half_a_vapid_pair_is_not_regenerated() -> None:
    existing = {"vault_mastodon_vapid_private_key": mastodon.vapid_keypair()[0]}
    added = secrets.ensure(existing, {"mastodon"})
    assert "vault_mastodon_vapid_public_key" not in added
    assert "vault_mastodon_vapid_private_key" not in added


# --- CLI ------------------------------------------------------------------------------------------


def test_ensure_adds_secrets_for_a_newly_enabled_app_and_keeps_the_rest(project: Project) -> None:
    from _inventory_helpers import example_answers

    answers = example_answers()
    del answers["apps"]["pixelfed"]
    assert project.init(answers).exit_code == 0
    before = project.vault_data()
    assert "vault_pixelfed_app_key" not in before
    main = project.main_vars()
    main["fedictl_apps"]["pixelfed"].update(enabled=True, domain="photos.example.test")
    project.write_main_vars(main)
    hosts = project.inventory() / inventory.HOSTS
    placed = "pixelfed:\n          hosts:\n            lab1: {}"
    hosts.write_text(hosts.read_text().replace("pixelfed: {}", placed))
    result = project.invoke("secrets", "ensure", "-i", str(project.inventory()))
    assert result.exit_code == 0, result.output
    after = project.vault_data()
    assert {k: after[k] for k in before} == before
    added = set(after) - set(before)
    assert added == {
        "vault_pixelfed_app_key",
        "vault_pixelfed_db_password",
        "vault_pixelfed_admin_password",
    }
    assert result.stdout.split() == [
        w for k in sorted(added, key=list(after).index) for w in ("added", k)
    ]
    for key in added:
        assert after[key] not in result.output
    assert project.invoke("validate", "-i", str(project.inventory())).exit_code == 0


def test_ensure_after_an_upgrade_fills_an_emptied_secret_only(demo: Project) -> None:
    data = demo.vault_data()
    data["vault_restic_password"] = ""
    data["vault_peertube_secret"] = "malformed-but-kept"
    demo.write_vault_data(data)
    result = demo.invoke("secrets", "ensure", "-i", str(demo.inventory()))
    assert result.exit_code == 0
    after = demo.vault_data()
    assert after["vault_restic_password"] != ""
    assert after["vault_peertube_secret"] == "malformed-but-kept"
    assert {k: v for k, v in after.items() if k != "vault_restic_password"} == {
        k: v for k, v in data.items() if k != "vault_restic_password"
    }


def test_ensure_with_nothing_missing_leaves_the_file_untouched(demo: Project) -> None:
    path = demo.inventory() / inventory.VAULT
    before = path.read_bytes()
    result = demo.invoke("secrets", "ensure", "-i", str(demo.inventory()))
    assert result.exit_code == 0
    assert "nothing changed" in result.stderr
    assert path.read_bytes() == before


def test_show_prints_one_secret_with_or_without_prefix(demo: Project) -> None:
    value = demo.vault_data()["vault_mastodon_admin_password"]
    for key in ("mastodon_admin_password", "vault_mastodon_admin_password"):
        result = demo.invoke("secrets", "show", "-i", str(demo.inventory()), key)
        assert result.exit_code == 0
        assert result.stdout == value + "\n"


def test_show_unknown_key_lists_names_not_values(demo: Project) -> None:
    result = demo.invoke("secrets", "show", "-i", str(demo.inventory()), "nope")
    assert result.exit_code == 2
    assert "vault_nope" in result.stderr and "vault_redis_password" in result.stderr
    for value in demo.vault_data().values():
        if value:
            assert value not in result.output


def test_list_shows_names_and_state_only(demo: Project) -> None:
    result = demo.invoke("secrets", "list", "-i", str(demo.inventory()))
    assert result.exit_code == 0
    assert "vault_smtp_password\tmissing" in result.stdout
    assert "vault_redis_password\tset" in result.stdout
    for value in demo.vault_data().values():
        if value:
            assert value not in result.output


def test_wrong_vault_password_is_a_clear_error(demo: Project, tmp_path: object) -> None:
    wrong = demo.root / "wrong.pass"
    wrong.write_text("wrong\n")
    for args in (["ensure"], ["show", "redis_password"], ["list"]):
        result = demo.invoke(
            "secrets",
            args[0],
            "-i",
            str(demo.inventory()),
            "--vault-password-file",
            str(wrong),
            *args[1:],
        )
        assert result.exit_code == 1
        assert "vault.yml" in result.stderr and "--vault-password-file" in result.stderr


def test_missing_password_file_is_a_usage_error(demo: Project) -> None:
    demo.password_file().unlink()
    result = demo.invoke("secrets", "list", "-i", str(demo.inventory()))
    assert result.exit_code == 2
    assert "--vault-password-file" in result.stderr


def test_unknown_inventory(project: Project) -> None:
    result = project.invoke("secrets", "list", "-i", "nowhere")
    assert result.exit_code == 2
    assert "inventory 'nowhere' not found" in result.stderr
