"""The controller lease on a real etcd: one holder at a time, and a replica that lost it
cannot write through the fence (EtcdBackend and LeaderElection, in this process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from kdns.etcd.client import EtcdClient
from kdns.etcd.store import EtcdBackend, LeaderElection
from kdns.registry.backend import NotLeader
from kdns.registry.store import Store
from tests.etcd.conftest import EtcdCluster


def namespace(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_a_replica_that_lost_the_controller_lease_cannot_write_fenced(
    etcd_cluster: Callable[..., EtcdCluster],
) -> None:
    """A holds the lease and writes fenced; its etcd lease then ends under it (as when A
    was paused past it), B takes the lease, and A's next fenced write is refused with
    NotLeader and changes nothing; B's goes through."""
    cluster = etcd_cluster(1)
    url = cluster.members[0].url

    async def scenario() -> None:
        async with EtcdClient([url]) as client_a, EtcdClient([url]) as client_b:
            a = await EtcdBackend(Store(), client_a, "/kdns").__aenter__()
            b = await EtcdBackend(Store(), client_b, "/kdns").__aenter__()
            leading = {"a": asyncio.Event(), "b": asyncio.Event()}

            def lead(name: str) -> Callable[[], contextlib.AbstractAsyncContextManager[None]]:
                @contextlib.asynccontextmanager
                async def holding() -> AsyncIterator[None]:
                    leading[name].set()
                    yield

                return holding

            try:
                async with LeaderElection(a, client_a, 3, lead("a"), identity="a"):
                    await asyncio.wait_for(leading["a"].wait(), 10)
                    await a.write(lambda txn: txn.create(namespace("by-a")), fenced=True)
                    held = await client_a.get(a.keys.lease)
                    assert held is not None
                    async with LeaderElection(b, client_b, 3, lead("b"), identity="b"):
                        await client_a.revoke(held.lease)  # A's lease is gone, A not told yet
                        await asyncio.wait_for(leading["b"].wait(), 10)
                        with pytest.raises(NotLeader):
                            await a.write(lambda txn: txn.create(namespace("late-a")), fenced=True)
                        await b.write(lambda txn: txn.create(namespace("by-b")), fenced=True)
                        assert await client_a.get(b"/kdns/registry/namespaces/late-a") is None
                        assert await client_a.get(b"/kdns/registry/namespaces/by-b") is not None
                        lease = await client_b.get(b.keys.lease)
                        assert lease is not None and b'"holderIdentity":"b"' in lease.value
            finally:
                await a.__aexit__(None, None, None)
                await b.__aexit__(None, None, None)

    asyncio.run(asyncio.wait_for(scenario(), 60))
