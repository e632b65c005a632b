"""The ops and organisers' console under ``/ops``: pages, its JSON, sessions, staff
accounts and their words."""
