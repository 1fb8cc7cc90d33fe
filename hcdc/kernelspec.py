"""Installing the HC-DC kernel spec (kernels/hcdc) into an environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "kernels" / "hcdc" / "kernel.json"
PRESET_ENVIRONMENT = ("HCDC_DATA_DIR", "HCDC_CATALOG_URL", "HCDC_CONFIG", "HCDC_REFERENCE_DATA")


def install_kernel(prefix: Path | None = None, name: str = "hcdc") -> Path:
    """Write the kernel spec with this interpreter and the HC-DC environment preset.

    Returns the kernel folder.
    """
    if not TEMPLATE.is_file():
        raise FileNotFoundError(f"kernel template {TEMPLATE} is missing (is HC-DC installed from its repository?)")
    spec = json.loads(TEMPLATE.read_text())
    spec["argv"][0] = sys.executable
    preset = {key: os.environ[key] for key in PRESET_ENVIRONMENT if os.environ.get(key)}
    if preset:
        spec["env"] = {**spec.get("env", {}), **preset}
    folder = Path(prefix or sys.prefix) / "share" / "jupyter" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder
