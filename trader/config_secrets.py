"""Secrets: Alpaca's keys and the ops API token, from the environment only (never from ``trader.yaml``).

Each is kept as a ``SecretStr`` (``**********`` in any repr or log line), and a placeholder such as
``changeme`` is refused with one line naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import SecretStr

from trader.config_base import Mode, _Model
from trader.errors import TraderConfigError

_PLACEHOLDERS = {"changeme", "change-me", "changethis", "secret", "xxx", "your-key", "your_key", "todo", "placeholder"}


def _secret(env: Mapping[str, str], name: str) -> SecretStr | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if value.lower() in _PLACEHOLDERS or value.startswith("<"):
        raise TraderConfigError("environment", name, "looks like a placeholder, not a real secret")
    return SecretStr(value)


class Secrets(_Model):
    """Secrets from the environment only; never in ``trader.yaml``, never in a repr or log line."""

    alpaca_api_key: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None
    api_token: SecretStr | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Secrets:
        """Read ``ALPACA_API_KEY``, ``ALPACA_SECRET_KEY`` and ``TRADER_API_TOKEN`` (placeholders refused)."""
        env = os.environ if env is None else env
        return cls(alpaca_api_key=_secret(env, "ALPACA_API_KEY"), alpaca_secret_key=_secret(env, "ALPACA_SECRET_KEY"),
                   api_token=_secret(env, "TRADER_API_TOKEN"))

    def require_alpaca(self, mode: Mode) -> tuple[SecretStr, SecretStr]:
        """Both Alpaca keys, or a :class:`TraderConfigError` naming the missing one for ``mode``."""
        for name, value in (("ALPACA_API_KEY", self.alpaca_api_key), ("ALPACA_SECRET_KEY", self.alpaca_secret_key)):
            if value is None:
                raise TraderConfigError("environment", name, f"not set; --mode {mode.value} needs Alpaca keys")
        assert self.alpaca_api_key is not None and self.alpaca_secret_key is not None
        return self.alpaca_api_key, self.alpaca_secret_key
