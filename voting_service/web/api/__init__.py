"""The JSON API: public, voter, admin, organisers, fraud, results, the transparency log,
WeChat sign-in, the vote route, ``/live`` and the OpenAPI document."""
