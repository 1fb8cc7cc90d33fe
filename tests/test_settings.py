"""Configuration: defaults, YAML file, environment overrides, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hcdc.settings import Settings


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("HCDC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HCDC_CATALOG_URL", raising=False)
    monkeypatch.delenv("HCDC_CONFIG", raising=False)
    settings = Settings()
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.resolved_catalog_url == f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite'}"
    monkeypatch.setenv("HCDC_CATALOG_URL", "postgresql+psycopg://u@127.0.0.1:5432/x")
    assert Settings().resolved_catalog_url == "postgresql+psycopg://u@127.0.0.1:5432/x"


def test_yaml_file_and_precedence(monkeypatch, tmp_path):
    config = tmp_path / "hcdc.yaml"
    config.write_text("proprietary_months: 18\ningest_workers: 2\n")
    monkeypatch.setenv("HCDC_CONFIG", str(config))
    monkeypatch.delenv("HCDC_INGEST_WORKERS", raising=False)
    assert Settings().proprietary_months == 18
    monkeypatch.setenv("HCDC_PROPRIETARY_MONTHS", "24")
    assert Settings().proprietary_months == 24  # environment beats the file


def test_invalid_values_are_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("HCDC_CONFIG", raising=False)
    monkeypatch.setenv("HCDC_PROPRIETARY_MONTHS", "-3")
    with pytest.raises(ValidationError, match="proprietary_months"):
        Settings()
    monkeypatch.delenv("HCDC_PROPRIETARY_MONTHS")
    monkeypatch.setenv("HCDC_CATALOG_URL", "not a url")
    with pytest.raises(ValidationError, match="not a SQLAlchemy URL"):
        Settings()
    monkeypatch.delenv("HCDC_CATALOG_URL")
    config = tmp_path / "typo.yaml"
    config.write_text("proprietary_monthz: 3\n")
    monkeypatch.setenv("HCDC_CONFIG", str(config))
    with pytest.raises(ValidationError, match="proprietary_monthz"):
        Settings()


def test_every_setting_has_help():
    for name, info in Settings.model_fields.items():
        assert info.description and len(info.description) > 15, name
