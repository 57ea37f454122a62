"""The adapter between the service and uvicorn: the only module that knows uvicorn's internals."""
