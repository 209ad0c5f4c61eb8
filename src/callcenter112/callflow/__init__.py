"""The call flow: what happens to an emergency call between the INVITE
session (`sip/session.py`) and the media, phase by phase (`phases.py`)."""
