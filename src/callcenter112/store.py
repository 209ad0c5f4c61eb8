from .records import *  # noqa: F403 -- moved to records/; kept until callflow imports are updated
