"""Flower's simulation engine with its Ray backend swapped for one that runs each ClientApp call in
this process, one at a time.

Everything else is Flower's own: `run_simulation`, the ServerApp thread, the in-memory LinkState
and Grid, the virtual-client-engine workers, node contexts and error replies. Messages are
round-tripped through Flower's protobuf serialisation in both directions, so what crosses the
"wire" must be serialisable exactly as under Ray or gRPC. Tests use it where Ray is not the point
(strategy rules, what is sent, stage bookkeeping); Ray itself keeps its own tests.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig


def wire(message: Message) -> Message:
    """The message as the other side would rebuild it from the bytes it received."""
    copy = message_from_proto(message_to_proto(message))
    copy.metadata.__dict__.update(message.metadata.__dict__)  # ids and routing as Flower set them
    return copy


class InProcessBackend(Backend):
    """A Flower simulation backend with one worker: the calling thread."""

    calls: list[tuple[Message, Message]] = []  # (sent, reply) pairs, for tests that inspect the wire
    # failures tests inject: (client, round) fails that client's message of that round; round 0 is
    # a query before the first round, "evaluate" an evaluation on the nodes
    fail_on: set[tuple[int, int | str]] = set()

    def __init__(self, backend_config: BackendConfig) -> None:
        self.app_fn: Callable[[], ClientApp] | None = None

    def build(self, app_fn: Callable[[], ClientApp]) -> None:
        self.app_fn = app_fn

    @property
    def num_workers(self) -> int:
        return 1

    def is_worker_idle(self) -> bool:
        return True

    def terminate(self) -> None:
        return None

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        assert self.app_fn is not None, "build() was not called"
        received = wire(message)
        client = int(context.node_config["partition-id"])
        when: int | str = "evaluate" if received.metadata.message_type == "evaluate" else \
            int(received.content["config"]["round"])
        if (client, when) in InProcessBackend.fail_on:
            raise ClientAppException(f"injected failure of client {client} in round {when}")
        try:  # as Flower's Ray actor does: a ClientApp's exception becomes an error reply
            reply = self.app_fn()(message=received, context=context)
        except Exception as ex:
            raise ClientAppException(str(ex)) from ex
        reply = wire(reply)
        InProcessBackend.calls.append((received, reply))
        return reply, context


def install(monkeypatch) -> type[InProcessBackend]:
    """Make Flower's simulation engine use InProcessBackend for the rest of the test."""
    from flwr.server.superlink.fleet.vce.backend import raybackend

    InProcessBackend.calls = []
    InProcessBackend.fail_on = set()
    # vce_api's backend factory imports RayBackend from this module at call time
    monkeypatch.setattr(raybackend, "RayBackend", InProcessBackend)
    return InProcessBackend
