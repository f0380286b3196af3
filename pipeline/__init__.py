"""The pipeline itself: its settings (`config`), its DAG of TFX components (`dag`), the known data sets, the run's
output directory and the ML Metadata queries every reader of a run shares (`metadata`)."""
