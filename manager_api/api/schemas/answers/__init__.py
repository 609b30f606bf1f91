"""Marshmallow schemas of the public API's answers, one module per resource, each beside the presenter (or
service) whose JSON it describes: routes name them in ``@documented(answer=...)`` for the OpenAPI document, and
tests/manager_api/test_answer_schemas.py validates real answers against them so the two cannot drift apart.

Every class ends in ``Answer`` (its component name in the document), apart from the request schemas'."""
