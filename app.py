"""SSFNet human parsing app: ``python app.py --help`` for the settings (flags or SSFNET_* variables)."""

import logging

from demo.models import Predictors
from demo.settings import parse_args
from demo.ui import build_demo, launch_kwargs
from ssfnet import CheckpointError

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = parse_args()
    predictors = Predictors(settings.checkpoints_dir, settings.checkpoint, settings.device)
    try:
        # Load the start-up model now, so that the first user does not wait for it.
        predictors.get(predictors.default())
    except (FileNotFoundError, CheckpointError) as err:
        logging.warning("starting without a model: %s", err)
    build_demo(settings, predictors).launch(**launch_kwargs(settings))
