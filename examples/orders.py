"""Orders: the workflows of README's "With a daemon" walkthrough (a failure to retry, a person to ask).

    resonate serve &
    resonate worker examples/orders.py &
    resonate invoke order '{"id": 7, "amount": 30}' --id order-7

``charge`` declines amounts over ``ORDERS_CARD_LIMIT`` (default 100) with ``CardDeclined``, a
``NonRetryable`` error: the workflow fails at once, keeps the error and its traceback, and can be
retried (``resonate retry ID``) once a worker with a higher limit (the fix) is running.
"""

from __future__ import annotations

import os
from typing import Any

from resonate import Context, NonRetryable, Resonate

resonate = Resonate.local()  # `resonate worker` runs these functions on the daemon instead


class CardDeclined(NonRetryable):
    """A charge the card refuses: retrying the same charge cannot help, so it fails at once."""


def reserve(ctx: Context, order: dict[str, Any]) -> str:
    return f"reserved {order['id']}"


def charge(ctx: Context, order: dict[str, Any]) -> int:
    limit = int(os.environ.get("ORDERS_CARD_LIMIT", "100"))
    if order["amount"] > limit:
        raise CardDeclined(f"{order['amount']} is over the card's limit of {limit}")
    return int(order["amount"])


def ship(ctx: Context, order: dict[str, Any]) -> str:
    return f"shipped {order['id']}"


@resonate.register
def order(ctx: Context, order: dict[str, Any]) -> Any:
    """Reserve, charge, ship: three durable steps."""
    reserved = yield ctx.run(reserve, order)
    charged = yield ctx.run(charge, order)
    shipped = yield ctx.run(ship, order)
    return {"reserved": reserved, "charged": charged, "shipped": shipped}


@resonate.register
def approve_order(ctx: Context, order: dict[str, Any]) -> Any:
    """Reserve, then wait for a person (``<id>.2``: resonate promises resolve ID.2 --data '{"approved": true}'),
    then charge and ship, or not."""
    reserved = yield ctx.run(reserve, order)
    approval = yield ctx.promise(data={"question": f"approve order {order['id']} of {order['amount']}?"})
    decision = yield approval
    if not (isinstance(decision, dict) and decision.get("approved")):
        return {"reserved": reserved, "approved": False}
    charged = yield ctx.run(charge, order)
    shipped = yield ctx.run(ship, order)
    return {"reserved": reserved, "approved": True, "charged": charged, "shipped": shipped}
