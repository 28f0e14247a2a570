"""The Gradio app of SSFNet: parse photos, correct the labels exactly, save them as training data.

- :mod:`demo.ui`: :func:`demo.ui.build_demo`, the ``gr.Blocks``: layout and event wiring only (the
  fine-tune panel's in :mod:`demo.finetune_ui`, the queue's in :mod:`demo.queue_ui`).
- :mod:`demo.context`: the :class:`demo.context.AppContext` every handler works on, and the components.
- :mod:`demo.panel_photo`, :mod:`demo.panel_edit`, :mod:`demo.panel_gallery`, :mod:`demo.panel_models`,
  :mod:`demo.panel_finetune`, :mod:`demo.queue_ui`: the handlers of each panel.
- :mod:`demo.widgets`: small Gradio helpers that hold no app state (brush, label widgets, errors).
- :mod:`demo.editing`: pure label-map editing (stroke snapping, click tools, edge snapping, history).
- :mod:`demo.session`: one user's photo, labels and history; reading uploads and saving corrections.
- :mod:`demo.drafts`, :mod:`demo.queue`: autosaved drafts and the queue of photos to annotate.
- :mod:`demo.models`: the checkpoints on offer and the shared cache of loaded predictors.
- :mod:`demo.render`: overlays, the legend, downloads and the JSON summary.
- :mod:`demo.zoom`: the overlay's zoom: the crop shown and clicks mapped back to working pixels.
- :mod:`demo.settings`: one table of settings, read from flags and environment variables.
- :mod:`demo.finetune_runner`: the fine-tuning job (``python -m train.finetune``) run in the
  background from the app.
- :mod:`demo.access`, :mod:`demo.paths`: who may use the app (logins, the admin, who asks); paths
  as the page shows them.
- :mod:`demo.keys`, :mod:`demo.cleanup`, :mod:`demo.memory`: keyboard shortcuts; the app's temporary
  folders; freed memory returned to the system.

Nothing is imported here, so that the editing and session logic load (and are
tested) without Gradio.
"""
