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


#: JupyterLab settings every hub user starts with (``overrides.json`` of the environment's lab settings):
#: no prompt to fetch Jupyter's news, a request to an outside server a data center's users do not need
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}}


def install_lab_overrides(prefix: Path | None = None) -> Path:
    """Merge :data:`LAB_OVERRIDES` into ``<prefix>/share/jupyter/lab/settings/overrides.json``.

    Returns the file. Settings already there for other plugins are kept.
    """
    path = Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.is_file() else {}
    for plugin, values in LAB_OVERRIDES.items():
        current[plugin] = {**current.get(plugin, {}), **values}
    path.write_text(json.dumps(current, indent=1) + "\n")
    return path
