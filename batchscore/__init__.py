"""batchscore: batch scoring of files on AWS with the Azure ML batch scoring contract."""

__version__ = "0.1.0"
