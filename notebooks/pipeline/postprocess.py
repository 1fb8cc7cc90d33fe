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
# # Post-processing of one observation
# PSF subtraction, S/N map, candidates with NEGFC characterisation and the 5-sigma contrast curve
# of every wavelength (`reduction.postproc`), recorded as detections and detection limits.

# %% tags=["parameters"]
observation_id = 0
parameters = "{}"  # JSON of reduction.postproc.pipeline.PostprocessParameters
reduction_id = None

# %%
from hcdc.pipeline.steps import run_step

outcome = run_step("postprocess", observation_id, parameters, reduction_id=reduction_id)
outcome

# %%
outcome.figure()
