"""The schema as numbered SQL files, applied in order by ``ledger/db.py``
(``voting-service migrate``)."""
