"""The registry on etcd (`kdns serve --store etcd://...`): `store` (EtcdBackend, the
controller lease) over `client` (etcd's JSON gateway on aiohttp). See docs/etcd.md."""
