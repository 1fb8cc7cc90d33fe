# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: HC-DC (Python 3.11)
#     language: python
#     name: hcdc
# ---

# %% [markdown]
# # Post-processing of one spectral (IFS) observation
# ASDI, S/N map of the collapsed residual, candidates vetted across the channels, their spectra, and the
# 5-sigma contrast of every channel and of the collapsed image (`reduction.postproc.spectral`), recorded
# as detections, spectra and detection limits.

# %% tags=["parameters"]
observation_id = 0
parameters = "{}"  # JSON of reduction.postproc.spectral.SpectralParameters
reduction_id = None

# %%
from hcdc.pipeline.steps import run_step

outcome = run_step("postprocess-spectral", observation_id, parameters, reduction_id=reduction_id)
outcome

# %%
outcome.figure()
