import os

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def isolated_weights(tmp_path, monkeypatch):
    """No test sees the user's weights dir or HF cache, and nothing may download."""
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)
    return tmp_path / "weights"
