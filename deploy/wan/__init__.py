"""A WAN on one machine: Toxiproxy between a cluster's datacenters.

``toxiproxy`` builds (``fetch``) and runs the server, ``proxy`` is its REST
client, ``links`` lays one proxy in front of each Cassandra node's storage
port and turns the inter-DC links' latency, bandwidth and partitions on and
off. The Cassandra launcher (``deploy/cassandra/launcher.py --wan-latency-ms``)
uses them; see docs/wan.md.
"""
