"""``hcdc config show``: every setting says where its value came from, and no password is shown."""

from __future__ import annotations

import os
import subprocess
import sys


def _show(env: dict) -> dict[str, tuple[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "hcdc.cli", "config", "show"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        if line and not line.startswith(" "):
            name, rest = line.split(None, 1)
            value, source = rest.rsplit("   [", 1)
            rows[name] = (value.strip(), source.rstrip("]"))
    return rows


def test_each_value_names_its_source_and_hides_passwords(tmp_path):
    config = tmp_path / "hcdc.yaml"
    config.write_text(
        "local_workers: 3\n"
        "pipeline_retries: 2\n"
        "catalog_url: postgresql+psycopg://hcdc:s3cretpw@db.example.org:5432/hcdc\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCDC_")}
    env.update(HCDC_CONFIG=str(config), HCDC_PIPELINE_RETRIES="4", HCDC_DATA_DIR=str(tmp_path / "data"))
    rows = _show(env)
    assert rows["local_workers"] == ("3", f"file ({config})")
    assert rows["pipeline_retries"] == ("4", "environment (HCDC_PIPELINE_RETRIES)")  # the environment wins
    assert rows["data_dir"] == (str(tmp_path / "data"), "environment (HCDC_DATA_DIR)")
    assert rows["ingest_batch_size"][1] == "default"
    assert "s3cretpw" not in str(rows) and "***" in rows["catalog_url"][0]
    assert rows["resolved_catalog_url"][0] == rows["catalog_url"][0]
