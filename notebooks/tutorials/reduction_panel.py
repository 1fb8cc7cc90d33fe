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
# # Reduce one of your observations
# Run this notebook (**Run ▸ Run All Cells**). The panel below talks to the HC-DC catalog with your hub
# login: it lists **your** observations (with their observing conditions), runs the same post-processing
# as the data center's batch pipeline (`reduction.postproc.pipeline.postprocess`), saves the result as
# **your** reduction in the catalog, and exports the parameters as a batch (papermill) job.
#
# 1. *Observation*: pick one, press **Load** (the centred frames and the derotation angles appear).
# 2. *Parameters*: algorithm (PCA, annular PCA, cADI) and every other knob of the step.
# 3. **Run**: residual image, S/N map with the candidates, contrast curve (zoom and hover on the plots).
# 4. *Candidate*: position, S/N, contrast; **NEGFC** fits it.
# 5. **Save as my reduction** / **Export batch job**.
#
# The guide `PI_GUIDE.md` (next to this notebook) explains each step.

# %%
from hcdc_widgets import ReductionPanel

panel = ReductionPanel()
panel

# %% [markdown]
# Everything the panel does is available in code as well, e.g. the parameters of the last run
# (`panel.form.value`) or the catalog client (`panel.session.client`):

# %%
panel.form.value
