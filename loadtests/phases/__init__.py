"""The phases of ``make bench``, one module each.

Each exposes ``async def run(ctx: Context) -> dict``, which returns its entries of the
results' ``phases`` mapping (its own name, and for some a second table's: ``invariant``,
``ceiling_instructions``, ``log``), and ``def render(phases: dict) -> str``, which turns
those entries back into its tables ("" when they are absent). A phase imports
``loadtests.context`` and the harness modules, never ``loadtests.bench``.
"""
