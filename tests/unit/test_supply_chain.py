"""Secrets never reach the repository: detect-secrets over every tracked file, in the test suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _findings(files: list[Path]) -> list[str]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    found = SecretsCollection()
    with default_settings():
        for file in files:
            found.scan_file(str(file))
    return [f"{name}:{secret.line_number} {secret.type}" for name, secrets in found.data.items() for secret in secrets]


def test_no_tracked_file_holds_a_secret():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = [ROOT / name for name in listed.stdout.decode().split("\0") if name and (ROOT / name).is_file()]
    assert len(files) > 50
    assert _findings(files) == []


def test_the_scan_finds_a_planted_secret(tmp_path):
    planted = tmp_path / "settings.py"
    planted.write_text('aws_access_key_id = "AKIAZ7VRSQ5TEXAMPLE1"\n'  # pragma: allowlist secret
                       'password = "hunter2-but-longer-9f8e7d6c"\n')  # pragma: allowlist secret
    found = _findings([planted])
    assert any("AWS Access Key" in f for f in found) and any("Secret Keyword" in f for f in found), found
