"""Where batchscore runs: the template, stack creation, and the local stand-ins for AWS's moving parts."""

from pathlib import Path

TEMPLATE_PATH = Path(__file__).with_name("template.yaml")
