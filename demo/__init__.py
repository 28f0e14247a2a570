"""The Gradio app of SSFNet: parse photos, correct the labels exactly, save them as training data.

- :mod:`demo.editing`: pure label-map editing (stroke snapping, click tools, edge snapping, history).
- :mod:`demo.session`: one user's photo, labels and history; reading uploads and saving corrections.
- :mod:`demo.models`: the checkpoints on offer and the shared cache of loaded predictors.
- :mod:`demo.render`: overlays, the legend, downloads and the JSON summary.
- :mod:`demo.settings`: flags and environment variables.
- :mod:`demo.finetune`: the fine-tuning job run in the background from the app.
- :mod:`demo.ui`: :func:`demo.ui.build_demo`, the ``gr.Blocks``.

Nothing is imported here, so that the editing and session logic load (and are
tested) without Gradio.
"""
