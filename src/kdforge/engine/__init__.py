"""The engine: `train` (engine/pipeline.py) runs a config to the end; `Trainer` (engine/trainer.py) is one run's
loop around `kdforge.Distiller`; `load_model` (engine/models.py) brings a saved model back; the task object
(engine/task.py) holds what is specific to classification; engine/run.py the folder lock, signals and versions."""
