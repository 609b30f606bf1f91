"""The manager's logic and transactions; routes only parse, call these, and serialize."""
