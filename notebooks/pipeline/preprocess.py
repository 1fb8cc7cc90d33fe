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
# # Pre-processing of one observation
# Raw IRDIS DBI frames -> calibrated, centred ADI cube, derotation angles, PSF and stellar flux
# (`reduction.preprocess`). Executed by papermill for `hcdc reprocess`; run it by hand with
# `papermill -k hcdc -p observation_id 7 preprocess.ipynb out.ipynb`.

# %% tags=["parameters"]
observation_id = 0
parameters = "{}"  # JSON of reduction.preprocess.PreprocessParameters (defaults when empty)
reduction_id = None  # set by the pipeline runner (the catalog row it created); None: a new one

# %%
from hcdc.pipeline.steps import run_step

outcome = run_step("preprocess", observation_id, parameters, reduction_id=reduction_id)
outcome

# %%
outcome.figure()
