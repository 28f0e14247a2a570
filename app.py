"""SSFNet human parsing app: ``python app.py --help`` for the settings (flags or SSFNET_* variables)."""

import logging

from demo.access import startup_notes
from demo.cleanup import remove_temp_dirs, stop_on_sigterm, sweep_stale_temp_dirs
from demo.models import Predictors
from demo.settings import parse_args
from demo.ui import build_demo, launch_kwargs
from ssfnet.data.corrections import sweep_corrections

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = parse_args()
    for note in startup_notes(settings):
        logging.warning(note)
    stop_on_sigterm()  # SIGTERM then ends the app as Ctrl-C does, through the clean-up below
    demo = None
    try:
        sweep_stale_temp_dirs()
        sweep_corrections(settings.corrections_dir)
        predictors = Predictors(
            settings.checkpoints_dir, settings.checkpoint, settings.device, backend=settings.backend
        )
        for problem in predictors.warm_up():
            logging.warning(problem)
        demo = build_demo(settings, predictors)
        demo.launch(**launch_kwargs(settings))
    except KeyboardInterrupt:
        # Stopped before launch() was waiting (which handles its own interruption).
        if demo is not None:
            demo.close()
    finally:
        remove_temp_dirs()
