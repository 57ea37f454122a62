"""The service: its parts' start and stop (service.py), the request flow (flow.py), answers built
from model outputs (answers.py), and its phase, in-flight work and graceful drain (lifecycle.py)."""
