"""Which nodes the manager still knows: DELETE /api/nodes/{id} forgets a node but keeps its row.

The row stays because deployment tasks reference it (DeploymentTask.node is RESTRICT) and history (task
detail, business components, fleet task hosts) shows its hostname. Forgetting also forgets the node's
secret, as a node never seen has none; the join that brings its agent back writes the secret's digest
again, and that is what revives it: a node is forgotten while ``forgotten_at`` is set and it has no
secret. So a rejoin needs nothing of its own to undo a forget.

Every query that lists nodes to show, target or place on adds ``.where(known())``.
"""

from __future__ import annotations

from typing import Any

from manager_api import db
from manager_api.models import Node


def known() -> Any:
    """The condition of a node row the manager still knows (not forgotten)."""
    return Node.forgotten_at.is_null() | Node.secret_digest.is_null(False)


def forgotten() -> Any:
    """The condition of a node row forgotten by DELETE /api/nodes/{id} and not joined again since."""
    return Node.forgotten_at.is_null(False) & Node.secret_digest.is_null()


def known_ids() -> list[str]:
    """The id of every node the manager still knows (the duties sweep their streams and judge their liveness).

    Read straight from the cursor: the duties ask every sweep (5 s), and Peewee's row conversion of 10,000 ids
    cost more than the query."""
    sql, params = Node.select(Node.id).where(known()).sql()
    return [node_id for (node_id,) in db.database.execute_sql(sql, params)]
