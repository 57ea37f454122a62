"""The HTTP surface: routes, schemas, dependencies, error handlers, middleware and OpenAPI."""
