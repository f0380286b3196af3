"""Errors that stop a run with a message written for the person running it."""


class CnnpipeError(Exception):
    """A problem the user can fix; its message says what and how."""


class IngestionError(CnnpipeError):
    """An input file cannot be read as the data the run expects."""


class DataValidationError(CnnpipeError):
    """The examples do not match the schema."""


class TrainingError(CnnpipeError):
    """The Trainer's settings or inputs would train a broken model."""


class RobustnessError(CnnpipeError):
    """The adversarial evaluation's settings, model or examples cannot be used."""
