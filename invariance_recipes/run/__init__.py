"""Running one training job: the command line, run folders, checkpoints, exit codes, signals,
divergence and loggers. Imports the model and data sides, never the other wings."""
