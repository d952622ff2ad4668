"""Every environment variable the code reads is listed in .env.example and README."""

from __future__ import annotations

import re

import pytest

from .harness import BASE_DIR

SETTINGS = BASE_DIR / "whatsapp_saas" / "settings.py"
GATEWAY_CONFIG = BASE_DIR / "gateway_node" / "src" / "config.js"
RUNNER = BASE_DIR / "scripts" / "run_all.py"

# env.str("NAME", ...), env.int(\n    "NAME", ...) and the like.
SETTINGS_READ_RE = re.compile(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"")
# The gateway declares each variable once, as `NAME: [parser, 'default'],`.
GATEWAY_DECLARATION_RE = re.compile(r"^\s+([A-Z][A-Z0-9_]*): \[", re.MULTILINE)
RUNNER_READ_RE = re.compile(r"env\.get\(\s*\"([A-Z][A-Z0-9_]*)\"")


def settings_variables() -> set[str]:
    return set(SETTINGS_READ_RE.findall(SETTINGS.read_text()))


def gateway_variables() -> set[str]:
    if not GATEWAY_CONFIG.exists():
        pytest.skip(f"{GATEWAY_CONFIG} does not exist")
    return set(GATEWAY_DECLARATION_RE.findall(GATEWAY_CONFIG.read_text()))


def runner_variables() -> set[str]:
    return set(RUNNER_READ_RE.findall(RUNNER.read_text()))


def documented_in_env_example() -> set[str]:
    text = (BASE_DIR / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def documented_in_readme() -> set[str]:
    text = (BASE_DIR / "README.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", text, re.MULTILINE))


def test_parsers_find_known_variables():
    assert {"DATABASE_URL", "REDIS_URL", "WA_GATEWAY_SECRET"} <= settings_variables()
    assert {"WA_ENGINE", "WA_CALLBACK_URL", "WA_DATA_DIR"} <= gateway_variables()
    assert {"PORT", "GATEWAY_PORT", "REDIS_URL"} <= runner_variables()


@pytest.mark.parametrize(
    "source", [settings_variables, gateway_variables, runner_variables]
)
def test_env_example_lists_every_variable(source):
    missing = source() - documented_in_env_example()

    assert not missing, f"Add these variables to .env.example: {sorted(missing)}"


@pytest.mark.parametrize(
    "source", [settings_variables, gateway_variables, runner_variables]
)
def test_readme_table_lists_every_variable(source):
    missing = source() - documented_in_readme()

    assert not missing, f"Add these variables to README.md: {sorted(missing)}"
