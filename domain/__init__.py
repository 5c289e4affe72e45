"""The pure domain of the run ledger: statuses, rules, the run aggregate and its events.

Nothing here does I/O or imports a database driver.
"""
