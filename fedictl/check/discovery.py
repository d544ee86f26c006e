"""Which instances ``fedictl check`` looks at: the enabled apps of an inventory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedictl import apps
from fedictl.apps import App
from fedictl.check.model import Instance
from fedictl.errors import UsageError, shown
from fedictl.inventory import Inventory


def _app_vars(inv: Inventory, app: str) -> dict[str, Any]:
    """The variables the app's hosts see (host_vars may override group_vars/all)."""
    hosts = inv.groups.get(app) or []
    return inv.hostvars.get(hosts[0], {}) if hosts else inv.all_vars


def _instance(inv: Inventory, app: App, settings: dict[str, Any], account: str) -> Instance:
    """``app``'s instance: served on its web domain if it has one, else on its handle domain."""
    account_domain = str(settings.get(app.domain) or "")
    web_domain = str(settings.get(app.web_domain) or "") if app.web_domain else ""
    return Instance(
        app=app.name,
        domain=(web_domain or account_domain).lower(),
        account_domain=account_domain.lower(),
        version=str(settings.get("version") or ""),
        hosts=tuple(inv.groups.get(app.name) or ()),
        account=account,
        settings=dict(settings),
    )


def _account(app: App, settings: dict[str, Any], accounts: dict[str, str] | None) -> str:
    """The account WebFinger looks up: --account, else the app's setting, else its default."""
    if accounts and app.name in accounts:
        return accounts[app.name]
    if app.account_setting:
        return str(settings.get(app.account_setting) or app.account)
    return app.account


def instances(
    inv: Inventory,
    only_apps: Sequence[str] = (),
    names: Sequence[str] = (),
    accounts: dict[str, str] | None = None,
) -> list[Instance]:
    """The enabled apps of a valid inventory as instances, filtered by --app and --instance."""
    found: list[Instance] = []
    for app in apps.registered():
        variables = _app_vars(inv, app.name)
        settings = (variables.get("fedictl_apps") or {}).get(app.name)
        if not isinstance(settings, dict) or settings.get("enabled") is not True:
            continue
        found.append(_instance(inv, app, settings, _account(app, settings, accounts)))
    enabled = [i.app for i in found]
    for app_name in only_apps:
        if app_name not in enabled:
            raise UsageError(
                f"--app {app_name}: {app_name} is not enabled in {inv.path}; enabled: "
                f"{', '.join(enabled) or 'none'}; fix: name an enabled app"
            )
    known = {d for i in found for d in i.domains}
    for name in names:
        if name.lower() not in known:
            raise UsageError(
                f"--instance {shown(name)}: no enabled instance has this domain; known: "
                f"{', '.join(sorted(known)) or 'none'}; fix: name one of those domains"
            )
    chosen = [
        i
        for i in found
        if (not only_apps or i.app in only_apps)
        and (not names or set(i.domains) & {n.lower() for n in names})
    ]
    if not chosen:
        raise UsageError(
            f"{inv.path}: no app is enabled, nothing to check; fix: enable an app in fedictl_apps"
        )
    return chosen
