"""JupyterHub configuration of HC-DC: the validated YAML, translated into traits.

Run by ``hcdc hub start`` (or ``jupyterhub -f hub_config/jupyterhub_config.py``).
Reads ``$HCDC_HUB_CONFIG`` (default: hcdc_hub.yaml beside this file) with the
profile ``$HCDC_HUB_PROFILE`` (default: the file's), validates it against the
schema (hcdc_hub.schema.json), sets the traits (``hcdc hub config`` prints
them), then runs the files of ``hub.config_d`` (default: jupyterhub_config.d/).
"""

import os
import sys
from pathlib import Path

from hcdc.hub import HubConfigError, apply_to, load_hub_config

c = get_config()  # noqa: F821 - provided by JupyterHub

_path = os.environ.get("HCDC_HUB_CONFIG") or str(Path(__file__).resolve().parent / "hcdc_hub.yaml")
try:
    hcdc_config = load_hub_config(_path, os.environ.get("HCDC_HUB_PROFILE") or None)
except HubConfigError as _error:
    # a clear message and no traceback: the hub does not start on an invalid configuration
    sys.exit(f"HC-DC hub: {_error}")
apply_to(c, hcdc_config)
