"""config.py: the `telecom` role for web accounts and API tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter112.admin import config_document
from callcenter112.config import ROLES, ConfigError, parse_config
from test_telecom_web import config_with_telecom


def test_telecom_is_a_role_for_accounts_and_tokens(tmp_path: Path) -> None:
    document = config_document(config_with_telecom(tmp_path))
    assert [u["role"] for u in document["user"]][-1] == "telecom"
    document["api_token"] = [{"name": "noc", "role": "telecom", "token_hash": "sha256$" + "0" * 64}]
    assert parse_config(document).api_token[0].role == "telecom"
    document["user"][-1]["role"] = "carrier"
    with pytest.raises(ConfigError) as err:
        parse_config(document)
    assert "user[3].role" in str(err.value)


def test_roles_list_telecom() -> None:
    assert "telecom" in ROLES
