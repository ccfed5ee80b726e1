"""The recipe logic behind the scripts in ``recipes/``: the training command line, run folders
and loggers, checkpoint I/O, evaluation of a checkpoint, the experiments, results and
benchmarks. It is the one package that imports both the model side (``lightning_modules``)
and the data side (``datamodules``)."""
